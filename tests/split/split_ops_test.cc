// The split driver end to end: a frontend on unix:PATH (no raw socket, no
// engine) does every operation through vmrdmad to an eth: peer across a veth
// pair, and the data arrives bit for bit.
#include <doctest/doctest.h>

#include <cstring>

#include "tests/split/split_support.hpp"
#include "vmrdma/registrable.hpp"
#include "vmrdma/registrable_arena.hpp"

using namespace std::chrono_literals;
using split_test::pattern;
using vmrdma::access;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;

namespace {
constexpr std::size_t region_size = 1u << 20;
constexpr std::size_t desc_tag = 1, done_tag = 2, hello_tag = 3;
}  // namespace

TEST_CASE("write, read, send/recv, fetch_add and compare_swap through vmrdmad") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(120);  // a hang fails the test instead of blocking the suite
    vmrdma::testing::veth_pair veth("vsd0", "vsp0", 9000);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("ops"));

    // The peer: a listening endpoint with a 1 MiB region; tells the frontend
    // where it is, then checks what the frontend wrote.
    bool peer_saw_write = false, peer_got_hello = false;
    std::uint64_t peer_word = 0;
    vmrdma::peer_address hello_source, accepted_peer;
    split_test::peer_thread peer(veth.b, [&](vmrdma::event_loop&, vmrdma::device& dev, std::stop_token stop) -> task<void> {
        auto ep = dev.open_endpoint(1, {.weight = 1, .listen = true});
        std::vector<std::byte> target(region_size, std::byte{0});
        std::vector<std::byte> small(64, std::byte{0});
        auto target_mr = ep.register_memory(target, access::remote_write | access::remote_read | access::remote_atomic);
        auto small_mr = ep.register_memory(small, access::local_write);
        auto conn = co_await ep.accept(stop);
        auto hello = co_await ep.recv(small_mr, 32, 32, hello_tag, ~0ull, stop);
        peer_got_hello = hello.length == 5 && std::memcmp(small.data() + 32, "hello", 5) == 0;
        hello_source = hello.source;
        accepted_peer = conn.peer();
        auto done = ep.recv(small_mr, 16, 16, done_tag, ~0ull, stop);
        auto desc = target_mr.remote().to_bytes();
        std::memcpy(small.data(), desc.data(), desc.size());
        co_await conn.send(small_mr, 0, 16, desc_tag);
        co_await std::move(done);
        auto expect = pattern(region_size, 11);
        peer_saw_write = std::memcmp(target.data() + 8, expect.data() + 8, region_size - 8) == 0;
        std::memcpy(&peer_word, target.data(), 8);
    });

    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, daemon.uri());
    CHECK(dev->mtu() == 9000);
    auto ep = dev->open_endpoint(7);
    vmrdma::registrable_buffer data(region_size), back(region_size), small(64);
    auto src = pattern(region_size, 11);
    std::memcpy(data.data(), src.data(), region_size);
    std::memcpy(small.data() + 32, "hello", 5);
    auto data_mr = ep.register_memory(data.span(), access::none);
    auto back_mr = ep.register_memory(back.span(), access::local_write);
    auto small_mr = ep.register_memory(small.span(), access::local_write);
    // Arena memory: an interior span of a pmr::vector that shares its memfd
    // with another allocation; an RDMA read lands in it through the daemon.
    vmrdma::registrable_arena arena;
    std::pmr::vector<std::byte> neighbour(3000, &arena), landed(region_size, &arena);
    constexpr std::size_t landed_at = 100, landed_len = region_size / 2;
    auto landed_mr = ep.register_memory(std::span(landed).subspan(landed_at, landed_len), access::local_write);

    std::uint64_t old_add = 99, old_swap = 99, after = 99;
    auto before = dev->stats();  // the daemon's NIC: nothing has crossed it yet but ours will
    auto body = [&]() -> task<void> {
        auto desc = ep.recv(small_mr, 0, 16, desc_tag);
        auto conn = co_await ep.connect(peer.mac(), 1);
        co_await conn.send(small_mr, 32, 5, hello_tag);
        auto got = co_await std::move(desc);
        CHECK(got.length == 16);
        CHECK(got.tag == desc_tag);
        // Sources and peers cross the ring: the peer's endpoint 1.
        CHECK(got.source == vmrdma::peer_address{peer.mac(), 1});
        CHECK(conn.peer() == vmrdma::peer_address{peer.mac(), 1});
        auto remote = vmrdma::remote_region::from_bytes(small.span().subspan(0, 16));
        co_await conn.write(data_mr, 0, remote, 0, static_cast<std::uint32_t>(region_size));
        co_await conn.read(back_mr, 0, remote, 0, static_cast<std::uint32_t>(region_size));
        co_await conn.read(landed_mr, 0, remote, 8, static_cast<std::uint32_t>(landed_len));
        // Atomics on the first word, which the write set to src[0..8).
        std::uint64_t first;
        std::memcpy(&first, src.data(), 8);
        old_add = co_await conn.fetch_add(remote, 0, 5);
        CHECK(old_add == first);
        old_swap = co_await conn.compare_swap(remote, 0, first + 5, 1234);
        after = co_await conn.fetch_add(remote, 0, 0);
        co_await conn.send(small_mr, 0, 1, done_tag);
    };
    try {
        loop.run(body());
    } catch (const error& e) {
        FAIL("frontend: " << std::string(e.what()) << " (" << e.code().message() << ")");
    }
    peer.join();
    CHECK(std::memcmp(back.data(), src.data(), region_size) == 0);
    CHECK(std::memcmp(landed.data() + landed_at, src.data() + 8, landed_len) == 0);
    CHECK(landed[landed_at - 1] == std::byte{0});  // nothing outside the region was touched
    CHECK(landed[landed_at + landed_len] == std::byte{0});
    std::uint64_t first;
    std::memcpy(&first, src.data(), 8);
    CHECK(old_swap == first + 5);
    CHECK(after == 1234);
    CHECK(peer_word == 1234);
    CHECK(peer_got_hello);
    CHECK(peer_saw_write);
    // The eth: peer sees the frontend as the daemon's device, endpoint 7.
    CHECK(hello_source == vmrdma::peer_address{dev->mac(), 7});
    CHECK(accepted_peer == vmrdma::peer_address{dev->mac(), 7});
    CHECK(daemon.stats().rejected == 0);
    CHECK(daemon.stats().violations == 0);
    // device::stats() on unix: is the daemon's device counters (ADMIN_LIST
    // DEVICE): the 1 MiB write went out through it and the 1 MiB read came in.
    auto stats = dev->stats();
    MESSAGE("unix: device stats: tx " << stats.tx_frames << " frames " << stats.tx_bytes << " bytes, rx "
                                      << stats.rx_frames << " frames " << stats.rx_bytes << " bytes");
    CHECK(stats.tx_frames > before.tx_frames);
    CHECK(stats.rx_frames > before.rx_frames);
    CHECK(stats.tx_bytes - before.tx_bytes >= region_size);
    CHECK(stats.rx_bytes - before.rx_bytes >= region_size);
    CHECK(dev->stats().tx_frames >= stats.tx_frames);  // the socket stays in step: ask again
    alarm(0);
}

TEST_CASE("ordinary memory on a unix: device is refused with invalid_argument") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(60);
    vmrdma::testing::veth_pair veth("vsd1", "vsp1", 1500);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("plain"));
    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, daemon.uri());
    auto ep = dev->open_endpoint(1);
    std::vector<std::byte> plain(4096);
    try {
        ep.register_memory(plain, access::local_write);
        FAIL("registered ordinary memory");
    } catch (const error& e) {
        CHECK(e.code() == errc::invalid_argument);
        CHECK(std::string(e.what()).find("registrable_buffer") != std::string::npos);
    }
    alarm(0);
}

TEST_CASE("a busy-polling loop with a unix: device yields in spins that find nothing; without it, not") {
    // vmrdmad is another process that may need this loop's core
    // (event_loop::add_core_sharer; docs/split-driver.md).
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(60);
    vmrdma::testing::veth_pair veth("vsdy", "vspy", 1500);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("yield"));
    vmrdma::event_loop loop({.busy_poll = std::chrono::seconds(1)});
    auto sleep_5ms = [&]() -> task<void> { co_await loop.sleep_for(5ms); };
    {
        auto dev = vmrdma::device::open(loop, daemon.uri());
        CHECK(loop.shares_cores());
        loop.run(sleep_5ms());
        CHECK(loop.stats().yields >= 1);
    }
    CHECK_FALSE(loop.shares_cores());
    const auto yields = loop.stats().yields;
    loop.run(sleep_5ms());
    CHECK(loop.stats().yields == yields);  // the device is gone: the loop spins as it was told
    alarm(0);
}

TEST_CASE("small sends and receives from ordinary memory work through vmrdmad too") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(60);
    vmrdma::testing::veth_pair veth("vsd2", "vsp2", 1500);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("inline"));
    std::string peer_got;
    split_test::peer_thread peer(veth.b, [&](vmrdma::event_loop&, vmrdma::device& dev, std::stop_token stop) -> task<void> {
        auto ep = dev.open_endpoint(1, {.weight = 1, .listen = true});
        auto conn = co_await ep.accept(stop);
        std::array<std::byte, 64> in{};
        auto r = co_await ep.recv(in, 5, ~0ull, stop);  // ordinary memory on the eth: side
        peer_got.assign(reinterpret_cast<const char*>(in.data()), r.length);
        std::string reply = "pong:" + peer_got;
        co_await conn.send(std::as_bytes(std::span(reply)), 6);
    });
    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, daemon.uri());
    auto ep = dev->open_endpoint(7);
    std::string reply;
    auto body = [&]() -> task<void> {
        auto conn = co_await ep.connect(peer.mac(), 1, 10s);
        std::string ping = "ping from a unix: frontend";
        co_await conn.send(std::as_bytes(std::span(ping)), 5);  // no registrable_buffer needed
        std::array<std::byte, 128> in{};
        auto r = co_await ep.recv(in, 6);
        reply.assign(reinterpret_cast<const char*>(in.data()), r.length);
    };
    loop.run(body());
    CHECK(peer_got == "ping from a unix: frontend");
    CHECK(reply == "pong:ping from a unix: frontend");
    alarm(0);
}

TEST_CASE("connection::closed works through vmrdmad: the frontend learns that its eth: peer hung up") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(60);
    vmrdma::testing::veth_pair veth("vsd3", "vsp3", 1500);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("closed"));
    split_test::peer_thread peer(veth.b, [&](vmrdma::event_loop& loop, vmrdma::device& dev, std::stop_token stop) -> task<void> {
        auto ep = dev.open_endpoint(1, {.weight = 1, .listen = true});
        auto conn = co_await ep.accept(stop);
        co_await loop.sleep_for(50ms);
        conn.close();  // DISCONNECT to the daemon's engine
    });
    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, daemon.uri());
    auto ep = dev->open_endpoint(7);
    std::error_code why;
    auto body = [&]() -> task<void> {
        auto conn = co_await ep.connect(peer.mac(), 1, 10s);
        why = co_await vmrdma::with_timeout(loop, 20s, [&](std::stop_token st) { return conn.closed(st); });
    };
    loop.run(body());
    CHECK(why == errc::peer_gone);
    alarm(0);
}

// Doorbells are batched: vmrdmad never rings while the frontend has not yet
// drained what it was shown (the ring's event index).  32 small writes (all
// fit in the ring and the engine's pool) are posted at once, published in
// one turn, and the frontend's thread then waits outside its loop until vmrdmad has posted
// every response, so each arrives while it has not drained the first: one
// doorbell, not one per response.  (Letting the loop
// run instead made the count depend on how the peer's ACKs happened to
// batch: 50 doorbells for 128 writes once in CI under ASan.)
TEST_CASE("vmrdmad rings a frontend's doorbell once for a turn's responses, not once per response") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(60);
    constexpr std::uint64_t writes = 32;
    vmrdma::testing::veth_pair veth("vsd4", "vsp4", 9000);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("doorbells"));
    std::array<std::byte, 16> desc{};
    split_test::peer_thread peer(veth.b, [&](vmrdma::event_loop&, vmrdma::device& dev, std::stop_token stop) -> task<void> {
        auto ep = dev.open_endpoint(1, {.weight = 1, .listen = true});
        std::vector<std::byte> target(128 * 64);
        auto target_mr = ep.register_memory(target, access::remote_write);
        auto conn = co_await ep.accept(stop);
        auto d = target_mr.remote().to_bytes();
        co_await conn.send(std::as_bytes(std::span(d)), desc_tag);
        co_await conn.closed(stop);
    });
    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, daemon.uri());
    auto ep = dev->open_endpoint(7);
    vmrdma::registrable_buffer data(128 * 64);
    auto mr = ep.register_memory(data.span(), access::none);
    std::uint64_t responses = 0, doorbells = 0;
    auto body = [&]() -> task<void> {
        auto conn = co_await ep.connect(peer.mac(), 1, 10s);
        co_await ep.recv(desc, desc_tag);
        auto remote = vmrdma::remote_region::from_bytes(desc);
        const std::uint64_t r0 = daemon.stats().responses, d0 = daemon.stats().doorbells;
        vmrdma::async_scope scope;
        for (std::uint64_t i = 0; i < writes; ++i)
            scope.spawn([&, i]() -> task<void> { co_await conn.write(mr, i * 64, remote, i * 64, 64); });
        // A turn publishes the requests (and rings vmrdmad's doorbell once);
        // then nothing drains the responses until vmrdmad has posted them all
        // (the loop thread waits here, outside the loop; alarm() bounds it).
        co_await loop.schedule();
        while (daemon.stats().responses - r0 < writes) std::this_thread::sleep_for(1ms);
        co_await scope.join();
        responses = daemon.stats().responses - r0;
        doorbells = daemon.stats().doorbells - d0;
    };
    loop.run(body());
    CHECK(responses == writes);
    MESSAGE(writes << " writes: " << responses << " responses, " << doorbells << " doorbells");
    CHECK(doorbells <= 2);  // the first response's, and perhaps one more as the frontend drains
    alarm(0);
}

TEST_CASE("two frontends of one vmrdmad reach each other: frames for the daemon's own device are looped back") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(60);
    vmrdma::testing::veth_pair veth("vsd3", "vsp3", 9000);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("local"));
    vmrdma::event_loop loop;
    auto one = vmrdma::device::open(loop, daemon.uri());
    auto two = vmrdma::device::open(loop, daemon.uri());
    auto server = one->open_endpoint(3, {.weight = 1, .listen = true});
    auto client = two->open_endpoint(4);
    vmrdma::registrable_buffer target(1 << 20), data(1 << 20);
    auto src = pattern(1 << 20, 5);
    std::memcpy(data.data(), src.data(), src.size());
    auto target_mr = server.register_memory(target.span(), access::remote_write);
    auto data_mr = client.register_memory(data.span(), access::none);
    std::string got;
    vmrdma::peer_address source;
    auto body = [&]() -> task<void> {
        auto [c, s] = co_await vmrdma::when_all(client.connect(one->mac(), 3), server.accept());
        std::array<std::byte, 64> in{};
        std::string hello = "hello from the other frontend";
        auto [r, unused] = co_await vmrdma::when_all(server.recv(in, 1), c.send(std::as_bytes(std::span(hello)), 1));
        (void)unused;
        got.assign(reinterpret_cast<const char*>(in.data()), r.length);
        source = r.source;
        co_await c.write(data_mr, 0, target_mr.remote(), 0, 1 << 20);
    };
    try {
        loop.run(body());
    } catch (const error& e) {
        FAIL("frontends: " << std::string(e.what()));
    }
    CHECK(got == "hello from the other frontend");
    CHECK(source == vmrdma::peer_address{one->mac(), 4});
    CHECK(std::memcmp(target.data(), src.data(), src.size()) == 0);
    alarm(0);
}

TEST_CASE("receive_in_turns through vmrdmad: responses taken in every turn as well complete once each, in order") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(60);
    vmrdma::testing::veth_pair veth("vsd5", "vsp5", 9000);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("in-turns"));
    vmrdma::event_loop loop;
    vmrdma::device_options o;
    o.receive_in_turns = true;
    auto one = vmrdma::device::open(loop, daemon.uri(), o);
    auto two = vmrdma::device::open(loop, daemon.uri(), o);
    auto server = one->open_endpoint(3, {.weight = 1, .listen = true});
    auto client = two->open_endpoint(4);
    constexpr int count = 128;
    vmrdma::registrable_buffer target(1 << 20), data(1 << 20), in(count * 64);
    auto src = pattern(1 << 20, 9);
    std::memcpy(data.data(), src.data(), src.size());
    auto target_mr = server.register_memory(target.span(), access::remote_write);
    auto in_mr = server.register_memory(in.span(), access::local_write);
    auto data_mr = client.register_memory(data.span(), access::none);
    std::vector<std::uint64_t> tags(count, ~0ull);
    int writes = 0;
    auto body = [&]() -> task<void> {
        auto [c, s] = co_await vmrdma::when_all(client.connect(one->mac(), 3), server.accept());
        vmrdma::async_scope scope;
        for (int i = 0; i < count; ++i)  // any tag: the i-th receive takes the i-th message
            scope.spawn([&, i]() -> task<void> {
                auto r = co_await server.recv(in_mr, static_cast<std::uint64_t>(i) * 64, 64, 0, 0);
                tags[i] = r.tag;
            });
        for (int i = 0; i < count; ++i) {
            scope.spawn(c.send(data_mr, static_cast<std::uint64_t>(i) * 64, 64, static_cast<std::uint64_t>(i)));
            scope.spawn([&, i]() -> task<void> {
                const auto at = static_cast<std::uint64_t>(i) * 8192;
                co_await c.write(data_mr, at, target_mr.remote(), at, 8192);
                ++writes;
            });
        }
        co_await scope.join();
    };
    try {
        loop.run(body());
    } catch (const error& e) {
        FAIL("frontends: " << std::string(e.what()));
    }
    CHECK(writes == count);
    for (int i = 0; i < count; ++i) {
        CAPTURE(i);
        CHECK(tags[i] == static_cast<std::uint64_t>(i));
        CHECK(std::memcmp(in.data() + i * 64, src.data() + i * 64, 64) == 0);
    }
    CHECK(std::memcmp(target.data(), src.data(), src.size()) == 0);
    alarm(0);
}
