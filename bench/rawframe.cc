// rawframe: the raw-Ethernet upper bound of a veth path (pktgen-style), and
// the comparison of AF_PACKET I/O strategies that chose the eth: transport's:
//   mmsg  sendmmsg(2)/recvmmsg(2) in batches of 64 (what eth: uses)
//   ring  PACKET_TX_RING (TPACKET_V2) to send, PACKET_RX_RING (TPACKET_V3) to receive
//   mixed  sendmmsg(2) to send (gathers from the caller's memory), V3 RX ring to receive
//   mixed2 sendmmsg(2) to send, TPACKET_V2 RX ring (per-frame hand-over) to receive
//   xdp    AF_XDP both ways, the receiver's XDP program attached in native mode
//   xdp-skb  the same with the program in generic (skb) mode (bench/support/xdp_path.hpp)
// A sender in one namespace blasts frames of one size for a while at a
// receiver in the other; the receiver counts what arrived. No protocol, no
// copies beyond the kernel's: the most any protocol can get from the path.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/support/raw_path.hpp"
#include "bench/support/xdp_path.hpp"
#include "examples/support/netns_pair.hpp"

namespace {

struct options {
    vmrdma::bench::raw_options raw;
    bool json = false;
    bool threaded_napi = false;
};

using result = vmrdma::bench::raw_counts;

void usage(const char* argv0) {
    std::printf(
        "usage: %s [--mode mmsg|ring|mixed|mixed2|xdp|xdp-skb|all] [--frame BYTES] [-D SECONDS]\n"
        "          [--message BYTES] [--threaded-napi] [--json]\n"
        "Blasts raw Ethernet frames across a veth pair between two network namespaces it\n"
        "makes (root), and prints what arrived: the path's upper bound for vmrdma.\n"
        "  --mode     mmsg: sendmmsg/recvmmsg; ring: PACKET_TX_RING/PACKET_RX_RING;\n"
        "             mixed: sendmmsg + V3 PACKET_RX_RING; mixed2: sendmmsg + V2 RX ring;\n"
        "             xdp: AF_XDP sender and receiver (copy mode, the receiver's XDP program\n"
        "             in native mode); xdp-skb: the same, program in generic mode;\n"
        "             all: each in turn (default mmsg)\n"
        "  --frame    frame size on the wire incl. the 14-byte header (default 9014; MTU+14)\n"
        "  -D         seconds to send (default 2)\n"
        "  --message  the frames carry a message of BYTES (K/M suffixes): their payloads\n"
        "             are consecutive slices of one buffer of that size, as a protocol\n"
        "             reads a message's bytes (default: every frame from one frame-sized\n"
        "             buffer, hot in the cache; not for the xdp modes)\n"
        "  --threaded-napi  receive in a NAPI kernel thread of the receiver's veth (GRO on\n"
        "             there, TSO off at the sender; needs ethtool) instead of the sender's\n"
        "             softirq: the receive path may then run on another core\n",
        argv0);
}

bool is_xdp(const std::string& mode) { return mode == "xdp" || mode == "xdp-skb"; }
vmrdma::bench::xdp_attach attach_of(const std::string& mode) {
    return mode == "xdp" ? vmrdma::bench::xdp_attach::native : vmrdma::bench::xdp_attach::skb;
}

// Gives the receiver's veth a NAPI instance of its own, polled by a kernel
// thread (/sys/class/net/IF/threaded) rather than in the sender's softirq:
// veth uses NAPI with an XDP program attached, or with GRO on for frames from
// a peer without TSO (veth_skb_is_eligible_for_gro). The scheduler may then
// run the receive path on the other core.
void thread_receive_napi(const vmrdma::examples::netns_pair& net) {
    using vmrdma::examples::run_command;
    const auto& a = net.a();
    run_command("ip netns exec " + net.b().netns + " ethtool -K " + net.b().ifname + " tso off >/dev/null");
    run_command("ip netns exec " + a.netns + " ethtool -K " + a.ifname + " gro on >/dev/null");
    run_command("ip netns exec " + a.netns + " sh -c 'echo 1 > /sys/class/net/" + a.ifname + "/threaded'");
}

// Runs one mode; returns {sent, received} measured in the two children.
std::pair<result, result> run_mode(const options& o) {
    unsigned mtu = static_cast<unsigned>(o.raw.frame - 14);
    if (mtu < 1500) mtu = 1500;
    vmrdma::examples::netns_pair net("vmrdma-raw", mtu);
    int pipes[2][2];
    if (pipe(pipes[0]) != 0 || pipe(pipes[1]) != 0) std::exit(1);
    pid_t rx = fork();
    if (rx == 0) {
        vmrdma::examples::netns_pair::enter(net.a());
        auto ready = [&] {
            if (write(pipes[1][1], "r", 1) != 1) _exit(1);
        };
        result r;
        if (is_xdp(o.raw.mode)) {
            try {
                r = vmrdma::bench::xdp_sink(net.a().ifname, attach_of(o.raw.mode), ready);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "rawframe: %s\n", e.what());
                _exit(1);
            }
        } else {
            int fd = vmrdma::bench::raw_open(net.a().ifname);
            ready();
            r = vmrdma::bench::raw_sink(fd, o.raw);
        }
        if (write(pipes[0][1], &r, sizeof r) != sizeof r) _exit(1);
        _exit(0);
    }
    close(pipes[1][1]);  // a receiver that fails unblocks the read below
    char c;
    if (read(pipes[1][0], &c, 1) != 1) {
        waitpid(rx, nullptr, 0);
        throw std::runtime_error("the receiver failed");  // unwinding removes the namespaces
    }
    if (o.threaded_napi) thread_receive_napi(net);
    pid_t tx = fork();
    if (tx == 0) {
        vmrdma::examples::netns_pair::enter(net.b());
        std::uint8_t dst[6];
        std::sscanf(net.a().mac.c_str(), "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dst[0], &dst[1], &dst[2],
                    &dst[3], &dst[4], &dst[5]);
        result s;
        if (is_xdp(o.raw.mode)) {
            try {
                s = vmrdma::bench::xdp_blast(net.b().ifname, o.raw, dst);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "rawframe: %s\n", e.what());
                _exit(1);
            }
        } else {
            s = vmrdma::bench::raw_blast(vmrdma::bench::raw_open(net.b().ifname), o.raw, dst);
        }
        if (write(pipes[0][1], &s, sizeof s) != sizeof s) _exit(1);
        _exit(0);
    }
    result sent{}, received{};
    int status;
    waitpid(tx, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || read(pipes[0][0], &sent, sizeof sent) != sizeof sent) {
        waitpid(rx, &status, 0);
        throw std::runtime_error("the sender failed");
    }
    waitpid(rx, &status, 0);
    if (read(pipes[0][0], &received, sizeof received) != sizeof received) throw std::runtime_error("the receiver failed");
    return {sent, received};
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) { std::fprintf(stderr, "rawframe: %s needs a value\n", a.c_str()); std::exit(2); }
            return argv[++i];
        };
        if (a == "-h" || a == "--help") { usage(argv[0]); return 0; }
        else if (a == "--mode") o.raw.mode = value();
        else if (a == "--frame") o.raw.frame = std::strtoul(value().c_str(), nullptr, 10);
        else if (a == "-D") o.raw.seconds = std::strtod(value().c_str(), nullptr);
        else if (a == "--message") {
            try {
                o.raw.message = vmrdma::examples::parse_size(value(), 1ull << 30, "rawframe: --message: 1 byte .. 1024M");
            } catch (const std::exception& e) {
                std::fprintf(stderr, "%s (try --help)\n", e.what());
                return 2;
            }
        }
        else if (a == "--json") o.json = true;
        else if (a == "--threaded-napi") o.threaded_napi = true;
        else { std::fprintf(stderr, "rawframe: unknown option %s (try --help)\n", a.c_str()); return 2; }
    }
    if (o.raw.frame < 60 || o.raw.frame > 65535 + 14 || o.raw.seconds <= 0 ||
        (o.raw.mode != "mmsg" && o.raw.mode != "ring" && o.raw.mode != "mixed" &&
         o.raw.mode != "mixed2" && !is_xdp(o.raw.mode) && o.raw.mode != "all")) {
        std::fprintf(stderr, "rawframe: bad arguments (try --help)\n");
        return 2;
    }
    if (o.raw.message != 0 && is_xdp(o.raw.mode)) {
        std::fprintf(stderr, "rawframe: --message is not implemented for the xdp modes\n");
        return 2;
    }
    if (o.raw.message != 0 && o.raw.mode == "all")
        std::fprintf(stderr, "rawframe: note: the xdp modes send from one frame buffer (--message ignored)\n");
    if (geteuid() != 0) { std::fprintf(stderr, "rawframe: needs root\n"); return 1; }
    std::vector<std::string> modes = o.raw.mode == "all" ? std::vector<std::string>{"mmsg", "ring", "mixed", "mixed2", "xdp", "xdp-skb"}
                                                     : std::vector<std::string>{o.raw.mode};
    if (!o.json) std::printf("%-7s %7s %12s %12s %10s %10s\n", "mode", "frame", "sent/s", "arrived/s", "Gbit/s", "GiB/s");
    for (const auto& m : modes) {
        options one = o;
        one.raw.mode = m;
        std::fprintf(stderr, "rawframe: %s, %zu-byte frames for %.1f s...\n", m.c_str(), o.raw.frame, o.raw.seconds);
        std::pair<result, result> counts;
        try {
            counts = run_mode(one);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "rawframe: %s\n", e.what());
            return 1;
        }
        auto [sent, got] = counts;
        double sent_rate = sent.frames / sent.seconds;
        double rate = got.seconds > 0 ? got.frames / got.seconds : 0;
        double gbps = got.seconds > 0 ? got.bytes * 8 / got.seconds / 1e9 : 0;
        double gibs = got.seconds > 0 ? got.bytes / got.seconds / (1u << 30) : 0;
        if (o.json)
            std::printf("{\"mode\":\"%s\",\"frame\":%zu,\"sent_per_s\":%.0f,\"arrived_per_s\":%.0f,\"gbit_s\":%.3f,"
                        "\"gib_s\":%.3f,\"arrived_frames\":%llu,\"arrived_bytes\":%llu}\n",
                        m.c_str(), o.raw.frame, sent_rate, rate, gbps, gibs, static_cast<unsigned long long>(got.frames),
                        static_cast<unsigned long long>(got.bytes));
        else
            std::printf("%-7s %7zu %12.0f %12.0f %10.2f %10.3f\n", m.c_str(), o.raw.frame, sent_rate, rate, gbps, gibs);
    }
    return 0;
}
