// The provider through libfabric's own API (what an application sees), two
// domains in one process on the two ends of a veth pair in the test's
// private network namespace. Each test tries to break one of docs/mpi.md's
// invariants: sources and directed receives, matching order across sizes,
// peek/claim/discard, cancel, truncation, RMA and atomics checked at the
// target, multi-receive, closing with work outstanding, a sleeping reader
// woken, configuration values it does not take refused.
#include <doctest/doctest.h>
#include <rdma/fabric.h>
#include <rdma/fi_atomic.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ifaddrs.h>
#include <linux/capability.h>
#include <linux/if_link.h>
#include <optional>
#include <string>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "tests/support/in_child.hpp"
#include "tests/support/private_net.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

// libfabric finds the provider in the directory of the built library.
void use_built_provider() {
    static bool done = [] {
        std::string dir = std::string(std::getenv("TEST_SRCDIR")) + "/vmrdma/fabric";
        setenv("FI_PROVIDER_PATH", dir.c_str(), 1);
        return true;
    }();
    (void)done;
}

#define FI_OK(call)                                                              \
    do {                                                                         \
        int rc_ = static_cast<int>(call);                                        \
        INFO(#call);                                                             \
        REQUIRE_MESSAGE(rc_ == 0, fi_strerror(-rc_));                            \
    } while (0)

// Hints that ask vmrdma for an RDM endpoint on eth:IFACE with `caps`
// (fi_freeinfo them).
fi_info* vmrdma_hints(const std::string& iface, std::uint64_t caps) {
    fi_info* hints = fi_allocinfo();
    hints->ep_attr->type = FI_EP_RDM;
    hints->caps = caps;
    hints->domain_attr->name = strdup(("eth:" + iface).c_str());
    hints->fabric_attr->prov_name = strdup("vmrdma");
    return hints;
}

// One side: a domain on one end of the pair and endpoints on it.
struct side {
    fi_info* info = nullptr;
    fid_fabric* fabric = nullptr;
    fid_domain* domain = nullptr;
    fid_av* av = nullptr;
    fid_cq* cq = nullptr;
    std::vector<fid_ep*> eps;

    explicit side(const std::string& iface) {
        fi_info* hints =
            vmrdma_hints(iface, FI_MSG | FI_TAGGED | FI_RMA | FI_ATOMIC | FI_DIRECTED_RECV | FI_SOURCE | FI_MULTI_RECV);
        hints->domain_attr->mr_mode = FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
        FI_OK(fi_getinfo(FI_VERSION(1, 17), nullptr, nullptr, 0, hints, &info));
        fi_freeinfo(hints);
        FI_OK(fi_fabric(info->fabric_attr, &fabric, nullptr));
        FI_OK(fi_domain(fabric, info, &domain, nullptr));
        fi_av_attr av_attr{};
        av_attr.type = FI_AV_TABLE;
        FI_OK(fi_av_open(domain, &av_attr, &av, nullptr));
        fi_cq_attr cq_attr{};
        cq_attr.format = FI_CQ_FORMAT_TAGGED;
        cq_attr.wait_obj = FI_WAIT_UNSPEC;
        FI_OK(fi_cq_open(domain, &cq_attr, &cq, nullptr));
    }
    fid_ep* open_ep() {
        fid_ep* ep = nullptr;
        FI_OK(fi_endpoint(domain, info, &ep, nullptr));
        FI_OK(fi_ep_bind(ep, &av->fid, 0));
        FI_OK(fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV));
        FI_OK(fi_enable(ep));
        eps.push_back(ep);
        return ep;
    }
    std::vector<char> name(fid_ep* ep) {
        std::vector<char> n(64);
        std::size_t len = n.size();
        FI_OK(fi_getname(&ep->fid, n.data(), &len));
        n.resize(len);
        return n;
    }
    fi_addr_t insert(const std::vector<char>& name) {
        fi_addr_t a = FI_ADDR_NOTAVAIL;
        REQUIRE(fi_av_insert(av, name.data(), 1, &a, 0, nullptr) == 1);
        return a;
    }
    ~side() {
        for (auto* ep : eps) fi_close(&ep->fid);
        fi_close(&cq->fid);
        fi_close(&av->fid);
        fi_close(&domain->fid);
        fi_close(&fabric->fid);
        fi_freeinfo(info);
    }
};

// A completion or an error entry, with the source it came from.
struct completion {
    bool error = false;
    fi_cq_tagged_entry e{};
    fi_cq_err_entry err{};
    fi_addr_t src = FI_ADDR_NOTAVAIL;
};

// The next completion on `s`; progress for `others` meanwhile (manual
// progress: a peer's target side needs its own calls).
std::optional<completion> next(side& s, std::vector<side*> others = {}, double seconds = 10) {
    const auto until = clock_type::now() + std::chrono::duration<double>(seconds);
    fi_cq_tagged_entry scratch{};
    while (clock_type::now() < until) {
        completion c;
        ssize_t n = fi_cq_readfrom(s.cq, &c.e, 1, &c.src);
        if (n == 1) return c;
        if (n == -FI_EAVAIL) {
            c.error = true;
            REQUIRE(fi_cq_readerr(s.cq, &c.err, 0) == 1);
            return c;
        }
        REQUIRE(n == -FI_EAGAIN);
        for (auto* o : others) fi_cq_read(o->cq, &scratch, 0);
    }
    return std::nullopt;
}

std::vector<char> pattern(std::size_t n, int seed) {
    std::vector<char> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<char>(seed * 31 + i * 7 + (i >> 10));
    return v;
}

struct pair_fixture {
    vmrdma::testing::veth_pair veth{"vfa0", "vfb0", 9000};
    side a{"vfa0"}, b{"vfb0"};
    fid_ep* ea = a.open_ep();
    fid_ep* eb = b.open_ep();
    fi_addr_t b_at_a = a.insert(b.name(eb));
    fi_addr_t a_at_b = b.insert(a.name(ea));
};

bool skip() {
    use_built_provider();
    return vmrdma::testing::skip_network_tests();
}

// Frames an interface of this network namespace has sent.
std::uint64_t tx_packets(const std::string& iface) {
    ifaddrs* all = nullptr;
    REQUIRE(getifaddrs(&all) == 0);
    std::uint64_t n = ~0ull;
    for (auto* i = all; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_PACKET && iface == i->ifa_name && i->ifa_data)
            n = static_cast<const rtnl_link_stats*>(i->ifa_data)->tx_packets;
    freeifaddrs(all);
    REQUIRE(n != ~0ull);
    return n;
}

}  // namespace

// What `call` writes to stderr (the provider's own messages), and its result.
template <typename Call>
std::pair<int, std::string> with_stderr_captured(Call call) {
    std::fflush(stderr);
    FILE* said = std::tmpfile();
    REQUIRE(said);
    const int saved = dup(STDERR_FILENO);
    dup2(fileno(said), STDERR_FILENO);
    const int rc = call();
    std::fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    std::string text(4096, '\0');
    std::rewind(said);
    text.resize(std::fread(text.data(), 1, text.size(), said));
    std::fclose(said);
    return {rc, text};
}

TEST_CASE("a variable with a value the provider does not know: refused, and stderr names it") {
    if (skip()) return;
    vmrdma::testing::veth_pair veth{"vfa0", "vfb0", 9000};
    fi_info* info = nullptr;
    auto getinfo = [&info] {
        fi_info* hints = vmrdma_hints("vfa0", FI_TAGGED);
        if (info) fi_freeinfo(info);
        info = nullptr;
        int rc = fi_getinfo(FI_VERSION(1, 17), nullptr, nullptr, 0, hints, &info);
        fi_freeinfo(hints);
        return rc;
    };
    CHECK(getinfo() == 0);
    for (auto [name, value] : {std::pair{"VMRDMA_FI_INTEGRITY", "lnk"}, std::pair{"VMRDMA_FI_ACK_DELAY_US", "ten"}}) {
        const std::string variable = name;
        CAPTURE(variable);
        setenv(name, value, 1);
        auto [rc, said] = with_stderr_captured(getinfo);
        unsetenv(name);
        CHECK(rc < 0);  // libfabric reports it as FI_ENODATA: nothing offered
        CHECK(said.find(variable + " is '" + value + "'") != std::string::npos);
    }
    // The receive path is the device's to read: opening the domain refuses it.
    REQUIRE(getinfo() == 0);
    fid_fabric* fabric = nullptr;
    FI_OK(fi_fabric(info->fabric_attr, &fabric, nullptr));
    fid_domain* domain = nullptr;
    setenv("VMRDMA_ETH_RX", "rings", 1);
    auto [rc, said] = with_stderr_captured([&] { return fi_domain(fabric, info, &domain, nullptr); });
    unsetenv("VMRDMA_ETH_RX");
    CHECK(rc == -FI_EINVAL);
    CHECK(said.find("VMRDMA_ETH_RX is 'rings'") != std::string::npos);
    FI_OK(fi_domain(fabric, info, &domain, nullptr));
    fi_close(&domain->fid);
    fi_close(&fabric->fid);
    fi_freeinfo(info);
}

TEST_CASE("a process without CAP_NET_RAW that asks for an eth: domain is refused, and stderr says why") {
    if (skip()) return;
    vmrdma::testing::veth_pair veth{"vfa0", "vfb0", 9000};
    auto said = vmrdma::testing::in_child([]() -> std::string {
        // Give up CAP_NET_RAW alone (as nobody the provider's library in
        // Bazel's output under /root could not even be loaded).
        __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct caps[2]{};
        if (syscall(SYS_capget, &hdr, caps) != 0) _exit(3);
        caps[CAP_NET_RAW / 32].effective &= ~(1u << (CAP_NET_RAW % 32));
        caps[CAP_NET_RAW / 32].permitted &= ~(1u << (CAP_NET_RAW % 32));
        if (syscall(SYS_capset, &hdr, caps) != 0) _exit(3);
        // fi_getinfo opens the device to learn its MAC where sysfs does not
        // show this namespace's interfaces (here), else fi_domain opens it:
        // one of them refuses, and says why.
        std::string step;
        auto [rc, text] = with_stderr_captured([&] {
            fi_info* hints = vmrdma_hints("vfa0", FI_TAGGED);
            fi_info* info = nullptr;
            step = "getinfo";
            int r = fi_getinfo(FI_VERSION(1, 17), nullptr, nullptr, 0, hints, &info);
            if (r != 0) return r;
            fid_fabric* fabric = nullptr;
            fid_domain* domain = nullptr;
            step = "fabric";
            if ((r = fi_fabric(info->fabric_attr, &fabric, nullptr)) != 0) return r;
            step = "domain";
            return static_cast<int>(fi_domain(fabric, info, &domain, nullptr));
        });
        return step + " " + std::to_string(rc) + " " + text;
    });
    REQUIRE(said);
    const std::string& result = *said;
    INFO(result);
    const bool refused = result.rfind("getinfo -", 0) == 0 || result.rfind("domain " + std::to_string(-FI_EACCES) + " ", 0) == 0;
    CHECK(refused);
    CHECK(result.find("CAP_NET_RAW") != std::string::npos);
}

TEST_CASE("a message names its source; a directed receive takes only its source's; an unknown sender is FI_ADDR_NOTAVAIL") {
    if (skip()) return;
    pair_fixture p;
    fid_ep* stranger = p.a.open_ep();  // not in b's AV
    char from_a[16] = {}, any[16] = {};
    int ctx_a = 0, ctx_any = 0;
    FI_OK(fi_trecv(p.eb, from_a, sizeof from_a, nullptr, p.a_at_b, 1, 0, &ctx_a));
    FI_OK(fi_trecv(p.eb, any, sizeof any, nullptr, FI_ADDR_UNSPEC, 1, 0, &ctx_any));
    FI_OK(fi_tsend(stranger, "stranger", 9, nullptr, p.b_at_a, 1, nullptr));
    auto c = next(p.b, {&p.a});
    REQUIRE(c);
    REQUIRE_FALSE(c->error);
    CHECK(c->e.op_context == &ctx_any);  // the directed receive let it pass
    CHECK(c->src == FI_ADDR_NOTAVAIL);
    CHECK(std::string(any) == "stranger");
    FI_OK(fi_tsend(p.ea, "from a", 7, nullptr, p.b_at_a, 1, nullptr));
    for (;;) {  // the senders' own completions arrive on a's CQ
        c = next(p.b, {&p.a});
        REQUIRE(c);
        if (c->e.flags & FI_RECV) break;
    }
    CHECK(c->e.op_context == &ctx_a);
    CHECK(c->src == p.a_at_b);
    CHECK(std::string(from_a) == "from a");
}

// a's endpoint sends `text` after a pause, turning its own loop until
// the send completes; the caller sleeps on b's CQ meanwhile.
std::thread send_later(pair_fixture& p, const char* text, bool& sent) {
    return std::thread([&p, text, &sent] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (fi_tsend(p.ea, text, std::strlen(text) + 1, nullptr, p.b_at_a, 9, nullptr) != 0) return;
        const auto until = clock_type::now() + std::chrono::seconds(10);
        fi_cq_tagged_entry e{};
        while (clock_type::now() < until)
            if (fi_cq_read(p.a.cq, &e, 1) == 1) {
                sent = true;
                return;
            }
    });
}

TEST_CASE("a reader asleep in fi_cq_sread, or in epoll on FI_GETWAIT's fd after fi_trywait, is woken") {
    if (skip()) return;
    pair_fixture p;
    char in[32] = {};
    bool sent = false;
    SUBCASE("fi_cq_sread, woken by a message from the wire") {
        FI_OK(fi_trecv(p.eb, in, sizeof in, nullptr, p.a_at_b, 9, 0, nullptr));
        auto sender = send_later(p, "while asleep", sent);
        fi_cq_tagged_entry e{};
        ssize_t n = fi_cq_sread(p.b.cq, &e, 1, nullptr, 20000);
        sender.join();
        CHECK(n == 1);
        CHECK(sent);
        CHECK(std::string(in) == "while asleep");
    }
    SUBCASE("fi_trywait, then epoll on FI_GETWAIT's fd: fi_cq_signal from another thread wakes it") {
        // Nothing crosses the wire and the loop completes nothing, so only
        // the CQ's own fd can end the sleep.
        int fd = -1;
        FI_OK(fi_control(&p.b.cq->fid, FI_GETWAIT, &fd));
        fid* fids[] = {&p.b.cq->fid};
        REQUIRE(fi_trywait(p.b.fabric, fids, 1) == 0);
        std::thread signaller([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            sent = fi_cq_signal(p.b.cq) == 0;
        });
        epoll_event ev{};
        int woken;  // 0: slept the 15 s out
        do woken = epoll_wait(fd, &ev, 1, 15000);
        while (woken < 0 && errno == EINTR);
        signaller.join();
        CHECK(sent);
        CHECK(woken == 1);
        fi_cq_tagged_entry e{};
        CHECK(fi_cq_sread(p.b.cq, &e, 1, nullptr, 0) == -FI_EAGAIN);  // the signal, taken
    }
}

TEST_CASE("an answer goes back on the connection its request came on, and reaches a peer that closed and came back") {
    if (skip()) return;
    pair_fixture p;
    // a -> b makes the connection; b answers on it (docs/mpi.md, Connections).
    auto round = [&](fid_ep* from_a, fi_addr_t a_addr_at_b, int seed) {
        auto ping = pattern(100, seed), pong = pattern(100, seed + 1);
        std::vector<char> in_b(100), in_a(100);
        FI_OK(fi_trecv(p.eb, in_b.data(), in_b.size(), nullptr, FI_ADDR_UNSPEC, 3, 0, nullptr));
        FI_OK(fi_trecv(from_a, in_a.data(), in_a.size(), nullptr, FI_ADDR_UNSPEC, 4, 0, nullptr));
        FI_OK(fi_tsend(from_a, ping.data(), ping.size(), nullptr, p.b_at_a, 3, nullptr));
        int got = 0;
        while (got < 2) {  // b's receive, then b answers; a's send and receive
            auto c = next(p.b, {&p.a});
            REQUIRE(c);
            REQUIRE_FALSE(c->error);
            if (c->e.flags & FI_RECV) {
                CHECK(in_b == ping);
                FI_OK(fi_tsend(p.eb, pong.data(), pong.size(), nullptr, a_addr_at_b, 4, nullptr));
            }
            ++got;
        }
        for (int a_got = 0; a_got < 2;) {
            auto c = next(p.a, {&p.b});
            REQUIRE(c);
            REQUIRE_FALSE(c->error);
            ++a_got;
        }
        CHECK(in_a == pong);
    };
    round(p.ea, p.a_at_b, 1);
    round(p.ea, p.a_at_b, 3);
    // a's endpoint goes (its connection with it) and a new one comes, with
    // the same id once the DISCONNECT is out, else another: b, whose way to
    // a was a's connection, reaches it all the same.
    const auto old_name = p.a.name(p.ea);
    fi_close(&p.ea->fid);
    std::erase(p.a.eps, p.ea);
    fi_cq_tagged_entry scratch{};
    for (int i = 0; i < 20; ++i) fi_cq_read(p.b.cq, &scratch, 0);  // b hears the DISCONNECT
    fid_ep* ea2 = p.a.open_ep();
    const auto new_name = p.a.name(ea2);
    const fi_addr_t a2_at_b = new_name == old_name ? p.a_at_b : p.b.insert(new_name);
    round(ea2, a2_at_b, 5);
}

TEST_CASE("two endpoints that start sending to each other at once end up on one connection, order kept") {
    if (skip()) return;
    // ACKs wait 200 ms for an answer to carry them (docs/mpi.md, Progress),
    // so a sender whose answers came on another connection would wait that
    // long per message and its peer would send an ACK frame per message.
    setenv("VMRDMA_FI_ACK_DELAY_US", "200000", 1);
    pair_fixture p;
    unsetenv("VMRDMA_FI_ACK_DELAY_US");
    // Both send a burst before either turns its loop: two connects cross.
    constexpr int burst = 40;
    std::vector<std::vector<char>> to_b, to_a, at_b(burst, std::vector<char>(64)), at_a(burst, std::vector<char>(64));
    for (int i = 0; i < burst; ++i) {
        to_b.push_back(pattern(64, i));
        to_a.push_back(pattern(64, 1000 + i));
        FI_OK(fi_trecv(p.eb, at_b[i].data(), 64, nullptr, FI_ADDR_UNSPEC, 7, 0, &at_b[i]));
        FI_OK(fi_trecv(p.ea, at_a[i].data(), 64, nullptr, FI_ADDR_UNSPEC, 7, 0, &at_a[i]));
    }
    for (int i = 0; i < burst; ++i) {
        FI_OK(fi_tsend(p.ea, to_b[i].data(), 64, nullptr, p.b_at_a, 7, nullptr));
        FI_OK(fi_tsend(p.eb, to_a[i].data(), 64, nullptr, p.a_at_b, 7, nullptr));
    }
    // Each side: its sends and its receives, the i-th receive the i-th message.
    auto collect = [&](side& s, side& other, std::vector<std::vector<char>>& in,
                       const std::vector<std::vector<char>>& out) {
        int got = 0, recvs = 0;
        while (got < 2 * burst) {
            auto c = next(s, {&other});
            REQUIRE(c);
            REQUIRE_FALSE(c->error);
            if (c->e.flags & FI_RECV) {
                auto* buf = static_cast<std::vector<char>*>(c->e.op_context);
                int which = -1;  // the message it holds
                for (int j = 0; j < burst; ++j)
                    if (*buf == out[j]) which = j;
                INFO("receive ", recvs, " holds message ", which);
                CHECK(buf == &in[recvs]);
                CHECK(which == recvs);
                ++recvs;
            }
            ++got;
        }
    };
    collect(p.a, p.b, at_a, to_a);
    collect(p.b, p.a, at_b, to_b);
    // Now ping-pong: an answer must carry the ACK of what it answers, so each
    // side sends one frame per message, not an ACK frame besides (counted on
    // the veth, not timed).
    constexpr int rounds = 10;
    std::vector<char> ping(64, 'p'), pong(64, 'q'), in_b(64), in_a(64);
    const auto a0 = tx_packets("vfa0"), b0 = tx_packets("vfb0");
    for (int r = 0; r < rounds; ++r) {
        FI_OK(fi_trecv(p.eb, in_b.data(), 64, nullptr, FI_ADDR_UNSPEC, 8, 0, &in_b));
        FI_OK(fi_trecv(p.ea, in_a.data(), 64, nullptr, FI_ADDR_UNSPEC, 9, 0, &in_a));
        FI_OK(fi_tsend(p.ea, ping.data(), 64, nullptr, p.b_at_a, 8, &ping));
        for (bool answered = false; !answered;) {  // b: its receive (its last pong's completion may come too)
            auto c = next(p.b, {&p.a});
            REQUIRE(c);
            REQUIRE_FALSE(c->error);
            if (c->e.flags & FI_RECV) {
                FI_OK(fi_tsend(p.eb, pong.data(), 64, nullptr, p.a_at_b, 9, &pong));
                answered = true;
            }
        }
        for (int got = 0; got < 2;) {  // a: the pong and its ping's completion
            auto c = next(p.a, {&p.b});
            REQUIRE(c);
            REQUIRE_FALSE(c->error);
            ++got;
        }
    }
    const auto a_frames = tx_packets("vfa0") - a0, b_frames = tx_packets("vfb0") - b0;
    INFO("frames sent in ", rounds, " rounds: a ", a_frames, ", b ", b_frames);
    CHECK(a_frames <= rounds + 2);
    CHECK(b_frames <= rounds + 2);
}

TEST_CASE("messages match in the order sent, whatever their sizes, posted or unexpected") {
    if (skip()) return;
    pair_fixture p;
    // Eager, offered (more than one piece), empty, at and just past the
    // eager limit: completions may come in any order, matches may not.
    const std::size_t sizes[] = {10, 20000, 600000, 0, 16384, 16385};
    constexpr int count = 24;
    std::vector<std::vector<char>> out, in(count, std::vector<char>(600000));
    for (int i = 0; i < count; ++i) out.push_back(pattern(sizes[i % 6], i));
    std::vector<bool> done(count, false);
    int sent = 0, received = 0;
    auto poll = [&](double seconds) {
        if (auto c = next(p.a, {&p.b}, seconds / 2); c) {
            REQUIRE_FALSE(c->error);
            ++sent;
        }
        if (auto c = next(p.b, {&p.a}, seconds / 2); c) {
            REQUIRE_FALSE(c->error);
            auto* buf = static_cast<std::vector<char>*>(c->e.op_context);
            const auto i = static_cast<std::size_t>(buf - in.data());
            REQUIRE(i < count);
            CHECK_FALSE(done[i]);
            done[i] = true;
            INFO("receive ", i);
            CHECK(c->e.len == out[i].size());  // the i-th receive got the i-th message
            CHECK(std::equal(out[i].begin(), out[i].end(), buf->begin()));
            ++received;
        }
    };
    // Half posted before anything is sent; the other half after the rest
    // had time to arrive and wait as unexpected messages.
    for (int i = 0; i < count / 2; ++i)
        FI_OK(fi_trecv(p.eb, in[i].data(), in[i].size(), nullptr, FI_ADDR_UNSPEC, 3, 0, &in[i]));
    for (int i = 0; i < count; ++i)
        FI_OK(fi_tsend(p.ea, out[i].data(), out[i].size(), nullptr, p.b_at_a, 3, &out[i]));
    for (const auto until = clock_type::now() + std::chrono::seconds(30);
         received < count / 2 && clock_type::now() < until;)
        poll(0.01);
    CHECK(received == count / 2);
    // The rest have a moment to arrive and wait unexpected (on a loaded
    // machine some may not: they then match as they arrive, in the same
    // order); with no receive posted none may match.
    for (const auto until = clock_type::now() + std::chrono::milliseconds(200); clock_type::now() < until;)
        poll(0.01);
    CHECK(received == count / 2);
    for (int i = count / 2; i < count; ++i)
        FI_OK(fi_trecv(p.eb, in[i].data(), in[i].size(), nullptr, FI_ADDR_UNSPEC, 3, 0, &in[i]));
    for (const auto until = clock_type::now() + std::chrono::seconds(30);
         (sent < count || received < count) && clock_type::now() < until;)
        poll(0.01);
    CHECK(sent == count);
    CHECK(received == count);
}

TEST_CASE("peek never consumes, a claim is taken only by its claimer, discard drops") {
    if (skip()) return;
    pair_fixture p;
    auto big = pattern(100000, 9);
    FI_OK(fi_tsend(p.ea, "five", 5, nullptr, p.b_at_a, 5, nullptr));
    FI_OK(fi_tsend(p.ea, big.data(), big.size(), nullptr, p.b_at_a, 6, nullptr));
    FI_OK(fi_tsend(p.ea, "eight", 6, nullptr, p.b_at_a, 8, nullptr));
    auto peek = [&](std::uint64_t tag, std::uint64_t flags, void* context) {
        iovec iov{nullptr, 0};
        fi_msg_tagged m{};
        m.msg_iov = &iov;
        m.iov_count = 1;
        m.addr = FI_ADDR_UNSPEC;
        m.tag = tag;
        m.context = context;
        FI_OK(fi_trecvmsg(p.eb, &m, FI_PEEK | flags));
        for (;;) {
            auto c = next(p.b, {&p.a});
            REQUIRE(c);
            if (c->error || (c->e.flags & FI_RECV)) return *c;
        }
    };
    // Wait until all three arrived: a peek that finds tag 8 found them all.
    for (const auto until = clock_type::now() + std::chrono::seconds(10);;) {
        REQUIRE(clock_type::now() < until);
        fi_context ctx{};
        auto c = peek(8, 0, &ctx);
        if (!c.error) break;
        CHECK(c.err.err == FI_ENOMSG);
    }
    fi_context c5{}, c6{}, c8{};
    auto got = peek(5, 0, &c5);
    CHECK(got.e.len == 5);
    got = peek(5, 0, &c5);  // still there
    CHECK(got.e.len == 5);
    got = peek(6, FI_CLAIM, &c6);
    CHECK(got.e.len == big.size());
    // A plain receive for tag 6 does not get the claimed message...
    std::vector<char> plain(100000), claimed(100000);
    FI_OK(fi_trecv(p.eb, plain.data(), plain.size(), nullptr, FI_ADDR_UNSPEC, 6, 0, &plain));
    // ...its claimer does.
    iovec iov{claimed.data(), claimed.size()};
    fi_msg_tagged m{};
    m.msg_iov = &iov;
    m.iov_count = 1;
    m.addr = FI_ADDR_UNSPEC;
    m.tag = 6;
    m.context = &c6;
    FI_OK(fi_trecvmsg(p.eb, &m, FI_CLAIM));
    for (;;) {
        auto c = next(p.b, {&p.a});
        REQUIRE(c);
        REQUIRE_FALSE(c->error);
        if (!(c->e.flags & FI_RECV)) continue;
        CHECK(c->e.op_context == &c6);
        break;
    }
    CHECK(claimed == big);
    got = peek(8, FI_DISCARD, &c8);  // found and dropped
    CHECK_FALSE(got.error);
    got = peek(8, 0, &c8);
    CHECK(got.error);
    CHECK(got.err.err == FI_ENOMSG);
    // The plain receive still waits, and takes the next tag-6 message.
    FI_OK(fi_tsend(p.ea, "six", 4, nullptr, p.b_at_a, 6, nullptr));
    for (;;) {
        auto c = next(p.b, {&p.a});
        REQUIRE(c);
        REQUIRE_FALSE(c->error);
        if (!(c->e.flags & FI_RECV)) continue;
        CHECK(c->e.op_context == &plain);
        CHECK(std::string(plain.data()) == "six");
        break;
    }
}

TEST_CASE("large messages land whole: read straight into one buffer, through landing memory into several") {
    if (skip()) return;
    pair_fixture p;
    // 9 MiB: the sender's own memory in pieces of up to 4 MiB (eth:); into
    // one buffer each piece is read into place, into three iovecs through
    // landing memory; a tagged and an untagged message each way.
    const std::size_t size = 9u << 20;
    auto out = pattern(size, 6);
    std::vector<char> one(size, 0), parts(size, 0);
    iovec three[3] = {{parts.data(), 1000}, {parts.data() + 1000, (4u << 20) + 1}, {parts.data() + 1001 + (4u << 20), size - 1001 - (4u << 20)}};
    FI_OK(fi_trecv(p.eb, one.data(), size, nullptr, FI_ADDR_UNSPEC, 11, 0, nullptr));
    FI_OK(fi_trecvv(p.eb, three, nullptr, 3, FI_ADDR_UNSPEC, 12, 0, nullptr));
    FI_OK(fi_tsend(p.ea, out.data(), size, nullptr, p.b_at_a, 12, nullptr));
    FI_OK(fi_tsend(p.ea, out.data(), size, nullptr, p.b_at_a, 11, nullptr));
    int received = 0;
    while (received < 2) {
        auto c = next(p.b, {&p.a}, 60);
        REQUIRE(c);
        REQUIRE_FALSE(c->error);
        if (c->e.flags & FI_RECV) {
            CHECK(c->e.len == size);
            ++received;
        }
    }
    for (int sent = 0; sent < 2; ++sent) {  // a's sends complete before their memory goes
        auto c = next(p.a, {&p.b}, 60);
        REQUIRE(c);
        REQUIRE_FALSE(c->error);
        CHECK((c->e.flags & FI_SEND));
    }
    CHECK(one == out);
    CHECK(parts == out);
}

TEST_CASE("cancel ends a receive nothing matched; truncation fills and says by how much") {
    if (skip()) return;
    pair_fixture p;
    char buf[100] = {};
    int ctx = 0;
    FI_OK(fi_trecv(p.eb, buf, sizeof buf, nullptr, FI_ADDR_UNSPEC, 9, 0, &ctx));
    FI_OK(fi_cancel(&p.eb->fid, &ctx));
    auto c = next(p.b, {&p.a});
    REQUIRE(c);
    REQUIRE(c->error);
    CHECK(c->err.err == FI_ECANCELED);
    CHECK(c->err.op_context == &ctx);
    for (std::size_t size : {300ul, 50000ul, 1ul << 20}) {  // inline, eager, offered
        auto out = pattern(size, 4);
        std::vector<char> in(100, 0);
        FI_OK(fi_tsend(p.ea, out.data(), out.size(), nullptr, p.b_at_a, 10, nullptr));
        FI_OK(fi_trecv(p.eb, in.data(), in.size(), nullptr, FI_ADDR_UNSPEC, 10, 0, &ctx));
        for (;;) {
            c = next(p.b, {&p.a});
            REQUIRE(c);
            if (c->error || (c->e.flags & FI_RECV)) break;
        }
        REQUIRE(c->error);
        CHECK(c->err.err == FI_ETRUNC);
        CHECK(c->err.len == 100);
        CHECK(c->err.olen == size - 100);
        CHECK(std::memcmp(in.data(), out.data(), 100) == 0);
        auto sent = next(p.a, {&p.b});  // the send's memory is its own until it completes
        REQUIRE(sent);
        CHECK((sent->e.flags & FI_SEND));
    }
}

TEST_CASE("RMA is checked at the target: a foreign key, a range outside, a missing right change nothing") {
    if (skip()) return;
    pair_fixture p;
    std::vector<char> target(1 << 20, 'x'), readonly(4096, 'r');
    fid_mr *mr = nullptr, *ro = nullptr;
    FI_OK(fi_mr_reg(p.b.domain, target.data(), target.size(), FI_REMOTE_READ | FI_REMOTE_WRITE, 0, 0, 0, &mr,
                    nullptr));
    FI_OK(fi_mr_reg(p.b.domain, readonly.data(), readonly.size(), FI_REMOTE_READ, 0, 0, 0, &ro, nullptr));
    const auto base = reinterpret_cast<std::uint64_t>(target.data());
    auto op = [&](auto post) -> completion {
        int ctx = 0;
        // b's helper thread may turn b's loop and place what a's operation
        // carries into `target`, which this thread has just read. The order
        // is real (through the veth), but ThreadSanitizer cannot see a
        // packet socket's ring: taking b's lock first (a progress call)
        // shows it the order it would otherwise report as a race.
        fi_cq_tagged_entry scratch{};
        fi_cq_read(p.b.cq, &scratch, 0);
        FI_OK(post(&ctx));
        for (;;) {
            auto c = next(p.a, {&p.b});
            REQUIRE(c);
            if (c->error ? c->err.op_context == &ctx : c->e.op_context == &ctx) return *c;
        }
    };
    auto small = pattern(100, 1);
    auto c = op([&](void* ctx) { return fi_write(p.ea, small.data(), 100, nullptr, p.b_at_a, base + 10, fi_mr_key(mr), ctx); });
    CHECK_FALSE(c.error);
    CHECK(std::memcmp(target.data() + 10, small.data(), 100) == 0);
    const auto before = target;
    c = op([&](void* ctx) { return fi_write(p.ea, small.data(), 100, nullptr, p.b_at_a, base, fi_mr_key(mr) ^ 1, ctx); });
    CHECK(c.error);
    CHECK(c.err.err == FI_EACCES);
    c = op([&](void* ctx) {
        return fi_write(p.ea, small.data(), 100, nullptr, p.b_at_a, base + target.size() - 50, fi_mr_key(mr), ctx);
    });
    CHECK(c.error);
    CHECK(c.err.err == FI_EINVAL);
    const auto ro_base = reinterpret_cast<std::uint64_t>(readonly.data());
    c = op([&](void* ctx) { return fi_write(p.ea, small.data(), 100, nullptr, p.b_at_a, ro_base, fi_mr_key(ro), ctx); });
    CHECK(c.error);
    CHECK(target == before);
    CHECK(readonly == std::vector<char>(4096, 'r'));
    // Large ones move as offers; a read brings them back.
    auto large = pattern(1 << 20, 2), back = std::vector<char>(1 << 20);
    c = op([&](void* ctx) { return fi_write(p.ea, large.data(), large.size(), nullptr, p.b_at_a, base, fi_mr_key(mr), ctx); });
    CHECK_FALSE(c.error);
    CHECK(target == large);
    c = op([&](void* ctx) { return fi_read(p.ea, back.data(), back.size(), nullptr, p.b_at_a, base, fi_mr_key(mr), ctx); });
    CHECK_FALSE(c.error);
    CHECK(back == large);
    // Remote CQ data: the target hears of the write.
    c = op([&](void* ctx) {
        return fi_writedata(p.ea, small.data(), 100, nullptr, 0xfeed, p.b_at_a, base, fi_mr_key(mr), ctx);
    });
    CHECK_FALSE(c.error);
    auto t = next(p.b, {&p.a});
    REQUIRE(t);
    CHECK((t->e.flags & FI_REMOTE_CQ_DATA));
    CHECK(t->e.data == 0xfeed);
    fi_close(&mr->fid);
    fi_close(&ro->fid);
}

TEST_CASE("atomics from many operations in flight apply once each") {
    if (skip()) return;
    pair_fixture p;
    std::int64_t counter = 0;
    std::int32_t vec[4] = {1, 2, 3, 4};
    fid_mr* mr = nullptr;
    fid_mr* mv = nullptr;
    FI_OK(fi_mr_reg(p.b.domain, &counter, sizeof counter, FI_REMOTE_READ | FI_REMOTE_WRITE, 0, 0, 0, &mr, nullptr));
    FI_OK(fi_mr_reg(p.b.domain, vec, sizeof vec, FI_REMOTE_WRITE, 0, 0, 0, &mv, nullptr));
    std::int64_t one = 1;
    std::vector<std::int64_t> previous(50, -1);
    for (int i = 0; i < 50; ++i)
        FI_OK(fi_fetch_atomic(p.ea, &one, 1, nullptr, &previous[i], nullptr, p.b_at_a,
                              reinterpret_cast<std::uint64_t>(&counter), fi_mr_key(mr), FI_INT64, FI_SUM, &previous[i]));
    std::int32_t add[4] = {10, 20, 30, 40};
    int vctx = 0;
    FI_OK(fi_atomic(p.ea, add, 4, nullptr, p.b_at_a, reinterpret_cast<std::uint64_t>(vec), fi_mr_key(mv), FI_INT32,
                    FI_SUM, &vctx));
    for (int done = 0; done < 51;) {
        auto c = next(p.a, {&p.b});
        REQUIRE(c);
        REQUIRE_FALSE(c->error);
        ++done;
    }
    CHECK(counter == 50);
    std::vector<bool> seen(50, false);  // each previous value exactly once
    for (auto v : previous) {
        REQUIRE(v >= 0);
        REQUIRE(v < 50);
        CHECK_FALSE(seen[v]);
        seen[v] = true;
    }
    CHECK(vec[0] == 11);
    CHECK(vec[3] == 44);
    std::int64_t expected = 50, desired = 7, old = 0;
    int cctx = 0;
    FI_OK(fi_compare_atomic(p.ea, &desired, 1, nullptr, &expected, nullptr, &old, nullptr, p.b_at_a,
                            reinterpret_cast<std::uint64_t>(&counter), fi_mr_key(mr), FI_INT64, FI_CSWAP, &cctx));
    auto c = next(p.a, {&p.b});
    REQUIRE(c);
    CHECK_FALSE(c->error);
    CHECK(old == 50);
    CHECK(counter == 7);
    fi_close(&mr->fid);
    fi_close(&mv->fid);
}

TEST_CASE("a multi-receive buffer takes messages one after another and says when it is released") {
    if (skip()) return;
    pair_fixture p;
    std::size_t min = 1000;
    FI_OK(fi_setopt(&p.eb->fid, FI_OPT_ENDPOINT, FI_OPT_MIN_MULTI_RECV, &min, sizeof min));
    std::vector<char> buffer(4096);
    iovec iov{buffer.data(), buffer.size()};
    fi_msg m{};
    m.msg_iov = &iov;
    m.iov_count = 1;
    m.addr = FI_ADDR_UNSPEC;
    m.context = &buffer;
    FI_OK(fi_recvmsg(p.eb, &m, FI_MULTI_RECV));
    std::vector<std::vector<char>> out;
    for (int i = 0; i < 4; ++i) out.push_back(pattern(1000, 20 + i));
    for (auto& o : out) FI_OK(fi_send(p.ea, o.data(), o.size(), nullptr, p.b_at_a, nullptr));
    int got = 0;
    while (got < 4) {
        auto c = next(p.b, {&p.a});
        REQUIRE(c);
        REQUIRE_FALSE(c->error);
        if (!(c->e.flags & FI_RECV)) continue;
        CHECK(c->e.op_context == &buffer);
        CHECK(c->e.buf == buffer.data() + 1000 * got);
        CHECK(std::memcmp(c->e.buf, out[got].data(), 1000) == 0);
        // 96 bytes are left after the fourth: less than the minimum.
        CHECK(((c->e.flags & FI_MULTI_RECV) != 0) == (got == 3));
        ++got;
    }
}

TEST_CASE("closing endpoints and domains with receives posted and messages unread") {
    if (skip()) return;
    pair_fixture p;
    char buf[64];
    int ctx = 0;
    for (int i = 0; i < 8; ++i) FI_OK(fi_trecv(p.eb, buf, sizeof buf, nullptr, FI_ADDR_UNSPEC, 100 + i, 0, &ctx));
    auto big = pattern(300000, 1);
    FI_OK(fi_tsend(p.ea, big.data(), big.size(), nullptr, p.b_at_a, 77, nullptr));  // unexpected, large
    FI_OK(fi_tsend(p.ea, "x", 2, nullptr, p.b_at_a, 78, nullptr));
    next(p.a, {&p.b}, 0.5);
    // The fixture closes everything: nothing may hang, crash or leak
    // (the sanitizer configurations run this too).
}
