// Per-uid shares of vmrdmad (docs/split-driver.md, "Per-uid limits"): one
// unprivileged user cannot take all of the daemon's frontends, the engine's
// endpoints or its connections (its limit), a second user still gets some,
// and once little is left a user that already holds its reserve leaves the
// rest to a third. Each user is a process of its own (uid_user) with its own
// uid; root sees every user in `vmrdmactl uids`, a user only itself.
#include <doctest/doctest.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "tests/split/split_support.hpp"
#include "tests/split/user_process.hpp"
#include "vmrdmad/admin_client.hpp"

using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> take(const std::string& uri, const vmrdma::mac_address& peer, unsigned frontends,
                              unsigned endpoints, unsigned connections, unsigned first_ep) {
    return {"take", uri, peer.to_string(), std::to_string(frontends), std::to_string(endpoints),
            std::to_string(connections), std::to_string(first_ep)};
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
    split_test::user_process a(65534, take(uri, peer_mac, 5, 5, 5, 0));
    MESSAGE("A: " << a.line);
    CHECK(a.line.rfind("f=4 e=4 c=4 why=", 0) == 0);
    CHECK(a.line.find("uid 65534 holds 4 frontends (its limit)") != std::string::npos);
    // A peer connecting to A's listener is refused: A has its connections.
    knock = 1;
    for (int i = 0; i < 500 && knocked.load() < 1; ++i) std::this_thread::sleep_for(10ms);
    CHECK(knocked.load() == 1);
    CHECK(knock_refused.load());

    // B gets in, but once only the reserve is left, B (holding 2) stops.
    split_test::user_process b(65533, take(uri, peer_mac, 1, 5, 5, 4));
    CHECK(b.line == "f=1 e=2 c=2");
    // C, holding nothing, still gets the reserve.
    split_test::user_process c(65532, take(uri, peer_mac, 1, 5, 5, 6));
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
    split_test::user_process look(65533, {"uids", uri.substr(5)});
    CHECK(look.line == "65533 ");
    CHECK(daemon.stats().uid_refused.load() >= 8);
    alarm(0);
}
