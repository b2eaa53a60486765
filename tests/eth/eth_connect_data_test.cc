// Connection management over a real veth pair: a server announces a name and
// hands its region descriptor over in the accept; a client finds it by name,
// connects with private data of its own and writes with what it was handed.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/support/private_net.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"

using namespace std::chrono_literals;
using vmrdma::access;
using vmrdma::connection;
using vmrdma::device;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::event_loop;
using vmrdma::task;

namespace {

std::span<const std::byte> bytes_of(std::string_view s) {
    return std::as_bytes(std::span(s.data(), s.size()));
}

std::string text_of(std::span<const std::byte> b) {
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

struct two_hosts {
    event_loop loop;
    vmrdma::testing::veth_pair veth{"vrcd-a", "vrcd-b", 9000};
    std::unique_ptr<device> client = device::open(loop, "eth:" + veth.a);
    std::unique_ptr<device> server = device::open(loop, "eth:" + veth.b);
};

template <typename F>
std::error_code code_of(event_loop& loop, F body, std::string* what = nullptr) {
    try {
        loop.run(body());
    } catch (const error& e) {
        MESSAGE(std::string(e.what()));
        if (what) *what = e.what();
        return e.code();
    }
    return {};
}

}  // namespace

TEST_CASE("find a server by name, get its region in the accept, write with it") {
    if (vmrdma::testing::skip_network_tests()) return;
    two_hosts net;
    auto sep = net.server->open_endpoint(7, {.weight = 1, .listen = true});
    auto cep = net.client->open_endpoint(1);
    std::vector<std::byte> target(4096, std::byte{0});
    auto target_mr = sep.register_memory(target, access::remote_write);
    std::vector<std::byte> src(4096);
    for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<std::byte>(i * 13 + 5);
    auto src_mr = cep.register_memory(src, access::none);
    std::string hello = "client 1, protocol 3";

    auto body = [&]() -> task<void> {
        const auto descriptor = target_mr.remote().to_bytes();
        co_await sep.set_accept_data(descriptor);
        co_await sep.announce("kv-store");
        auto peer = co_await cep.resolve("kv-store", 2s);
        CHECK(peer.mac == net.server->mac());
        CHECK(peer.endpoint == 7);
        auto [client, server] = co_await vmrdma::when_all(
            cep.connect(peer, {.private_data = bytes_of(hello)}), sep.accept());
        CHECK(text_of(server.peer_data()) == hello);
        REQUIRE(client.peer_data().size() == descriptor.size());
        auto region = vmrdma::remote_region::from_bytes(client.peer_data());
        CHECK(region.rkey == target_mr.key());
        co_await client.write(src_mr, 0, region, 0, 4096);
    };
    net.loop.run(body());
    CHECK(target == src);
}

TEST_CASE("resolve waits for a server that announces late, and says when nobody does") {
    if (vmrdma::testing::skip_network_tests()) return;
    two_hosts net;
    auto sep = net.server->open_endpoint(2, {.weight = 1, .listen = true});
    auto cep = net.client->open_endpoint(1);
    auto body = [&]() -> task<void> {
        auto late = [&]() -> task<void> {
            co_await net.loop.sleep_for(300ms);
            co_await sep.announce("late-server");
        };
        auto [peer, done] = co_await vmrdma::when_all(cep.resolve("late-server", 5s), late());
        (void)done;
        CHECK(peer.endpoint == 2);
        CHECK(peer.mac == net.server->mac());
    };
    net.loop.run(body());

    std::string what;
    auto missing = [&]() -> task<void> { co_await cep.resolve("no-such-service", 300ms); };
    CHECK(code_of(net.loop, missing, &what) == errc::not_found);
    CHECK(what.find("no-such-service") != std::string::npos);

    // Withdrawn: gone for new questions.
    auto withdraw = [&]() -> task<void> { co_await sep.announce(""); };
    net.loop.run(withdraw());
    auto again = [&]() -> task<void> { co_await cep.resolve("late-server", 300ms); };
    CHECK(code_of(net.loop, again) == errc::not_found);
}

TEST_CASE("names and private data: what is refused, and why") {
    if (vmrdma::testing::skip_network_tests()) return;
    two_hosts net;
    auto s1 = net.server->open_endpoint(1, {.weight = 1, .listen = true});
    auto s2 = net.server->open_endpoint(2, {.weight = 1, .listen = true});
    auto cep = net.client->open_endpoint(1);

    auto first = [&]() -> task<void> { co_await s1.announce("unique"); };
    net.loop.run(first());
    std::string what;
    auto second = [&]() -> task<void> { co_await s2.announce("unique"); };
    CHECK(code_of(net.loop, second, &what) == errc::name_in_use);
    CHECK(what.find("unique") != std::string::npos);

    const std::string long_name(vmrdma::endpoint::name_max + 1, 'n');
    auto too_long_name = [&]() -> task<void> { co_await s2.announce(long_name); };
    CHECK(code_of(net.loop, too_long_name) == errc::invalid_argument);

    const std::string big(connection::private_data_max + 1, 'p');
    auto too_much = [&]() -> task<void> {
        co_await cep.connect(vmrdma::peer_address{net.server->mac(), 1}, {.private_data = bytes_of(big)});
    };
    CHECK(code_of(net.loop, too_much) == errc::invalid_argument);
    auto too_much_accept = [&]() -> task<void> { co_await s1.set_accept_data(bytes_of(big)); };
    CHECK(code_of(net.loop, too_much_accept) == errc::invalid_argument);

    // No private data either way: both sides see none.
    auto plain = [&]() -> task<void> {
        auto [c, s] = co_await vmrdma::when_all(cep.connect(net.server->mac(), 1), s1.accept());
        CHECK(c.peer_data().empty());
        CHECK(s.peer_data().empty());
    };
    net.loop.run(plain());
}
