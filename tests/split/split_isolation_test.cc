// Isolation in the split driver: a frontend can name only its own regions,
// endpoints and connections; registrations must be sealed memfds whose range
// is inside the file; a frontend that breaks the ring protocol is counted
// and dropped while the daemon keeps serving everyone else.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mman.h>

#include <cstring>

#include "tests/split/split_support.hpp"
#include "vmrdma/registrable.hpp"

extern "C" {
#include "proto/region.h"
}

using split_test::raw_frontend;
using vmrdma::access;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;

using namespace std::chrono_literals;

namespace {

int sealed_memfd(std::size_t size, unsigned seals) {
    int fd = memfd_create("split-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, static_cast<off_t>(size)) == 0);
    if (seals) REQUIRE(fcntl(fd, F_ADD_SEALS, seals) == 0);
    return fd;
}

std::string text_of(const vr_ctl_msg& m) { return std::string(m.text, strnlen(m.text, sizeof m.text)); }

}  // namespace

TEST_CASE("registration: only sealed memfds, only ranges inside them, only own endpoints") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(60);
    vmrdma::testing::veth_pair veth("vsd2", "vsp2", 1500);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("reg"), {.endpoints = 2, .regions = 3});
    raw_frontend f(daemon.path());
    CHECK(f.call(VR_CTL_OPEN_EP, {1, 1, 0}).status == -EPROTO);  // hello first
    f.hello(64);
    CHECK(f.size() == 64);
    CHECK(f.call(VR_CTL_OPEN_EP, {1, 1, 0}).status == 0);

    int unsealed = sealed_memfd(1 << 16, 0);
    auto r = f.call(VR_CTL_REG, {1, 0, 4096, VR_ACCESS_REMOTE_WRITE}, unsealed);
    CHECK(r.status == -EINVAL);
    CHECK(text_of(r).find("F_SEAL_SHRINK") != std::string::npos);

    int good = sealed_memfd(1 << 16, F_SEAL_SHRINK);
    r = f.call(VR_CTL_REG, {1, 1 << 16, 1, VR_ACCESS_REMOTE_WRITE}, good);  // offset at the end
    CHECK(r.status == -EINVAL);
    CHECK(text_of(r).find("outside the memfd") != std::string::npos);
    r = f.call(VR_CTL_REG, {1, 4096, (1 << 16) - 4095, VR_ACCESS_REMOTE_WRITE}, good);  // one byte past
    CHECK(r.status == -EINVAL);
    r = f.call(VR_CTL_REG, {1, ~0ull - 10, 100, VR_ACCESS_REMOTE_WRITE}, good);  // wraps
    CHECK(r.status == -EINVAL);

    int pipefd[2];
    REQUIRE(pipe2(pipefd, O_CLOEXEC) == 0);
    r = f.call(VR_CTL_REG, {1, 0, 1, VR_ACCESS_REMOTE_WRITE}, pipefd[0]);  // not a memfd
    CHECK(r.status == -EINVAL);
    r = f.call(VR_CTL_REG, {1, 0, 4096, VR_ACCESS_REMOTE_WRITE});  // no fd at all
    CHECK(r.status == -EINVAL);
    r = f.call(VR_CTL_REG, {9, 0, 4096, VR_ACCESS_REMOTE_WRITE}, good);  // not its endpoint
    CHECK(r.status == -ENOENT);
    r = f.call(VR_CTL_REG, {1, 0, 4096, 0x100}, good);  // unknown access bits
    CHECK(r.status == -EINVAL);

    // Within the file, sealed: accepted, at an unaligned offset too.
    r = f.call(VR_CTL_REG, {1, 100, 5000, VR_ACCESS_REMOTE_WRITE}, good);
    CHECK(r.status == 0);
    auto key = r.arg[0];
    CHECK(f.call(VR_CTL_REG, {1, 0, 4096, 0}, good).status == 0);
    CHECK(f.call(VR_CTL_REG, {1, 0, 4096, 0}, good).status == 0);
    r = f.call(VR_CTL_REG, {1, 0, 4096, 0}, good);  // a fourth: over the limit of 3
    CHECK(r.status == -ENOSPC);
    CHECK(text_of(r).find("limit") != std::string::npos);
    CHECK(f.call(VR_CTL_DEREG, {key}).status == 0);
    CHECK(f.call(VR_CTL_DEREG, {key}).status == -ENOENT);  // gone
    CHECK(f.call(VR_CTL_OPEN_EP, {2, 1, 0}).status == 0);
    r = f.call(VR_CTL_OPEN_EP, {3, 1, 0});  // a third endpoint: over the limit of 2
    CHECK(r.status == -ENOSPC);
    CHECK(f.call(VR_CTL_HELLO, {64}, -1, 2).status == -EPROTO);  // unknown version
    auto lim = f.call(VR_CTL_LIMITS, {});
    CHECK(lim.arg[0] == 2);
    CHECK(lim.arg[1] == 3);

    // Another frontend can neither close nor deregister what this one owns.
    raw_frontend other(daemon.path());
    other.hello(8);
    CHECK(other.call(VR_CTL_CLOSE_EP, {1}).status == -ENOENT);
    auto key2 = static_cast<std::uint32_t>(f.call(VR_CTL_REG, {1, 0, 4096, 0}, good).arg[0]);
    CHECK(other.call(VR_CTL_DEREG, {key2}).status == -ENOENT);
    r = other.call(VR_CTL_OPEN_EP, {1, 1, 0});  // an id in use by the first frontend
    CHECK(r.status == -EINVAL);
    CHECK(daemon.stats().frontends_active == 2);

    for (int fd : {unsealed, good, pipefd[0], pipefd[1]}) close(fd);
    alarm(0);
}

TEST_CASE("ring requests naming another frontend's region, a forged key or a foreign connection fail") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(60);
    vmrdma::testing::veth_pair veth("vsd3", "vsp3", 1500);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("keys"));

    // Frontend A (the coro unix: transport) owns a region on endpoint 1.
    vmrdma::event_loop loop;
    auto a = vmrdma::device::open(loop, daemon.uri());
    auto ea = a->open_endpoint(1);
    vmrdma::registrable_buffer buf(8192);
    auto a_mr = ea.register_memory(buf.span(), access::local_write);

    // Frontend B, hand-written, tries A's key and forged ones.
    raw_frontend b(daemon.path());
    b.hello(8);
    REQUIRE(b.call(VR_CTL_OPEN_EP, {2, 1, 0}).status == 0);
    vr_ring_req req{};
    req.opcode = VR_RING_RECV;
    req.ep = 2;
    req.lkey = a_mr.key();  // A's region
    req.len = 16;
    req.cookie = 1;
    auto rsp = b.roundtrip(req);
    CHECK(rsp.cookie == 1);
    CHECK(rsp.status == -EACCES);  // bad_key for the frontend
    req.lkey = a_mr.key() ^ 0x10000;  // forged
    req.cookie = 2;
    CHECK(b.roundtrip(req).status == -EACCES);
    req.ep = 1;  // A's endpoint
    req.cookie = 3;
    CHECK(b.roundtrip(req).status == -EINVAL);
    vr_ring_req w{};
    w.opcode = VR_RING_WRITE;
    w.conn = 1;  // no connection of B's (A has none either)
    w.cookie = 4;
    CHECK(b.roundtrip(w).status == -EINVAL);
    w.opcode = 200;  // unknown opcode
    w.cookie = 5;
    CHECK(b.roundtrip(w).status == -EINVAL);
    CHECK(daemon.stats().rejected == 5);

    // A's own receive with its own key is accepted (and cancelled by closing).
    bool cancelled = false;
    auto body = [&]() -> task<void> {
        std::stop_source stop;
        vmrdma::async_scope scope;
        auto receive = [&]() -> task<void> {
            try {
                co_await ea.recv(a_mr, 0, 16, 1, ~0ull, stop.get_token());
            } catch (const error& e) {
                cancelled = e.code() == errc::cancelled;
            }
        };
        scope.spawn(receive());
        co_await loop.sleep_for(std::chrono::milliseconds(50));
        stop.request_stop();
        co_await scope.join();
    };
    loop.run(body());
    CHECK(cancelled);
    CHECK(daemon.stats().rejected == 5);
    alarm(0);
}

TEST_CASE("a region's rkey is useless through another frontend's endpoint") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(60);
    vmrdma::testing::veth_pair veth("vsd4", "vsp4", 1500);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("rkey"));
    vmrdma::event_loop loop;
    auto a = vmrdma::device::open(loop, daemon.uri());
    auto b = vmrdma::device::open(loop, daemon.uri());
    auto ea = a->open_endpoint(1);
    auto eb = b->open_endpoint(2, {.weight = 1, .listen = true});
    vmrdma::registrable_buffer abuf(4096), bbuf(4096);
    auto a_mr = ea.register_memory(abuf.span(), access::remote_write | access::remote_read);
    auto b_mr = eb.register_memory(bbuf.span(), access::remote_write | access::remote_read);
    std::uint64_t a_rkey = a_mr.remote().rkey, b_rkey = b_mr.remote().rkey;
    auto daemon_mac = a->mac();

    errc with_a_key{}, with_b_key{};
    split_test::peer_thread peer(veth.b, [&](vmrdma::event_loop&, vmrdma::device& dev, std::stop_token) -> task<void> {
        auto ep = dev.open_endpoint(9);
        std::vector<std::byte> mem(4096, std::byte{7});
        auto mr = ep.register_memory(mem, access::local_write);
        auto conn = co_await ep.connect(daemon_mac, 2);  // B's endpoint
        try {
            co_await conn.write(mr, 0, {b_rkey, 4096}, 0, 64);
        } catch (const error& e) {
            with_b_key = static_cast<errc>(e.code().value());
        }
        try {
            co_await conn.write(mr, 0, {a_rkey, 4096}, 0, 64);  // A's key, through B's endpoint
        } catch (const error& e) {
            with_a_key = static_cast<errc>(e.code().value());
        }
    });
    auto body = [&]() -> task<void> {
        auto conn = co_await eb.accept();
        peer.join();
    };
    // The peer thread is joined from the loop only after accept; keep the
    // loop turning for the daemon-side work meanwhile (it lives elsewhere).
    loop.run(body());
    CHECK(with_b_key == errc{});  // B's own key works
    CHECK(with_a_key == errc::bad_key);
    CHECK(std::to_integer<int>(bbuf.data()[0]) == 7);
    CHECK(std::to_integer<int>(abuf.data()[0]) == 0);
    alarm(0);
}

TEST_CASE("garbage ring indices: counted, that frontend dropped, the daemon serves on") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(60);
    vmrdma::testing::veth_pair veth("vsd5", "vsp5", 1500);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("garbage"));
    {
        raw_frontend bad(daemon.path());
        bad.hello(16);
        REQUIRE(bad.call(VR_CTL_OPEN_EP, {1, 1, 0}).status == 0);
        bad.shared()->req_prod = 0x7fffffff;  // far past anything it could have posted
        bad.ring_doorbell();
        CHECK(bad.closed_by_daemon(5000));
        CHECK(daemon.stats().violations == 1);
        CHECK(split_test::eventually([&] { return daemon.stats().frontends_cleaned_up == 1; }));
    }
    {
        // More outstanding than size-1: also a violation.
        raw_frontend greedy(daemon.path());
        greedy.hello(4);
        REQUIRE(greedy.call(VR_CTL_OPEN_EP, {2, 1, 0}).status == 0);
        int memfd = sealed_memfd(4096, F_SEAL_SHRINK);
        auto reg = greedy.call(VR_CTL_REG, {2, 0, 4096, 0}, memfd);
        close(memfd);
        REQUIRE(reg.status == 0);
        for (std::uint32_t i = 0; i < 4; ++i) {
            auto& r = greedy.reqs()[i];
            r = {};
            r.opcode = VR_RING_RECV;  // nothing arrives: stays outstanding
            r.ep = 2;
            r.lkey = reg.arg[0];
            r.len = 16;
        }
        greedy.shared()->req_prod = 4;
        greedy.ring_doorbell();
        CHECK(greedy.closed_by_daemon(5000));
        CHECK(daemon.stats().violations == 2);
    }
    {
        // A control message of the wrong size: also a violation.
        raw_frontend junk(daemon.path());
        junk.send_bytes("hello", 5);
        CHECK(junk.closed_by_daemon(5000));
        CHECK(daemon.stats().violations == 3);
    }
    // The endpoint id the bad frontend had is free again, and a well-behaved
    // frontend works.
    CHECK(split_test::eventually([&] { return daemon.stats().frontends_active == 0; }));
    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, daemon.uri());
    auto ep = dev->open_endpoint(1);
    vmrdma::registrable_buffer buf(4096);
    auto mr = ep.register_memory(buf.span(), access::remote_write);
    CHECK(mr.key() != 0);
    alarm(0);
}

TEST_CASE("a frontend flooding invalid requests is dropped as a violation; another frontend's writes complete meanwhile") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(90);
    vmrdma::testing::veth_pair veth("vsd6", "vsp6", 1500);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("flood"));
    split_test::peer_thread peer(veth.b, [&](vmrdma::event_loop&, vmrdma::device& dev, std::stop_token stop) -> task<void> {
        auto ep = dev.open_endpoint(1, {.weight = 1, .listen = true});
        std::vector<std::byte> target(1 << 16);
        auto mr = ep.register_memory(target, access::remote_write);
        auto conn = co_await ep.accept(stop);
        auto desc = mr.remote().to_bytes();
        co_await conn.send(desc, 1);
        std::array<std::byte, 8> bye{};
        co_await ep.recv(bye, 2, ~0ull, stop);
    });
    // The flooder: WRITEs on a connection it does not have, as fast as the
    // daemon answers them, from a thread of its own.
    std::atomic<bool> flooding{true};
    std::atomic<std::uint64_t> flooded{0};
    bool dropped = false;
    std::thread flooder([&] {
        raw_frontend bad(daemon.path());
        bad.hello(256);
        if (bad.call(VR_CTL_OPEN_EP, {3, 1, 0}).status != 0) return;  // (no doctest asserts off the main thread)
        auto* sh = bad.shared();
        std::uint32_t prod = 0;
        auto deadline = std::chrono::steady_clock::now() + 20s;
        while (flooding && std::chrono::steady_clock::now() < deadline) {
            std::uint32_t answered = __atomic_load_n(&sh->rsp_prod, __ATOMIC_ACQUIRE);
            std::uint32_t n = 0;
            while (prod - answered < bad.size() - 1 && n < 64) {
                auto& r = bad.reqs()[prod & (bad.size() - 1)];
                r = {};
                r.opcode = VR_RING_WRITE;
                r.conn = 4242;  // not its connection
                r.len = 8;
                ++prod;
                ++n;
            }
            __atomic_store_n(&sh->req_prod, prod, __ATOMIC_RELEASE);
            flooded += n;
            bad.ring_doorbell();
            if (bad.closed_by_daemon(0)) {
                dropped = true;
                break;
            }
        }
        if (!dropped) dropped = bad.closed_by_daemon(5000);
    });
    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, daemon.uri());
    auto ep = dev->open_endpoint(7);
    vmrdma::registrable_buffer data(4096);
    auto mr = ep.register_memory(data.span(), access::none);
    int writes = 0;
    auto body = [&]() -> task<void> {
        auto conn = co_await ep.connect(peer.mac(), 1, 10s);
        std::array<std::byte, vmrdma::remote_region::wire_size> desc{};
        co_await ep.recv(desc, 1);
        auto remote = vmrdma::remote_region::from_bytes(desc);
        for (int i = 0; i < 200; ++i) {
            co_await conn.write(mr, 0, remote, 0, 4096);
            ++writes;
        }
        co_await conn.send(std::as_bytes(std::span("bye!", 4)), 2);
    };
    loop.run(body());
    flooder.join();  // it floods on until the daemon drops it (or 20 s pass)
    CHECK(writes == 200);
    CHECK(dropped);
    CHECK(flooded > 10000);  // more than vmrdmad's invalid_per_second
    CHECK(daemon.stats().violations >= 1);
    alarm(0);
}
