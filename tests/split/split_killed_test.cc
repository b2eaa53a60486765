// A frontend process (unprivileged: uid 65534) killed in the middle of a
// transfer: vmrdmad notices its socket close, disconnects its connections,
// closes its endpoints, deregisters and unmaps its regions and closes its
// ring and doorbells. Its rkey is dead afterwards, even through the same
// endpoint id opened again by another frontend: the peer gets bad_key.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "tests/support/fd_count.hpp"
#include "tests/split/split_support.hpp"
#include "tests/split/user_process.hpp"
#include "vmrdma/registrable.hpp"

using namespace std::chrono_literals;
using vmrdma::access;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;

namespace {

constexpr std::size_t size = 1u << 20;

}  // namespace

TEST_CASE("a frontend killed mid-transfer is cleaned up; its rkey then gives the peer bad_key") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(120);
    vmrdma::testing::veth_pair veth("vsd6", "vsp6", 9000);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("killed"));
    int fds_before = vmrdma::testing::open_fd_count();

    // The frontend process (uid_user read-loop): drops to nobody, registers
    // 1 MiB on listening endpoint 3, reports the key, accepts the peer, learns
    // the peer's region and reads it in a loop until killed.
    split_test::user_process child(65534, {"read-loop", daemon.uri(), "3", std::to_string(size)});
    REQUIRE(child.line.rfind("rkey=", 0) == 0);
    const std::uint64_t child_rkey = std::stoull(child.line.substr(5));
    CHECK(daemon.stats().frontends_active == 1);

    // The peer: connects to the child's endpoint, gives it a region to read,
    // and reads the child's region in a loop (both directions busy).
    std::atomic<int> peer_reads{0};
    std::atomic<bool> reopened{false}, peer_done{false};
    std::atomic<int> first_failure{0}, stale_key{0};
    bool peer_saw_child_data = false;
    vmrdma::mac_address daemon_mac;
    {
        vmrdma::event_loop probe;
        daemon_mac = vmrdma::device::open(probe, daemon.uri())->mac();
    }
    CHECK(split_test::eventually([&] { return daemon.stats().frontends_cleaned_up == 1; }));  // the probe
    split_test::peer_thread peer(veth.b, [&](vmrdma::event_loop& loop, vmrdma::device& dev,
                                             std::stop_token stop) -> task<void> {
        auto ep = dev.open_endpoint(9);
        std::vector<std::byte> mem(size, std::byte{0x17}), into(size), small(16);
        auto mr = ep.register_memory(mem, access::remote_read);
        auto into_mr = ep.register_memory(into, access::local_write);
        auto small_mr = ep.register_memory(small, access::none);
        auto d = mr.remote().to_bytes();
        std::memcpy(small.data(), d.data(), d.size());
        vmrdma::remote_region in_child{child_rkey, size};
        {
            auto conn = co_await ep.connect(daemon_mac, 3, stop);
            co_await conn.send(small_mr, 0, 16, 1, stop);
            try {
                for (;;) {
                    co_await conn.read(into_mr, 0, in_child, 0, static_cast<std::uint32_t>(size), stop);
                    // The child's pages: its own 0x42, or the 0x17 its reads of us placed there.
                    peer_saw_child_data = (into[0] == std::byte{0x42} || into[0] == std::byte{0x17}) &&
                                          (into[size - 1] == std::byte{0x42} || into[size - 1] == std::byte{0x17});
                    ++peer_reads;
                }
            } catch (const error& e) {
                first_failure = e.code().value();
            }
        }
        while (!reopened) co_await loop.sleep_for(10ms, stop);
        auto again = co_await ep.connect(daemon_mac, 3, stop);
        try {
            co_await again.read(into_mr, 0, in_child, 0, 64, stop);
            stale_key = -1;
        } catch (const error& e) {
            stale_key = e.code().value();
        }
        peer_done = true;
    });
    CHECK(split_test::eventually([&] { return peer_reads >= 3; }, 20000));
    int status = child.kill(SIGKILL);  // mid-transfer: reads in both directions are in flight
    CHECK(WIFSIGNALED(status));
    CHECK(split_test::eventually([&] { return daemon.stats().frontends_cleaned_up == 2; }));
    CHECK(daemon.stats().frontends_active == 0);
    CHECK(split_test::eventually([&] { return first_failure != 0; }, 20000));
    CAPTURE(first_failure.load());
    // The read in flight finds the region gone (bad_key) or the connection
    // closed (peer_gone), depending on which reaches the peer first.
    CHECK((first_failure == static_cast<int>(errc::bad_key) || first_failure == static_cast<int>(errc::peer_gone) ||
           first_failure == static_cast<int>(errc::timeout)));

    // Another frontend opens endpoint 3 again; the peer's old rkey is dead.
    {
        vmrdma::event_loop loop;
        auto dev = vmrdma::device::open(loop, daemon.uri());
        auto body = [&]() -> task<void> {
            vmrdma::endpoint ep3;
            for (int tries = 0;; ++tries) {
                try {
                    ep3 = dev->open_endpoint(3, {.weight = 1, .listen = true});
                    break;
                } catch (const error& e) {
                    if (e.code() != errc::resources_exhausted || tries > 500) throw;  // still closing
                }
                co_await loop.sleep_for(10ms);
            }
            reopened = true;
            auto conn = co_await ep3.accept();
            while (!peer_done) co_await loop.sleep_for(10ms);
        };
        loop.run(body());
    }
    peer.join();
    CHECK(peer_saw_child_data);
    CHECK(stale_key == static_cast<int>(errc::bad_key));
    CHECK(split_test::eventually([&] { return daemon.stats().frontends_active == 0; }));
    CHECK(split_test::eventually([&] { return vmrdma::testing::open_fd_count() == fds_before; }));
    alarm(0);
}
