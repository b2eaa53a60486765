// Protection domains through the C++ API on both kinds of transport: a
// server binds its region and one of two connections to a domain; the
// client's write through that connection lands, through the other (same
// endpoint, same key) it is refused with bad_key. Once with the server a
// unix: frontend of vmrdmad (the ring ABI, the daemon, proto/frontend.c)
// and the client on eth:, once the other way round (the in-process engine).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>

#include "tests/split/split_support.hpp"
#include "vmrdma/registrable.hpp"

using vmrdma::access;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t go_tag = 1, done_tag = 2;

struct outcome {
    std::atomic<bool> served{false}, in_domain_landed{false}, outsider_kept_out{false};
    std::atomic<bool> in_domain_ok{false}, outsider_bad_key{false};
    std::string error;
};

// Accepts two connections on `ep_id`, binds the first and the region to a
// new domain, tells both to go, waits for the first to say it is done.
task<void> serve(vmrdma::device& dev, std::uint16_t ep_id, outcome& out, std::stop_token stop) {
    // Listening only once the accept data is set: a connection accepted
    // before would carry none (the client connects as early as it can).
    auto ep = dev.open_endpoint(ep_id, {.weight = 1, .listen = false});
    vmrdma::registrable_buffer mem(4096);
    std::memset(mem.data(), 0, 4096);
    auto mr = ep.register_memory(mem.span(), access::remote_write);
    co_await ep.set_accept_data(mr.remote().to_bytes());
    co_await ep.listen();
    auto first = co_await ep.accept(stop);
    auto second = co_await ep.accept(stop);
    auto pd = co_await ep.allocate_protection_domain();
    co_await ep.bind(first, pd);
    co_await ep.bind(mr, pd);
    const char go[] = "go";
    co_await first.send(std::as_bytes(std::span(go)), go_tag);
    co_await second.send(std::as_bytes(std::span(go)), go_tag);
    std::array<std::byte, 16> in{};
    co_await ep.recv(in, done_tag, ~0ull, stop);
    auto* p = reinterpret_cast<const unsigned char*>(mem.data());
    bool first_landed = true, second_kept_out = true;
    for (int i = 0; i < 64; ++i) first_landed = first_landed && p[i] == 0xA1;
    for (int i = 64; i < 128; ++i) second_kept_out = second_kept_out && p[i] == 0;
    out.in_domain_landed = first_landed;
    out.outsider_kept_out = second_kept_out;
    // Busy while the region is bound; free once it is not.
    bool busy = false;
    try {
        co_await ep.free_protection_domain(pd);
    } catch (const error&) {
        busy = true;
    }
    co_await ep.bind(mr, {});
    co_await ep.free_protection_domain(pd);
    out.served = busy;
}

// Two connections from two endpoints to the server; writes through both.
task<void> client(vmrdma::device& dev, vmrdma::mac_address server, std::uint16_t ep_id, outcome& out) {
    auto e1 = dev.open_endpoint(11);
    auto e2 = dev.open_endpoint(12);
    vmrdma::registrable_buffer src(128);
    std::memset(src.data(), 0xA1, 64);
    std::memset(src.data() + 64, 0xC2, 64);
    auto m1 = e1.register_memory(src.span(), access::none);
    auto m2 = e2.register_memory(src.span(), access::none);
    auto c1 = co_await e1.connect(server, ep_id, 10s);
    auto c2 = co_await e2.connect(server, ep_id, 10s);
    auto target = vmrdma::remote_region::from_bytes(c1.peer_data());
    std::array<std::byte, 16> in{};
    co_await e1.recv(in, go_tag, ~0ull);
    co_await e2.recv(in, go_tag, ~0ull);
    co_await c1.write(m1, 0, target, 0, 64);
    out.in_domain_ok = true;
    try {
        co_await c2.write(m2, 64, target, 64, 64);  // the same key, outside the domain
    } catch (const error& e) {
        out.outsider_bad_key = e.code() == errc::bad_key;
    }
    const char done[] = "done";
    co_await c1.send(std::as_bytes(std::span(done)), done_tag);
}

}  // namespace

TEST_CASE("protection domains: a unix: server (vmrdmad) and an eth: server keep an outside connection out") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(120);
    vmrdma::testing::veth_pair veth("vsq0", "vsqp0", 1500);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("pd"));
    for (bool unix_serves : {true, false}) {
        CAPTURE(unix_serves);
        outcome out;
        vmrdma::event_loop loop;
        auto dev = vmrdma::device::open(loop, daemon.uri());
        const auto daemon_mac = dev->mac();
        split_test::peer_thread peer(veth.b, [&](vmrdma::event_loop&, vmrdma::device& eth,
                                                 std::stop_token stop) -> task<void> {
            if (unix_serves)
                co_await client(eth, daemon_mac, 5, out);
            else
                co_await serve(eth, 5, out, stop);
        });
        try {
            if (unix_serves)
                loop.run(serve(*dev, 5, out, {}));
            else
                loop.run(client(*dev, peer.mac(), 5, out));
        } catch (const std::exception& e) {
            // The other side's failure is usually the cause: say it first.
            try {
                peer.join();
            } catch (const std::exception& peer_error) {
                FAIL((std::string("the peer failed: ") + peer_error.what() + "; then here: " + e.what()));
            }
            throw;
        }
        peer.join();
        CHECK(out.in_domain_ok.load());
        CHECK(out.outsider_bad_key.load());
        CHECK(out.in_domain_landed.load());
        CHECK(out.outsider_kept_out.load());
        CHECK(out.served.load());  // freeing was refused while bound, then done
    }
    alarm(0);
}
