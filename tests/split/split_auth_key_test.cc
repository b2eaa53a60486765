// An application's own key (endpoint::set_auth_key): an eth: server's
// endpoint and a unix: client's (through vmrdmad's ring) share one, on
// devices without a pre-shared key, and their connection carries tags; a
// client with another key does not get in (the server counts the bad
// tags), one without a key is refused.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>

#include "tests/split/split_support.hpp"
#include "vmrdma/registrable.hpp"

using vmrdma::access;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;
using namespace std::chrono_literals;

TEST_CASE("an application's key on both endpoints authenticates their connection; another key gets nowhere") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(120);
    vmrdma::testing::veth_pair veth("vsk0", "vskp0", 1500);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("authkey"));
    vmrdma::device_options::auth_key_bytes key;
    for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::byte>(0x30 + i);
    std::atomic<bool> landed{false};
    std::atomic<std::uint64_t> bad_tags{0};
    std::atomic<int> phase{0};
    std::vector<std::byte> target(4096, std::byte{0});
    split_test::peer_thread server(veth.b, [&](vmrdma::event_loop& loop, vmrdma::device& dev,
                                               std::stop_token stop) -> task<void> {
        auto ep = dev.open_endpoint(1, {.weight = 1, .listen = true});
        co_await ep.set_auth_key(key);
        auto mr = ep.register_memory(target, access::remote_write);
        co_await ep.set_accept_data(mr.remote().to_bytes());
        auto conn = co_await ep.accept(stop);
        while (!stop.stop_requested() && phase.load() < 1) co_await loop.sleep_for(5ms);
        landed = target[0] == std::byte{0x77};
        while (!stop.stop_requested() && phase.load() < 2) co_await loop.sleep_for(5ms);
        bad_tags = dev.stats().auth_failed;
        phase = 3;
    });

    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, daemon.uri());
    auto good = dev->open_endpoint(2);
    auto wrong = dev->open_endpoint(3);
    auto none = dev->open_endpoint(4);
    vmrdma::registrable_buffer src(64);
    std::memset(src.data(), 0x77, 64);
    auto mr = good.register_memory(src.span(), access::none);
    std::string wrong_what, none_what;
    std::error_code wrong_code, none_code;
    auto body = [&]() -> task<void> {
        co_await good.set_auth_key(key);
        auto conn = co_await good.connect(server.mac(), 1, 10s);
        auto target_region = vmrdma::remote_region::from_bytes(conn.peer_data());
        co_await conn.write(mr, 0, target_region, 0, 64);
        phase = 1;
        auto other = key;
        other[0] ^= std::byte{1};
        co_await wrong.set_auth_key(other);
        try {
            co_await wrong.connect(server.mac(), 1, 3s);
        } catch (const error& e) {
            wrong_what = e.what();
            wrong_code = e.code();
        }
        try {
            co_await none.connect(server.mac(), 1, 3s);
        } catch (const error& e) {
            none_what = e.what();
            none_code = e.code();
        }
        phase = 2;
        while (phase.load() < 3) co_await loop.sleep_for(5ms);
    };
    loop.run(body());
    server.join();
    CHECK(landed.load());
    CHECK(wrong_code == errc::timeout);  // its requests' tags are wrong: dropped, unanswered
    CHECK(bad_tags.load() > 0);
    CHECK(none_code == errc::refused);   // a plain request to an authenticating endpoint
    MESSAGE("wrong key: " << wrong_what << "; no key: " << none_what);
    alarm(0);
}
