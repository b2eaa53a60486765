// Per-uid shares of vmrdmad (docs/split-driver.md, "Per-uid limits"): one
// unprivileged user cannot take all of the daemon's frontends, the engine's
// endpoints or its connections (its limit), a second user still gets some,
// and once little is left a user that already holds its reserve leaves the
// rest to a third. Each user is a child process with its own uid; root sees
// every user in `vmrdmactl uids`, a user only itself.
#include <doctest/doctest.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>

#include "tests/split/split_support.hpp"
#include "vmrdmad/admin_client.hpp"

using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;
using namespace std::chrono_literals;

namespace {

// A child process as `uid`: body(report) runs, writes its result line to the
// parent and then holds what it took until the parent closes `hold`.
struct user {
    pid_t pid = -1;
    int result = -1;  // read end: one line from the child
    int release = -1; // write end: closing it lets the child go
    std::string line;

    template <typename Body>
    user(uid_t uid, Body body) {
        int res[2], rel[2];
        REQUIRE(pipe(res) == 0);
        REQUIRE(pipe(rel) == 0);
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            ::close(res[0]);
            ::close(rel[1]);
            std::string out;
            if (setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0) {
                out = "error: cannot become uid " + std::to_string(uid);
            } else {
                try {
                    vmrdma::event_loop loop;
                    out = body(loop);
                    out += "\n";
                    [[maybe_unused]] auto n = ::write(res[1], out.data(), out.size());
                    char c;
                    [[maybe_unused]] auto m = ::read(rel[0], &c, 1);  // hold until released
                    _exit(0);
                } catch (const std::exception& e) {
                    out = std::string("error: ") + e.what();
                }
            }
            out += "\n";
            [[maybe_unused]] auto n = ::write(res[1], out.data(), out.size());
            _exit(1);
        }
        ::close(res[1]);
        ::close(rel[0]);
        result = res[0];
        release = rel[1];
        char buf[512];
        ssize_t n;
        while ((n = ::read(result, buf, sizeof buf)) > 0) {
            line.append(buf, static_cast<std::size_t>(n));
            if (line.find('\n') != std::string::npos) break;
        }
        if (!line.empty() && line.back() == '\n') line.pop_back();
    }
    ~user() {
        ::close(release);
        ::close(result);
        int st = 0;
        if (pid > 0) waitpid(pid, &st, 0);
    }
};

// Takes as many of each as it is given, up to `want`, and says how many.
std::string take(vmrdma::event_loop& loop, const std::string& uri, const vmrdma::mac_address& peer,
                 unsigned frontends, unsigned endpoints, unsigned connections, std::uint16_t first_ep) {
    std::vector<std::unique_ptr<vmrdma::device>> devs;
    std::string refused;
    for (unsigned i = 0; i < frontends; ++i) {
        try {
            devs.push_back(vmrdma::device::open(loop, uri));
        } catch (const error& e) {
            if (e.code() != errc::resources_exhausted) throw;
            refused = e.what();
            break;
        }
    }
    if (devs.empty()) return "f=0 why=" + refused;
    static std::vector<vmrdma::endpoint> eps;  // held until the process exits
    static std::vector<vmrdma::connection> conns;
    for (unsigned i = 0; i < endpoints; ++i) {
        try {
            eps.push_back(devs[0]->open_endpoint(static_cast<std::uint16_t>(first_ep + i),
                                                 {.weight = 1, .listen = i == 0}));
        } catch (const error& e) {
            if (e.code() != errc::resources_exhausted) throw;
            break;
        }
    }
    unsigned c = 0;
    auto body = [&]() -> task<void> {
        for (unsigned i = 0; i < connections && !eps.empty(); ++i) {
            try {
                conns.push_back(co_await eps[0].connect(peer, 1, 5s));
                ++c;
            } catch (const error& e) {
                if (e.code() != errc::resources_exhausted) throw;
                break;
            }
        }
    };
    loop.run(body());
    static std::vector<std::unique_ptr<vmrdma::device>> keep;
    for (auto& d : devs) keep.push_back(std::move(d));
    return "f=" + std::to_string(keep.size()) + " e=" + std::to_string(eps.size()) + " c=" + std::to_string(c) +
           (refused.empty() ? "" : " why=" + refused);
}

}  // namespace

vmrdma::mac_address mac_of(const std::string& ifname) {
    ifreq ifr{};
    std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname.c_str());
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(s >= 0);
    int rc = ::ioctl(s, SIOCGIFHWADDR, &ifr);
    ::close(s);
    REQUIRE(rc == 0);
    vmrdma::mac_address m;
    std::memcpy(m.bytes.data(), ifr.ifr_hwaddr.sa_data, 6);
    return m;
}

TEST_CASE("one uid cannot take all frontends, endpoints or connections; a reserve is left for others") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(120);
    vmrdma::testing::veth_pair veth("vsu0", "vsup0", 1500);
    const auto daemon_mac = mac_of(veth.a);
    // Pools of 8 each: a uid may hold 4 (half), and 25 % (2) is kept for others.
    vmrdmad::options opts;
    opts.socket_path = split_test::socket_path("uids");
    opts.socket_mode = 0666;
    opts.max_frontends = 8;
    opts.per_uid.reserve_percent = 25;
    opts.engine.max_endpoints = 8;
    opts.engine.max_connections = 8;
    opts.per_frontend.endpoints = 8;  // the uid's share is what limits here
    split_test::daemon_thread daemon(veth.a, opts);
    std::atomic<int> knock{0}, knocked{0};
    std::atomic<bool> knock_refused{false};
    split_test::peer_thread peer(veth.b, [&](vmrdma::event_loop& loop, vmrdma::device& dev,
                                             std::stop_token stop) -> task<void> {
        auto ep = dev.open_endpoint(1, {.weight = 1, .listen = true});
        auto asker = dev.open_endpoint(2);
        vmrdma::async_scope scope;
        std::vector<vmrdma::connection> conns;
        scope.spawn([&]() -> task<void> {
            try {
                for (;;) conns.push_back(co_await ep.accept(stop));
            } catch (const error&) {  // stopped
            }
        });
        // When asked: connect to the daemon's endpoint 0 (user A's listener).
        while (!stop.stop_requested()) {
            if (knock.load() > knocked.load()) {
                try {
                    auto c = co_await asker.connect(daemon_mac, 0, 2s);
                    knock_refused = false;
                } catch (const error&) {
                    knock_refused = true;  // refused until the deadline
                }
                ++knocked;
            }
            try {
                co_await loop.sleep_for(10ms, stop);
            } catch (const error&) {
            }
        }
        co_await scope.join();
    });
    const std::string uri = daemon.uri();
    const auto peer_mac = peer.mac();

    // A wants 5 of each and gets its limit, 4 (endpoints 0-3; 0 listens).
    user a(65534, [&](vmrdma::event_loop& loop) { return take(loop, uri, peer_mac, 5, 5, 5, 0); });
    MESSAGE("A: " << a.line);
    CHECK(a.line.rfind("f=4 e=4 c=4 why=", 0) == 0);
    CHECK(a.line.find("uid 65534 holds 4 frontends (its limit)") != std::string::npos);
    // A peer connecting to A's listener is refused: A has its connections.
    knock = 1;
    for (int i = 0; i < 500 && knocked.load() < 1; ++i) std::this_thread::sleep_for(10ms);
    CHECK(knocked.load() == 1);
    CHECK(knock_refused.load());

    // B gets in, but once only the reserve is left, B (holding 2) stops.
    user b(65533, [&](vmrdma::event_loop& loop) { return take(loop, uri, peer_mac, 1, 5, 5, 4); });
    CHECK(b.line == "f=1 e=2 c=2");
    // C, holding nothing, still gets the reserve.
    user c(65532, [&](vmrdma::event_loop& loop) { return take(loop, uri, peer_mac, 1, 5, 5, 6); });
    CHECK(c.line == "f=1 e=2 c=2");

    // Root sees every user and what each was refused; a user sees only itself.
    vmrdmad::admin_client admin(daemon.path());
    auto uids = admin.uids();
    REQUIRE(uids.size() >= 3);
    bool seen_a = false;
    for (const auto& u : uids) {
        if (u.uid != 65534) continue;
        seen_a = true;
        CHECK(u.frontends == 4);
        CHECK(u.endpoints == 4);
        CHECK(u.conns == 4);
        CHECK(u.max_endpoints == 4);
        CHECK(u.reserve_conns == 2);
        CHECK(u.refused >= 4);  // a frontend, an endpoint, a connect, the peer's connect
    }
    CHECK(seen_a);
    user look(65533, [&](vmrdma::event_loop&) {
        vmrdmad::admin_client mine(uri.substr(5));
        std::string seen;
        for (const auto& u : mine.uids()) seen += std::to_string(u.uid) + " ";
        return seen;
    });
    CHECK(look.line == "65533 ");
    CHECK(daemon.stats().uid_refused.load() >= 8);
    alarm(0);
}
