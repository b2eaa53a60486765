// vmrdma-bench: vmrdma against a TCP socket and against raw frames, in one
// run, over the same veth pair and MTU, between two network namespaces it
// makes. perftest-like options; prints a table, writes CSV and an SVG plot.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bench/support/child.hpp"
#include "bench/support/daemon_path.hpp"
#include "bench/support/raw_path.hpp"
#include "bench/support/relay.hpp"
#include "bench/support/report.hpp"
#include "bench/support/tcp_path.hpp"
#include "bench/support/vmrdma_path.hpp"
#include "examples/support/netns_pair.hpp"
#include "tools/faultrelay/relay_process.hpp"

using namespace vmrdma::bench;

namespace {

struct options {
    workload w;
    std::vector<std::size_t> sizes{65536};
    bool tcp = true, raw = true, json = false;
    std::string out_prefix = "vmrdma-bench";
    std::string transport = "eth";
    std::string relay_bin;
};

void usage() {
    std::printf(
        "usage: vmrdma-bench [options]\n"
        "Measures vmrdma, a TCP socket doing the same transfers, and raw Ethernet frames\n"
        "(the path's upper bound) in one run, over one veth pair between two network\n"
        "namespaces it makes and removes (needs root).\n"
        "  --mode M        write | read | send | lat (default write; lat = write round trip\n"
        "                  vs TCP ping-pong)\n"
        "  -s SIZE         message size, K/M suffixes allowed (default 64K); repeatable\n"
        "  -a              all sizes 64 B .. 4 MiB (powers of 4)\n"
        "  -n N            iterations per size (default: run -D seconds)\n"
        "  -D SECONDS      seconds per size and path (default 1)\n"
        "  --depth N       vmrdma operations in flight (default 128, as perftest's\n"
        "                  ib_write_bw; TCP's budget is its socket buffer; lat always 1)\n"
        "  --mtu N         veth MTU, 1500..65535 (default 9000)\n"
        "  --busy-poll US  both vmrdma and TCP poll this long for completions / data\n"
        "                  before blocking (default 0: block at once)\n"
        "  --transport T   eth (default; the in-process engine on the veth), or unix: the\n"
        "                  client as a frontend of vmrdmad (the user-space driver domain),\n"
        "                  which runs in a process of its own beside it; eth is measured too\n"
        "  --daemon-poll-us N  with --transport unix: vmrdmad's --poll-us (default: its\n"
        "                  default, 50; at least --busy-poll)\n"
        "  --no-bundle     vmrdma sends every small frame alone (to compare; default:\n"
        "                  consecutive small frames to one peer leave as one bundle)\n"
        "  --no-coalesce   vmrdma's loops wake once per completion (to compare; default:\n"
        "                  while a message's frames are arriving, at most once per\n"
        "                  20 us: loop_options::coalesce_wakeups, docs/runtime.md)\n"
        "  --integrity I   vmrdma's CRC: end-to-end (default: every payload byte) or link\n"
        "                  (headers only, payloads rest on the link's FCS, as TCP with\n"
        "                  checksum offload; docs/wire-format.md says what it gives up)\n"
        "  --auth          vmrdma authenticates every frame (a pre-shared key made up for\n"
        "                  the run; docs/wire-format.md, Authentication): what it costs\n"
        "  --go-back-n     vmrdma recovers losses by go-back-N, as before selective repeat\n"
        "                  (device_options::go_back_n; to compare)\n"
        "  --ack-delay US  vmrdma ACKs a message within US microseconds instead of at\n"
        "                  once, so that an answer sent meanwhile carries the ACK, as TCP's\n"
        "                  delayed ACK rides on its replies (device_options::\n"
        "                  ack_request_delay_ns; default 0: at once). What it costs where\n"
        "                  nothing answers: a write's completion waits for it (--mode lat)\n"
        "  --relay OPTS    run every path through tools/faultrelay with these options\n"
        "                  (one argument, e.g. --relay '--loss 0.1 --delay 20'): a third\n"
        "                  namespace between the hosts forwards, losing, delaying or pacing\n"
        "                  frames (docs/faultrelay.md); TCP's segmentation offload is off\n"
        "                  then, so that both lose wire frames\n"
        "  --relay-bin P   the faultrelay binary (default: found in Bazel's output)\n"
        "  --distinct-buffers  give each of vmrdma's operations in flight bytes of its\n"
        "                  own (depth x size per side; default: one message-sized buffer\n"
        "                  per side, as the TCP loop here and perftest's ib_write_bw use)\n"
        "  --no-tcp, --no-raw   skip a baseline\n"
        "The output states how the paths are made comparable: what each keeps in\n"
        "flight and where each counts a message as delivered.\n"
        "  --out PREFIX    write PREFIX-MODE.csv and PREFIX-MODE.svg (default vmrdma-bench)\n"
        "  --json          print JSON instead of the table (fields in docs/benchmarks.md)\n");
}


options parse(int argc, char** argv) {
    options o;
    o.w.daemon_poll_us = default_daemon_poll_us();
    bool sizes_given = false;  // the first -s replaces the default, later ones add
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(a + " needs a value (try --help)");
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            usage();
            std::exit(0);
        } else if (a == "--mode") {
            std::string m = value();
            if (m == "write") o.w.kind = mode::write;
            else if (m == "read") o.w.kind = mode::read;
            else if (m == "send") o.w.kind = mode::send;
            else if (m == "lat") o.w.kind = mode::lat;
            else throw std::runtime_error("--mode must be write, read, send or lat");
        } else if (a == "-s") {
            if (!sizes_given) o.sizes.clear();
            sizes_given = true;
            o.sizes.push_back(vmrdma::examples::parse_size(value(), 64ull << 20, "size must be 1 byte .. 64 MiB"));
        } else if (a == "-a") {
            o.sizes.clear();
            for (std::size_t s = 64; s <= (4u << 20); s *= 4) o.sizes.push_back(s);
        } else if (a == "-n") {
            o.w.iterations = std::strtoull(value().c_str(), nullptr, 10);
            if (!o.w.iterations) throw std::runtime_error("-n must be positive");
        } else if (a == "-D") {
            o.w.seconds = std::strtod(value().c_str(), nullptr);
            if (o.w.seconds <= 0) throw std::runtime_error("-D must be positive");
        } else if (a == "--depth") {
            o.w.depth = static_cast<unsigned>(std::strtoul(value().c_str(), nullptr, 10));
            if (o.w.depth == 0 || o.w.depth > 256) throw std::runtime_error("--depth must be 1..256");
        } else if (a == "--mtu") {
            o.w.mtu = static_cast<unsigned>(std::strtoul(value().c_str(), nullptr, 10));
            if (o.w.mtu < 1500 || o.w.mtu > 65535) throw std::runtime_error("--mtu must be 1500..65535");
        } else if (a == "--busy-poll") {
            o.w.busy_poll_us = static_cast<unsigned>(std::strtoul(value().c_str(), nullptr, 10));
            if (o.w.busy_poll_us > 1000000) throw std::runtime_error("--busy-poll is in microseconds, at most 1 s");
        } else if (a == "--transport") {
            o.transport = value();
            if (o.transport != "eth" && o.transport != "unix")
                throw std::runtime_error("--transport: eth or unix (xen: is planned)");
        } else if (a == "--daemon-poll-us") {
            unsigned long us = std::strtoul(value().c_str(), nullptr, 10);
            if (us > 1000000) throw std::runtime_error("--daemon-poll-us is in microseconds, at most 1 s");
            o.w.daemon_poll_us = static_cast<unsigned>(us);
        } else if (a == "--no-bundle") {
            o.w.bundle = false;
        } else if (a == "--no-coalesce") {
            o.w.coalesce = false;
        } else if (a == "--integrity") {
            std::string m = value();
            if (m == "link") o.w.link_integrity = true;
            else if (m == "end-to-end") o.w.link_integrity = false;
            else throw std::runtime_error("--integrity must be end-to-end or link");
        } else if (a == "--auth") {
            o.w.auth = true;
        } else if (a == "--go-back-n") {
            o.w.go_back_n = true;
        } else if (a == "--ack-delay") {
            o.w.ack_delay_us = static_cast<unsigned>(std::strtoul(value().c_str(), nullptr, 10));
            if (o.w.ack_delay_us > 100000) throw std::runtime_error("--ack-delay is in microseconds, at most 100 ms");
        } else if (a == "--relay") {
            o.w.relay = value();
        } else if (a == "--relay-bin") {
            o.relay_bin = value();
        } else if (a == "--distinct-buffers") {
            o.w.distinct_buffers = true;
        } else if (a == "--no-tcp") {
            o.tcp = false;
        } else if (a == "--no-raw") {
            o.raw = false;
        } else if (a == "--out") {
            o.out_prefix = value();
        } else if (a == "--json") {
            o.json = true;
        } else {
            throw std::runtime_error("unknown option " + a + " (try --help)");
        }
    }
    if (o.w.kind == mode::lat) o.w.depth = 1;
    return o;
}

template <typename Server, typename Client>
path_figures measure(const vmrdma::examples::netns_pair& net, Server server, Client client, bool receiver_is_server) {
    child srv(net.a(), server);
    if (!srv.wait_ready()) {
        auto r = srv.wait();
        return figures_from(side_result{}, r, receiver_is_server);
    }
    child cli(net.b(), client);
    side_result c = cli.wait();
    if (!c.ok) {
        path_figures f;
        f.error = c.error;
        return f;
    }
    side_result s = srv.wait();
    return figures_from(c, s, receiver_is_server);
}

// --transport unix: the server as usual on one end; on the other, vmrdmad in
// one process and the client as its frontend in another.
path_figures measure_split(const vmrdma::examples::netns_pair& net, const workload& w) {
    const std::string socket_path = "/tmp/vmrdma-bench-" + std::to_string(getpid()) + ".sock";
    auto server = [&](const std::function<void()>& ready) {
        return vmrdma_server("eth:" + net.a().ifname, w, ready);
    };
    child srv(net.a(), server);
    if (!srv.wait_ready()) return figures_from(side_result{}, srv.wait(), false);
    int stop[2];
    if (pipe2(stop, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    child dmn(net.b(), [&](const std::function<void()>& ready) {
        close(stop[1]);
        return daemon_side("eth:" + net.b().ifname, socket_path, stop[0], device_options_for(w), loop_options_for(w),
                           w.daemon_poll_us, ready);
    });
    close(stop[0]);
    path_figures f;
    if (!dmn.wait_ready()) {
        close(stop[1]);
        f.error = std::string("vmrdmad: ") + dmn.wait().error;
        return f;
    }
    child cli(net.b(), [&](const std::function<void()>&) {
        close(stop[1]);
        return vmrdma_client("unix:" + socket_path, net.a().mac, w);
    });
    side_result c = cli.wait();
    close(stop[1]);  // the daemon drains and exits
    side_result d = dmn.wait();
    if (!c.ok) {
        f.error = c.error;
        return f;
    }
    f = figures_from(c, srv.wait(), false);
    double gib = c.bytes / (1024.0 * 1024.0 * 1024.0);
    if (d.ok && gib > 0) f.daemon_cpu_s_per_gib = d.cpu_seconds / gib;
    return f;
}

// The message bytes raw frames carried: what they counted on the wire
// less each frame's Ethernet header, as vmrdma's and TCP's figures count
// message bytes (at 64 B the header is 18 % of a frame).
double payload_bytes(const raw_counts& c) {
    return static_cast<double>(c.bytes) - 14.0 * static_cast<double>(c.frames);
}

// One side of the raw path: what it counted and the CPU it took.
side_result raw_side(const raw_counts& c, double cpu_seconds) {
    side_result r;
    r.ok = true;
    r.cpu_seconds = cpu_seconds;
    r.bytes = payload_bytes(c);
    r.messages = static_cast<double>(c.frames);
    r.seconds = c.seconds;
    return r;
}

path_figures measure_raw(const vmrdma::examples::netns_pair& net, const workload& w) {
    raw_options ro;
    // sendmmsg + TPACKET_V3 receive ring: the fastest measured (AF_XDP, rawframe
    // --mode xdp, moved 0.5-0.7x of it on veth: docs/benchmarks.md)
    ro.mode = "mixed";
    ro.frame = std::min<std::size_t>(w.size, w.mtu) + 14;
    // The frames carry the message's bytes, as vmrdma's do: consecutive
    // slices of one message-sized buffer, the last frame of a message the
    // rest (a 64 KiB message is 8 frames at MTU 9000, not 7.3 full ones).
    ro.message = w.size;
    ro.seconds = w.seconds;
    auto sink = [&](const std::function<void()>& ready) {
        int fd = raw_open(net.a().ifname);
        ready();
        const double cpu0 = cpu_now();  // the sink blocks in poll() until frames come
        const auto c = raw_sink(fd, ro);  // before the CPU is read: arguments have no order
        auto r = raw_side(c, cpu_now() - cpu0);
        close(fd);
        return r;
    };
    auto blast = [&](const std::function<void()>&) {
        int fd = raw_open(net.b().ifname);
        auto dst = vmrdma::mac_address::parse(net.a().mac).bytes;
        const double cpu0 = cpu_now();
        const auto c = raw_blast(fd, ro, dst.data());
        auto r = raw_side(c, cpu_now() - cpu0);
        close(fd);
        return r;
    };
    auto f = measure(net, sink, blast, true);
    // Messages of the workload's size that the frames could have carried.
    std::size_t frames_per_message = (w.size + w.mtu - 1) / w.mtu;
    f.messages_per_s /= static_cast<double>(frames_per_message);
    return f;
}

// --mode lat: raw frames echoed back, one send and one receive per frame
// (the floor under any protocol's round trip on this path).
path_figures measure_raw_lat(const vmrdma::examples::netns_pair& net, const workload& w) {
    raw_options ro;
    ro.frame = std::min<std::size_t>(w.size, w.mtu) + 14;
    ro.seconds = w.seconds;
    const unsigned frames = static_cast<unsigned>((w.size + w.mtu - 1) / w.mtu);
    auto echo = [&](const std::function<void()>& ready) {
        int fd = raw_open(net.a().ifname);
        ready();
        raw_echo(fd, ro, w.busy_poll_us);
        close(fd);
        side_result r;
        r.ok = true;
        return r;
    };
    auto ping = [&](const std::function<void()>&) {
        int fd = raw_open(net.b().ifname);
        auto dst = vmrdma::mac_address::parse(net.a().mac).bytes;
        auto rtt = raw_pingpong(fd, ro, dst.data(), frames, w.busy_poll_us);
        close(fd);
        side_result r;
        r.ok = !rtt.us.empty();
        if (!r.ok) std::snprintf(r.error, sizeof r.error, "raw: no frame came back");
        r.messages = static_cast<double>(rtt.us.size());
        summarize_latencies(rtt.us, r);
        return r;
    };
    return measure(net, echo, ping, false);
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    try {
        o = parse(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vmrdma-bench: %s\n", e.what());
        return 2;
    }
    if (geteuid() != 0) {
        std::fprintf(stderr, "vmrdma-bench: needs root (network namespaces, raw sockets)\n");
        return 1;
    }
    if (const char* cwd = std::getenv("BUILD_WORKING_DIRECTORY"); cwd && o.out_prefix[0] != '/')
        o.out_prefix = std::string(cwd) + "/" + o.out_prefix;
    std::vector<row> rows;
    tcp_buffers budget;
    std::string relay_final;
    try {
        std::string relay_bin;
        if (!o.w.relay.empty()) relay_bin = find_relay(o.relay_bin, argv[0]);
        vmrdma::examples::netns_pair net("vmrdma-bench", o.w.mtu, !o.w.relay.empty());
        std::unique_ptr<vmrdma::faultrelay::relay_process> relay;
        if (!o.w.relay.empty()) {
            relay = std::make_unique<vmrdma::faultrelay::relay_process>(
                relay_bin, relay_args(o.w.relay + " --quiet", net.relay_a, net.relay_b), net.relay());
            // TCP sends wire frames too, not 64 KiB super-frames the relay
            // would lose or keep whole (no ethtool needed: one segment each).
            for (const auto* h : {&net.a(), &net.b()})
                vmrdma::examples::run_command("ip -n " + h->netns + " link set " + h->ifname +
                                              " gso_max_segs 1");
        }
        vmrdma::examples::run_command("ip -n " + net.a().netns + " addr add 192.0.2.1/24 dev " + net.a().ifname);
        vmrdma::examples::run_command("ip -n " + net.b().netns + " addr add 192.0.2.2/24 dev " + net.b().ifname);
        std::fprintf(stderr, "vmrdma-bench: %s, MTU %u, depth %u, busy poll %u us, %s per point, veth between %s and %s\n",
                     mode_name(o.w.kind), o.w.mtu, o.w.depth, o.w.busy_poll_us,
                     o.w.iterations ? (std::to_string(o.w.iterations) + " iterations").c_str()
                                    : (std::to_string(o.w.seconds) + " s").c_str(),
                     net.a().netns.c_str(), net.b().netns.c_str());
        budget = tcp_budget(net.b().netns);
        std::fprintf(stderr, "%s\n", fairness_statement(o.w, budget).c_str());
        if (o.transport == "unix")
            std::fprintf(stderr, "vmrdma-bench: vmrdmad polls %u us before it sleeps (--daemon-poll-us)\n",
                         std::max(o.w.daemon_poll_us, o.w.busy_poll_us));
        const bool write_like = o.w.kind != mode::read;
        for (std::size_t size : o.sizes) {
            workload w = o.w;
            w.size = size;
            row r;
            r.size = size;
            std::fprintf(stderr, "  %zu bytes: vmrdma...", size);
            auto eth = [&] {
                return measure(
                    net,
                    [&](const std::function<void()>& ready) { return vmrdma_server("eth:" + net.a().ifname, w, ready); },
                    [&](const std::function<void()>&) { return vmrdma_client("eth:" + net.b().ifname, net.a().mac, w); },
                    false);
            };
            if (o.transport == "unix") {
                r.vmrdma = measure_split(net, w);
                std::fprintf(stderr, " eth...");
                r.eth = eth();
            } else {
                r.vmrdma = eth();
            }
            if (r.vmrdma.measured)
                std::fprintf(stderr, " (%.0f frames sent again, %.0f RTO expiries)", r.vmrdma.retransmits,
                             r.vmrdma.timeouts);
            if (o.tcp) {
                std::fprintf(stderr, " tcp...");
                r.tcp = measure(
                    net, [&](const std::function<void()>& ready) { return tcp_server("192.0.2.1", w, ready); },
                    [&](const std::function<void()>&) { return tcp_client("192.0.2.1", w); },
                    write_like && o.w.kind != mode::lat);
            }
            if (o.raw) {
                std::fprintf(stderr, " raw...");
                r.raw = o.w.kind == mode::lat ? measure_raw_lat(net, w) : measure_raw(net, w);
            }
            std::fprintf(stderr, " done\n");
            // A path that was not measured says why (it is left out of the
            // figures, and the run exits 1 if it was vmrdma's).
            for (auto [name, p] : {std::pair{"vmrdma", &r.vmrdma}, std::pair{"eth", &r.eth},
                                   std::pair{"tcp", &r.tcp}, std::pair{"raw", &r.raw}})
                if (!p->measured && !p->error.empty())
                    std::fprintf(stderr, "    %s failed: %s\n", name, p->error.c_str());
            rows.push_back(r);
        }
        if (relay) relay_final = relay->stop();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vmrdma-bench: %s\n", e.what());
        return 1;
    }
    std::string stem = o.out_prefix + "-" + mode_name(o.w.kind);
    try {
        write_csv(stem + ".csv", o.w.kind, rows);
        write_svg(stem + ".svg", o.w.kind, o.w.mtu, rows);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vmrdma-bench: %s\n", e.what());
        return 1;
    }
    if (o.json) {
        print_json(stdout, o.w, budget, rows);
    } else {
        print_table(stdout, o.w.kind, rows);
        std::printf("%s\n", fairness_statement(o.w, budget).c_str());
    }
    if (!relay_final.empty()) std::fprintf(stderr, "%s", relay_final.c_str());
    std::fprintf(stderr, "wrote %s.csv and %s.svg\n", stem.c_str(), stem.c_str());
    for (const auto& r : rows)
        if (!r.vmrdma.measured) return 1;
    return 0;
}
