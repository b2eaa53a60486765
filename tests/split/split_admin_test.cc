// vmrdmactl and the administration messages (VR_CTL_ADMIN_*): what a
// frontend has is listed (SO_PEERCRED identity, ring, endpoints, regions,
// mapped bytes, counters, connections, the device's counters); limits and
// weights change for root and are refused to anyone else.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "tests/split/split_support.hpp"
#include "tests/split/user_process.hpp"
#include "tests/support/runfile.hpp"
#include "vmrdma/registrable.hpp"
#include "vmrdmad/admin_client.hpp"

using vmrdma::access;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::task;

namespace {
std::string ctl_binary() { return vmrdma::testing::runfile("vmrdmad/vmrdmactl"); }

// Runs vmrdmactl; returns its exit status and stdout.
int ctl(const std::string& args, std::string& out) {
    out.clear();
    FILE* p = popen((ctl_binary() + " " + args + " 2>/dev/null").c_str(), "r");
    if (!p) return -1;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
}  // namespace

TEST_CASE("vmrdmactl lists frontends, endpoints, connections and counters; only root changes limits") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(120);
    vmrdma::testing::veth_pair veth("vsa0", "vsap0", 1500);
    split_test::daemon_thread daemon(veth.a, split_test::socket_path("admin"));
    split_test::peer_thread peer(veth.b, [](vmrdma::event_loop&, vmrdma::device& dev, std::stop_token stop) -> task<void> {
        auto ep = dev.open_endpoint(1, {.weight = 1, .listen = true});
        auto conn = co_await ep.accept(stop);
        try {
            co_await ep.accept(stop);  // until the test is done
        } catch (const error&) {
        }
    });

    vmrdma::event_loop loop;
    auto dev = vmrdma::device::open(loop, daemon.uri());
    auto ep = dev->open_endpoint(9, {.weight = 2});
    vmrdma::registrable_buffer buf(1 << 16);
    auto mr = ep.register_memory(buf.span(), access::remote_write);
    vmrdma::connection conn;
    loop.run([&]() -> task<void> { conn = co_await ep.connect(peer.mac(), 1); }());

    vmrdmad::admin_client admin(daemon.path());
    auto fes = admin.frontends();
    const vr_admin_frontend* me = nullptr;
    for (auto& f : fes)
        if (f.ring_size) me = &f;
    REQUIRE(me);
    CHECK(me->pid == getpid());
    CHECK(me->uid == getuid());
    CHECK(me->ring_size == 256);
    CHECK(me->endpoints == 1);
    CHECK(me->regions == 2);  // the buffer and the endpoint's bounce memory (the CONNECT's private data)
    CHECK(me->conns == 1);
    CHECK(me->mapped_bytes >= (1u << 16));
    CHECK(me->requests == 1);  // the CONNECT
    CHECK(me->responses == 1);
    auto eps = admin.endpoints();
    REQUIRE(eps.size() == 1);
    CHECK(eps[0].ep == 9);
    CHECK(eps[0].weight == 2);
    CHECK(eps[0].frontend == me->id);
    CHECK(eps[0].tx_frames > 0);
    auto conns = admin.connections();
    REQUIRE(conns.size() == 1);
    CHECK(conns[0].peer_ep == 1);
    CHECK(std::memcmp(conns[0].peer_mac, peer.mac().bytes.data(), 6) == 0);
    CHECK(conns[0].accepted == 0);
    auto d = admin.device();
    CHECK(d.mtu == 1500);
    CHECK(d.tx_frames > 0);
    CHECK(d.rx_frames > 0);

    // Root sets a limit and a weight.
    admin.set(me->id, VR_ADMIN_SET_MAX_ENDPOINTS, 1);
    try {
        dev->open_endpoint(10);
        FAIL("opened a second endpoint beyond the limit");
    } catch (const error& e) {
        CHECK(e.code() == errc::resources_exhausted);
    }
    admin.set(me->id, VR_ADMIN_SET_WEIGHT, 5);
    CHECK(admin.endpoints()[0].weight == 5);
    CHECK_THROWS_AS(admin.set(me->id, VR_ADMIN_SET_WEIGHT, 2000), vmrdmad::admin_error);
    CHECK_THROWS_AS(admin.set(9999, VR_ADMIN_SET_WEIGHT, 1), vmrdmad::admin_error);

    // Anyone else sees only their own frontends (none here) and may change nothing: -EPERM.
    {
        // Its own connection to the socket is the only frontend it sees;
        // root's (with their endpoints) are not its business.
        split_test::user_process other(65534, {"admin", daemon.path(), std::to_string(me->id)});
        CHECK(other.line == "foreign=0 endpoints=0 set=" + std::to_string(-EPERM));
    }
    CHECK(admin.endpoints()[0].weight == 5);

    // The command line.
    std::string out;
    CHECK(ctl("--help", out) == 0);
    CHECK(out.find("set-weight") != std::string::npos);
    CHECK(ctl("--socket " + daemon.path() + " --json", out) == 0);
    CHECK(out.find("\"frontends\":[") != std::string::npos);
    CHECK(out.find("\"pid\":" + std::to_string(getpid())) != std::string::npos);
    CHECK(out.find("\"weight\":5") != std::string::npos);
    CHECK(ctl("--socket " + daemon.path() + " status", out) == 0);
    CHECK(out.find("FRONTENDS") != std::string::npos);
    CHECK(ctl("--socket " + daemon.path() + " set-weight " + std::to_string(me->id) + " 4", out) == 0);
    CHECK(admin.endpoints()[0].weight == 4);
    CHECK(ctl("--socket " + daemon.path() + " set-weight", out) == 2);
    CHECK(ctl("--socket /nonexistent/sock status", out) == 1);
    alarm(0);
}

TEST_CASE("vmrdmad's socket is 0660 by default, and --socket-mode / a group widen it on purpose") {
    if (vmrdma::testing::skip_network_tests()) return;
    alarm(60);
    vmrdma::testing::veth_pair veth("vsd9", "vsp9", 1500);
    for (auto [mode, expect] : {std::pair<int, mode_t>{-1, 0660}, std::pair<int, mode_t>{0666, 0666}}) {
        CAPTURE(mode);
        const std::string path = split_test::socket_path(mode < 0 ? "mode-default" : "mode-0666");
        vmrdma::event_loop loop;
        vmrdmad::options opts;
        opts.socket_path = path;
        if (mode >= 0) opts.socket_mode = static_cast<mode_t>(mode);
        vmrdmad::daemon d(loop, "eth:" + veth.a, opts);
        struct stat st {};
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == expect);
    }
    // Without the mode, a user who is neither the owner nor in the group
    // cannot even connect.
    const std::string path = split_test::socket_path("closed-door");
    vmrdma::event_loop loop;
    vmrdmad::options closed;
    closed.socket_path = path;
    vmrdmad::daemon d(loop, "eth:" + veth.a, closed);
    split_test::user_process other(65534, {"connect", path});
    CHECK(other.line.rfind("error: cannot connect to vmrdmad at '" + path + "': Permission denied", 0) == 0);
    alarm(0);
}
