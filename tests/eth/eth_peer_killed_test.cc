// A peer process killed in the middle of a transfer: the survivor's
// operations fail with a clear error within the retry limit, nothing hangs,
// and tearing the device down leaves no descriptor behind.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "tests/support/fd_count.hpp"
#include "tests/support/private_net.hpp"
#include "vmrdma/rdma.hpp"
#include "vmrdma/runtime.hpp"

using namespace std::chrono_literals;
using vmrdma::access;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;

namespace {


// The peer: serves one listening endpoint with a registered region and
// tells the parent its rkey through a pipe; runs until killed.
[[noreturn]] void serve(const std::string& ifname, int report_fd) {
    try {
        vmrdma::event_loop loop;
        auto dev = vmrdma::device::open(loop, "eth:" + ifname);
        auto ep = dev->open_endpoint(1, {.weight = 1, .listen = true});
        std::vector<std::byte> memory(64u << 20);
        auto mr = ep.register_memory(memory, access::remote_write);
        struct {
            std::uint64_t rkey;
            vmrdma::mac_address mac;
        } report{mr.remote().rkey, dev->mac()};
        if (write(report_fd, &report, sizeof report) != sizeof report) _exit(1);
        auto body = [&]() -> task<void> {
            auto conn = co_await ep.accept();
            for (;;) co_await loop.sleep_for(1s);
        };
        loop.run(body());
    } catch (...) {
    }
    _exit(1);
}

}  // namespace

TEST_CASE("a peer killed mid-transfer: the write fails with errc::timeout, no hang, no leak") {
    if (vmrdma::testing::skip_network_tests()) return;
    vmrdma::testing::veth_pair veth("vrkill-a", "vrkill-b", 1500);
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    pid_t peer = fork();
    REQUIRE(peer >= 0);
    if (peer == 0) {
        close(pipefd[0]);
        serve(veth.b, pipefd[1]);
    }
    close(pipefd[1]);
    struct {
        std::uint64_t rkey;
        vmrdma::mac_address mac;
    } report{};
    REQUIRE(read(pipefd[0], &report, sizeof report) == sizeof report);
    const std::uint64_t rkey = report.rkey;
    close(pipefd[0]);

    int fds_before = vmrdma::testing::open_fd_count();
    {
        vmrdma::device_options quick;
        quick.rto_ns = 5'000'000;
        quick.retry_limit = 4;
        quick.peer_timeout_ns = 200'000'000;  // the test's budget: gone after 0.2 s of silence
        vmrdma::event_loop loop;
        auto dev = vmrdma::device::open(loop, "eth:" + veth.a, quick);
        auto ep = dev->open_endpoint(1);
        std::vector<std::byte> src(64u << 20, std::byte{7});
        auto src_mr = ep.register_memory(src, access::none);
        auto run = [&]() -> task<void> {
            auto conn = co_await ep.connect(report.mac, 1);
            vmrdma::remote_region remote{rkey, 64u << 20};
            co_await conn.write(src_mr, 0, remote, 0, 1 << 20);  // the peer is alive
            auto killer = [&]() -> task<void> {
                co_await loop.sleep_for(5ms);
                kill(peer, SIGKILL);
            };
            auto transfer = [&]() -> task<void> {
                try {
                    co_await conn.write(src_mr, 0, remote, 0, 64u << 20);
                    FAIL("a 64 MiB write to a peer killed after 5 ms must not succeed");
                } catch (const error& e) {
                    CHECK_MESSAGE(e.code() == errc::timeout, e.what());
                }
            };
            co_await vmrdma::when_all(killer(), transfer());
            // Later operations on the dead connection fail at once.
            try {
                co_await conn.write(src_mr, 0, remote, 0, 8);
                FAIL("the connection is dead");
            } catch (const error& e) {
                CHECK(e.code() == errc::peer_gone);
            }
        };
        loop.run(run());
    }
    int status = 0;
    waitpid(peer, &status, 0);
    CHECK(WIFSIGNALED(status));
    CHECK(vmrdma::testing::open_fd_count() == fds_before);
}
