// vmrdmad stopping and restarting under frontends (the vmrdmad binary as a
// child process, on one end of a veth pair):
//  - SIGTERM drains: the writes in flight finish, a receive waiting for a
//    peer fails errc::shut_down, new operations fail errc::shut_down, the
//    daemon exits 0;
//  - SIGKILL (a crash): every pending operation fails errc::shut_down, as
//    do new ones;
// and after either, a daemon started again on the same socket serves a
// frontend that opens a new device.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "tests/split/split_support.hpp"
#include "tests/support/runfile.hpp"
#include "vmrdma/registrable.hpp"
#include "vmrdmad/admin_client.hpp"

using namespace std::chrono_literals;
using vmrdma::access;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;

namespace {

constexpr std::size_t size = 1u << 20;

std::string daemon_binary() { return vmrdma::testing::runfile("vmrdmad/vmrdmad"); }

// vmrdmad as a child process; waits until its socket answers.
pid_t start_daemon(const std::string& ifname, const std::string& socket) {
    pid_t pid = fork();
    if (pid == 0) {
        std::string dev = "eth:" + ifname, bin = daemon_binary();
        execl(bin.c_str(), bin.c_str(), "--device", dev.c_str(), "--socket", socket.c_str(), "--drain-timeout-ms",
              "20000", static_cast<char*>(nullptr));
        _exit(127);
    }
    bool up = split_test::eventually(
        [&] {
            try {
                vmrdmad::admin_client probe(socket);
                probe.device();
                return true;
            } catch (const vmrdmad::admin_error&) {
                return false;
            }
        },
        10000);
    if (!up) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        throw std::runtime_error("vmrdmad did not come up (binary " + daemon_binary() + ")");
    }
    return pid;
}

// The peer: listening endpoint 1 with a 1 MiB target region; accepts every
// connection; `freeze` blocks its loop thread for 500 ms, so writes to it
// stay in flight in the daemon meanwhile.
struct peer_state {
    std::promise<std::uint64_t> key;
    std::atomic<bool> freeze{false}, frozen{false};
};

split_test::peer_thread::body_fn peer_body(peer_state& st) {
    return [&st](vmrdma::event_loop& loop, vmrdma::device& dev, std::stop_token stop) -> task<void> {
        auto ep = dev.open_endpoint(1, {.weight = 1, .listen = true});
        std::vector<std::byte> target(size);
        auto mr = ep.register_memory(target, access::remote_write);
        st.key.set_value(mr.key());
        std::vector<vmrdma::connection> conns;
        vmrdma::async_scope scope;
        // Named: a coroutine lambda's captures live in the closure, which
        // must outlive the coroutine.
        auto accept_all = [&]() -> task<void> {
            try {
                for (;;) conns.push_back(co_await ep.accept(stop));
            } catch (const error&) {
            }
        };
        scope.spawn(accept_all());
        try {
            while (!stop.stop_requested()) {
                co_await loop.sleep_for(1ms, stop);
                if (st.freeze.exchange(false)) {
                    st.frozen = true;
                    std::this_thread::sleep_for(500ms);
                    st.frozen = false;
                }
            }
        } catch (const error&) {
        }
        co_await scope.join();
    };
}

std::uint32_t in_flight(const std::string& socket) {
    vmrdmad::admin_client admin(socket);
    std::uint32_t n = 0;
    for (auto& f : admin.frontends()) n += f.in_flight;
    return n;
}

// One frontend: 4 x 1 MiB writes and a receive nobody will satisfy, all in
// flight (the peer frozen) when `sig` hits the daemon. Returns how many
// writes succeeded; the receive's and the failed writes' codes are checked.
void pending_then_signal(const std::string& uri, const std::string& socket, pid_t daemon, int sig,
                         peer_state& st, vmrdma::mac_address peer_mac, std::uint64_t rkey) {
    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, uri);
    auto ep = dev->open_endpoint(5);
    vmrdma::registrable_buffer data(size), small(64);
    std::memset(data.data(), 0x5a, size);
    auto data_mr = ep.register_memory(data.span(), access::none);
    auto small_mr = ep.register_memory(small.span(), access::local_write);
    int writes_ok = 0;
    std::vector<std::error_code> write_errors;
    std::error_code recv_error, later_error;
    auto body = [&]() -> task<void> {
        auto conn = co_await ep.connect(peer_mac, 1);
        vmrdma::remote_region remote{rkey, size};
        co_await conn.write(data_mr, 0, remote, 0, 4096);  // the path works
        st.freeze = true;
        while (!st.frozen) co_await loop.sleep_for(1ms);
        vmrdma::async_scope scope;
        auto recv_one = [&]() -> task<void> {  // named: see peer_body
            try {
                co_await ep.recv(small_mr, 0, 16, 77);
            } catch (const error& e) {
                recv_error = e.code();
            }
        };
        auto write_one = [&]() -> task<void> {
            try {
                co_await conn.write(data_mr, 0, remote, 0, static_cast<std::uint32_t>(size));
                ++writes_ok;
            } catch (const error& e) {
                write_errors.push_back(e.code());
            }
        };
        scope.spawn(recv_one());
        for (int i = 0; i < 4; ++i) scope.spawn(write_one());
        // The daemon has taken all five (the peer is frozen: none can finish).
        for (int i = 0; i < 400 && in_flight(socket) < 5; ++i) co_await loop.sleep_for(1ms);
        CHECK(in_flight(socket) == 5);
        kill(daemon, sig);
        co_await scope.join();
        try {
            co_await conn.write(data_mr, 0, remote, 0, 4096);
        } catch (const error& e) {
            later_error = e.code();
        }
    };
    loop.run(body());
    CHECK(recv_error == errc::shut_down);
    CHECK(later_error == errc::shut_down);
    if (sig == SIGTERM) {
        CHECK(writes_ok == 4);  // drained: what was in flight finished
    } else {
        CHECK(writes_ok + write_errors.size() == 4);
        for (auto& e : write_errors) CHECK(e == errc::shut_down);
        CHECK(writes_ok == 0);  // killed while the peer was frozen
    }
    // Control calls fail the same way.
    try {
        ep.register_memory(data.span(), access::none);
        FAIL("registered with the daemon gone");
    } catch (const error& e) {
        CHECK(e.code() == errc::shut_down);
    }
}

// After a restart: a new device works; the old one keeps failing shut_down.
void reconnect(const std::string& uri, vmrdma::mac_address peer_mac, std::uint64_t rkey) {
    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, uri);
    auto ep = dev->open_endpoint(5);
    vmrdma::registrable_buffer data(size);
    auto mr = ep.register_memory(data.span(), access::none);
    auto body = [&]() -> task<void> {
        auto conn = co_await ep.connect(peer_mac, 1);
        co_await conn.write(mr, 0, {rkey, size}, 0, static_cast<std::uint32_t>(size));
    };
    loop.run(body());
}

void run_case(int sig, const char* tag) {
    alarm(120);
    std::string a = std::string("vsr") + tag, b = std::string("vsrp") + tag;
    vmrdma::testing::veth_pair veth(a, b, 9000);
    auto socket = split_test::socket_path(tag);
    peer_state st;
    auto key_future = st.key.get_future();
    split_test::peer_thread peer(veth.b, peer_body(st));
    auto rkey = key_future.get();
    pid_t daemon = start_daemon(veth.a, socket);
    pending_then_signal("unix:" + socket, socket, daemon, sig, st, peer.mac(), rkey);
    int status = 0;
    REQUIRE(waitpid(daemon, &status, 0) == daemon);
    if (sig == SIGTERM) {
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        // It stopped listening and removed its socket: opening fails at once.
        vmrdma::event_loop loop;
        CHECK_THROWS_AS(vmrdma::device::open(loop, "unix:" + socket), error);
    } else {
        CHECK(WIFSIGNALED(status));
    }
    daemon = start_daemon(veth.a, socket);
    reconnect("unix:" + socket, peer.mac(), rkey);
    kill(daemon, SIGTERM);
    REQUIRE(waitpid(daemon, &status, 0) == daemon);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    alarm(0);
}

}  // namespace

TEST_CASE("SIGTERM drains: in-flight writes finish, waiting and new operations fail shut_down, exit 0") {
    if (vmrdma::testing::skip_network_tests()) return;
    run_case(SIGTERM, "t");
}

TEST_CASE("a killed daemon: pending and new operations fail shut_down; a new device reconnects") {
    if (vmrdma::testing::skip_network_tests()) return;
    run_case(SIGKILL, "k");
}

TEST_CASE("vmrdmad refuses a --poll-us it cannot take, before it opens anything, and says why") {
    // Parsed before the device: no namespace or interface needed.
    auto run = [](const std::string& poll) {
        std::string cmd = daemon_binary() + " --device eth:none --poll-us " + poll + " 2>&1";
        FILE* p = popen(cmd.c_str(), "r");
        REQUIRE(p != nullptr);
        std::string out;
        char buf[256];
        while (std::fgets(buf, sizeof buf, p)) out += buf;
        int status = pclose(p);
        return std::pair{WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
    };
    auto [code, out] = run("1000001");
    CHECK(code == 2);
    CHECK(out.find("--poll-us is in microseconds, at most 1000000") != std::string::npos);
    auto [code2, out2] = run("soon");
    CHECK(code2 == 2);
    CHECK(out2.find("usage: vmrdmad") != std::string::npos);
}

TEST_CASE("vmrdmad's loop polls --poll-us, gathers a stream in a sleep, and gives the core away in empty spins") {
    vmrdmad::options o;
    o.poll = std::chrono::microseconds(75);
    const auto polling = vmrdmad::loop_options_for(o);
    CHECK(polling.busy_poll == std::chrono::microseconds(75));
    CHECK(polling.gather_while_polling);
    // Beside frontends that spin (MPI ranks) on as few cores: docs/split-driver.md.
    CHECK(polling.yield_while_polling);
    o.poll = std::chrono::microseconds(0);
    CHECK(vmrdmad::loop_options_for(o).busy_poll.count() == 0);  // --poll-us 0: sleeps at once
}
