// Names and private data through vmrdmad (unix:): a frontend announces a
// name and hands its region over in the accept to an eth: peer that found it
// by name; a frontend finds an eth: peer by name and connects with private
// data; two frontends of one daemon share its names.
#include <doctest/doctest.h>

#include <cstring>
#include <future>

#include "tests/split/split_support.hpp"
#include "vmrdma/registrable.hpp"

using namespace std::chrono_literals;
using vmrdma::access;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;

namespace {
std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }
std::string text_of(std::span<const std::byte> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }
}  // namespace

TEST_CASE("an eth: peer finds a vmrdmad frontend by name and writes with the region it was handed") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(120);
    vmrdma::testing::veth_pair veth("vsn0", "vspn0", 9000);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("names"));

    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, daemon.uri());
    auto ep = dev->open_endpoint(5, {.weight = 1, .listen = true});
    vmrdma::registrable_buffer target(8192);
    std::memset(target.data(), 0, 8192);
    auto target_mr = ep.register_memory(target.span(), access::remote_write);
    std::promise<void> announced;
    auto ready = announced.get_future().share();

    std::string peer_saw;
    vmrdma::mac_address peer_found_mac;
    std::uint16_t peer_found_ep = 0;
    split_test::peer_thread peer(veth.b, [&](vmrdma::event_loop&, vmrdma::device& pdev,
                                             std::stop_token stop) -> task<void> {
        ready.wait();
        auto pep = pdev.open_endpoint(1);
        std::vector<std::byte> src(8192);
        for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<std::byte>(i * 3 + 1);
        auto src_mr = pep.register_memory(src, access::none);
        auto where = co_await pep.resolve("split-server", 5s, stop);
        peer_found_mac = where.mac;
        peer_found_ep = where.endpoint;
        auto conn = co_await pep.connect(where, {.private_data = bytes_of("from the eth: peer")}, stop);
        auto region = vmrdma::remote_region::from_bytes(conn.peer_data());
        peer_saw = "rkey ok";
        co_await conn.write(src_mr, 0, region, 0, 8192, stop);
        co_await conn.send(bytes_of("done"), 9, stop);  // after the write: it has landed
        co_await conn.closed(stop);  // until the frontend has closed
    });

    std::string accepted_data;
    auto body = [&]() -> task<void> {
        co_await ep.set_accept_data(target_mr.remote().to_bytes());
        co_await ep.announce("split-server");
        announced.set_value();
        auto conn = co_await ep.accept();
        accepted_data = text_of(conn.peer_data());
        std::array<std::byte, 8> done{};
        co_await ep.recv(done, 9);
    };
    try {
        loop.run(body());
    } catch (const error& e) {
        FAIL("frontend: " << std::string(e.what()));
    }
    peer.join();
    CHECK(accepted_data == "from the eth: peer");
    CHECK(peer_saw == "rkey ok");
    CHECK(peer_found_mac == dev->mac());
    CHECK(peer_found_ep == 5);
    for (std::size_t i = 0; i < 8192; ++i)
        if (target.span()[i] != static_cast<std::byte>(i * 3 + 1)) {
            FAIL("byte " << i << " differs");
            break;
        }
    CHECK(daemon.stats().rejected == 0);
    alarm(0);
}

TEST_CASE("a vmrdmad frontend finds an eth: peer by name; frontends share the daemon's names") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(120);
    vmrdma::testing::veth_pair veth("vsn1", "vspn1", 1500);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("names2"));

    std::string peer_got;
    split_test::peer_thread peer(veth.b, [&](vmrdma::event_loop&, vmrdma::device& pdev,
                                             std::stop_token stop) -> task<void> {
        auto pep = pdev.open_endpoint(3, {.weight = 1, .listen = true});
        co_await pep.set_accept_data(bytes_of("welcome"));
        co_await pep.announce("eth-peer");
        auto conn = co_await pep.accept(stop);
        peer_got = text_of(conn.peer_data());
        co_await conn.closed(stop);
    });

    vmrdma::event_loop loop;
    auto one = vmrdma::device::open(loop, daemon.uri());
    auto two = vmrdma::device::open(loop, daemon.uri());
    auto ep1 = one->open_endpoint(1, {.weight = 1, .listen = true});
    auto ep2 = two->open_endpoint(2);
    std::string welcome;
    std::error_code squat;
    vmrdma::peer_address local;
    auto body = [&]() -> task<void> {
        auto where = co_await ep2.resolve("eth-peer", 5s);
        CHECK(where.mac == peer.mac());
        CHECK(where.endpoint == 3);
        auto conn = co_await ep2.connect(where, {.private_data = bytes_of("via vmrdmad")});
        welcome = text_of(conn.peer_data());
        // Another frontend of the same daemon: its name is found without the
        // wire, and nobody else may take it.
        co_await ep1.announce("frontend-one");
        local = co_await ep2.resolve("frontend-one", 1s);
        try {
            co_await ep2.announce("frontend-one");
        } catch (const error& e) {
            squat = e.code();
        }
        conn.close();
    };
    try {
        loop.run(body());
    } catch (const error& e) {
        FAIL("frontend: " << std::string(e.what()));
    }
    peer.join();
    CHECK(welcome == "welcome");
    CHECK(peer_got == "via vmrdmad");
    CHECK(local.mac == one->mac());
    CHECK(local.endpoint == 1);
    CHECK(squat == errc::name_in_use);
    alarm(0);
}
