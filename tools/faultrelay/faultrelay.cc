// faultrelay: a fault-injecting Ethernet relay. It sits between two
// interfaces (typically the inner ends of two veth pairs, hostA <-> relay <->
// hostB), reads every frame that arrives on one with an AF_PACKET raw socket
// (ETH_P_ALL, promiscuous, its own transmissions ignored) and sends it out of
// the other, in both directions, with configurable loss, duplication,
// reordering, bit corruption, delay + jitter and a rate limit. Frames of any
// EtherType are forwarded unchanged (VLAN tags the kernel stripped into
// auxdata are put back). Single-threaded poll() loop; a bounded,
// timestamped delay queue per direction. See docs/faultrelay.md.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// struct virtio_net_hdr of <linux/virtio_net.h> (which does not compile as
// C++: a member is named `class`), in host byte order as packet sockets use it.
struct virtio_net_hdr {
    std::uint8_t flags;
    std::uint8_t gso_type;
    std::uint16_t hdr_len, gso_size, csum_start, csum_offset;
};
static_assert(sizeof(virtio_net_hdr) == 10);
constexpr std::uint8_t VIRTIO_NET_HDR_F_NEEDS_CSUM = 1, VIRTIO_NET_HDR_F_DATA_VALID = 2;
constexpr std::uint8_t VIRTIO_NET_HDR_GSO_NONE = 0;

constexpr std::size_t max_frame = 65536 + 64;

std::uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::uint64_t(ts.tv_sec) * 1'000'000'000ull + std::uint64_t(ts.tv_nsec);
}

// Fault settings of one direction.
struct faults {
    double loss = 0, dup = 0, reorder = 0, corrupt = 0;  // percent
    std::uint64_t delay_us = 0, jitter_us = 0;
    double rate_mbit = 0;  // 0 = unlimited
};

struct config {
    std::string ifname[2];
    faults dir[2];  // dir[0]: received on ifname[0], sent out of ifname[1]; dir[1]: the reverse
    std::uint64_t seed = 0;
    bool seed_given = false;
    double stats_s = 0;
    unsigned reorder_gap = 3;           // a held frame goes out after 1..gap later frames
    std::uint64_t reorder_hold_us = 1000;  // ... or after this long, whichever comes first
    std::size_t queue_limit = 8192;     // frames per direction (delay queue + held)
    std::uint64_t burst_bytes = 0;      // token bucket depth; 0 = automatic
    bool quiet = false;
};

struct counters {
    std::uint64_t received = 0, received_bytes = 0;
    std::uint64_t forwarded = 0, forwarded_bytes = 0;
    std::uint64_t dropped = 0, duplicated = 0, reordered = 0, corrupted = 0;
    std::uint64_t queue_full = 0, tx_errors = 0;
    std::uint64_t gso_frames = 0;         // TCP/UDP super-frames (segmented on the way out)
    std::uint64_t gso_corrupt_dropped = 0;  // super-frames picked for corruption: dropped instead
};

struct frame {
    virtio_net_hdr vnet{};  // offload state (GSO, checksum) as the kernel handed it over
    std::vector<std::uint8_t> bytes;
    std::uint64_t due_ns = 0;
};

struct held_frame {
    frame f;
    unsigned frames_left = 0;     // later frames still to go out before this one
    std::uint64_t release_ns = 0;
};

struct direction {
    int in = 0, out = 1;  // interface indices into config::ifname / sockets
    faults f;
    std::mt19937_64 rng;
    std::deque<frame> queue;
    std::vector<held_frame> held;
    std::uint64_t last_due_ns = 0;
    // token bucket (bytes); may go negative by at most one frame
    double tokens = 0, burst = 0, bytes_per_ns = 0;
    std::uint64_t tokens_at_ns = 0;
    bool blocked = false;  // the out socket said EAGAIN; wait for POLLOUT
    counters c;

    bool chance(double percent) {
        if (percent <= 0) return false;
        if (percent >= 100) return true;
        return std::uniform_real_distribution<double>(0, 100)(rng) < percent;
    }
    std::size_t in_flight() const { return queue.size() + held.size(); }
};

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "faultrelay: %s\n", msg.c_str());
    std::exit(1);
}

void usage(FILE* out) {
    std::fprintf(out,
        "usage: faultrelay [options] IFACE_A IFACE_B\n"
        "\n"
        "Forwards every Ethernet frame (any EtherType, unchanged) arriving on IFACE_A out of\n"
        "IFACE_B and vice versa, using AF_PACKET raw sockets (needs CAP_NET_RAW), and injects\n"
        "faults on the way. Run it in the namespace that holds both interfaces, e.g. the middle\n"
        "of hostA <-veth-> [IFACE_A relay IFACE_B] <-veth-> hostB.\n"
        "\n"
        "Faults (each sets both directions; add -ab or -ba to set one: --loss-ab 5 drops 5%%\n"
        "of the frames going A->B only):\n"
        "  --loss P        drop P%% of the frames\n"
        "  --dup P         send P%% of the frames twice\n"
        "  --reorder P     hold P%% of the frames back and send them after 1..GAP later frames\n"
        "                  (or after --reorder-hold, if no later frame comes)\n"
        "  --corrupt P     flip one random bit, anywhere in the frame (headers included),\n"
        "                  in P%% of the frames (each copy of a duplicate independently;\n"
        "                  a GSO super-frame picked for corruption is dropped instead)\n"
        "  --delay US      delay every frame by US microseconds\n"
        "  --jitter US     plus a uniform random 0..US microseconds (order is kept;\n"
        "                  use --reorder to reorder)\n"
        "  --rate MBIT     limit to MBIT megabit/s (token bucket; frames queue, not drop)\n"
        "Other:\n"
        "  --reorder-gap N     held frames go out after 1..N later frames (default 3)\n"
        "  --reorder-hold US   ... or after US microseconds at most (default 1000)\n"
        "  --burst BYTES       token bucket depth (default: max(16 KiB, 1 ms at the rate))\n"
        "  --queue N           frames queued per direction before new ones are dropped\n"
        "                      and counted as queue_full (default 8192)\n"
        "  --seed N            random seed (default: from the clock; printed at start)\n"
        "  --stats SECONDS     print the counters every SECONDS (default: only at exit)\n"
        "  --quiet             no start-up line\n"
        "  -h, --help          this text\n"
        "\n"
        "P is a percentage 0..100 (fractions allowed). Counters per direction (forwarded,\n"
        "dropped, duplicated, reordered, corrupted, ...) are printed on SIGINT/SIGTERM (which\n"
        "also stop the relay), on SIGUSR1, and every --stats SECONDS, as lines\n"
        "  faultrelay: stats A->B received=.. forwarded=.. dropped=.. duplicated=.. ...\n");
}

double parse_number(const std::string& opt, const std::string& v, double lo, double hi) {
    char* end = nullptr;
    errno = 0;
    double d = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || errno != 0 || !std::isfinite(d) || d < lo || d > hi) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "%s: '%s' is not a number in %g..%g", opt.c_str(), v.c_str(), lo, hi);
        die(buf);
    }
    return d;
}

config parse_args(int argc, char** argv) {
    config cfg;
    std::vector<std::string> positional;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            usage(stdout);
            std::exit(0);
        }
        if (a == "--quiet") {
            cfg.quiet = true;
            continue;
        }
        if (a.size() < 2 || a.compare(0, 2, "--") != 0) {
            if (!a.empty() && a[0] == '-') die("unknown option " + a + " (try --help)");
            positional.push_back(a);
            continue;
        }
        std::string name = a, value;
        auto eq = a.find('=');
        if (eq != std::string::npos) {
            name = a.substr(0, eq);
            value = a.substr(eq + 1);
        } else {
            if (i + 1 >= argc) die(a + " needs a value (try --help)");
            value = argv[++i];
        }
        // Per-direction suffix.
        bool set[2] = {true, true};
        std::string base = name;
        if (name.size() > 3 && (name.ends_with("-ab") || name.ends_with("-ba"))) {
            base = name.substr(0, name.size() - 3);
            bool ab = name.ends_with("-ab");
            set[0] = ab;
            set[1] = !ab;
        }
        auto each = [&](auto fn) {
            for (int d = 0; d < 2; ++d)
                if (set[d]) fn(cfg.dir[d]);
        };
        bool per_direction_ok = true;
        if (base == "--loss") {
            double p = parse_number(name, value, 0, 100);
            each([&](faults& f) { f.loss = p; });
        } else if (base == "--dup") {
            double p = parse_number(name, value, 0, 100);
            each([&](faults& f) { f.dup = p; });
        } else if (base == "--reorder") {
            double p = parse_number(name, value, 0, 100);
            each([&](faults& f) { f.reorder = p; });
        } else if (base == "--corrupt") {
            double p = parse_number(name, value, 0, 100);
            each([&](faults& f) { f.corrupt = p; });
        } else if (base == "--delay") {
            auto us = std::uint64_t(parse_number(name, value, 0, 60e6));
            each([&](faults& f) { f.delay_us = us; });
        } else if (base == "--jitter") {
            auto us = std::uint64_t(parse_number(name, value, 0, 60e6));
            each([&](faults& f) { f.jitter_us = us; });
        } else if (base == "--rate") {
            double r = parse_number(name, value, 0, 1e6);
            each([&](faults& f) { f.rate_mbit = r; });
        } else {
            per_direction_ok = false;
            if (base != name) die("unknown option " + name + " (try --help)");
            if (name == "--seed") {
                char* end = nullptr;
                cfg.seed = std::strtoull(value.c_str(), &end, 0);
                if (value.empty() || *end != '\0') die("--seed: '" + value + "' is not a number");
                cfg.seed_given = true;
            } else if (name == "--stats") {
                cfg.stats_s = parse_number(name, value, 0, 86400);
            } else if (name == "--reorder-gap") {
                cfg.reorder_gap = unsigned(parse_number(name, value, 1, 1000));
            } else if (name == "--reorder-hold") {
                cfg.reorder_hold_us = std::uint64_t(parse_number(name, value, 1, 60e6));
            } else if (name == "--queue") {
                cfg.queue_limit = std::size_t(parse_number(name, value, 1, 1e7));
            } else if (name == "--burst") {
                cfg.burst_bytes = std::uint64_t(parse_number(name, value, 1, 1e12));
            } else {
                die("unknown option " + name + " (try --help)");
            }
        }
        (void)per_direction_ok;
    }
    if (positional.size() != 2) {
        usage(stderr);
        die("expected exactly two interface names, got " + std::to_string(positional.size()));
    }
    if (positional[0] == positional[1]) die("the two interfaces must differ (both are " + positional[0] + ")");
    cfg.ifname[0] = positional[0];
    cfg.ifname[1] = positional[1];
    if (!cfg.seed_given) cfg.seed = now_ns() ^ (std::uint64_t(getpid()) << 32);
    return cfg;
}

// Opens a promiscuous ETH_P_ALL socket bound to `ifname` that ignores its own
// transmissions. Dies with a clear reason on failure.
int open_port(const std::string& ifname) {
    unsigned index = if_nametoindex(ifname.c_str());
    if (index == 0)
        die("no interface named '" + ifname + "' in this network namespace (" + std::strerror(errno) +
            "); list them with `ip link show`");
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd < 0) {
        int e = errno;
        if (e == EPERM || e == EACCES)
            die(std::string("cannot open an AF_PACKET raw socket: ") + std::strerror(e) +
                " — faultrelay needs CAP_NET_RAW (run it as root, or `setcap cap_net_raw+ep` it)");
        die(std::string("socket(AF_PACKET, SOCK_RAW): ") + std::strerror(e));
    }
    int one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) != 0)
        die(std::string("PACKET_IGNORE_OUTGOING (needs Linux 4.20+): ") + std::strerror(errno));
    // Frames from a local stack on a veth peer often carry offload state: a
    // checksum still to be filled in (CHECKSUM_PARTIAL) or a TCP/UDP
    // super-frame to be segmented (GSO). The vnet header carries that state
    // through the relay, so forwarded IP traffic stays valid.
    if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) != 0)
        die(std::string("PACKET_VNET_HDR: ") + std::strerror(errno));
    if (setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one) != 0)
        die(std::string("PACKET_AUXDATA: ") + std::strerror(errno));
    int buf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    // Try to force the sizes past rmem_max (works with CAP_NET_ADMIN).
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = int(index);
    if (bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0)
        die("cannot bind to '" + ifname + "': " + std::strerror(errno));
    packet_mreq mr{};
    mr.mr_ifindex = int(index);
    mr.mr_type = PACKET_MR_PROMISC;
    if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) != 0)
        die("cannot put '" + ifname + "' in promiscuous mode: " + std::strerror(errno));
    ifreq ifr{};
    std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname.c_str());
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP))
        std::fprintf(stderr, "faultrelay: warning: '%s' is down (ip link set %s up)\n", ifname.c_str(),
                     ifname.c_str());
    return fd;
}

class relay {
public:
    explicit relay(const config& cfg) : cfg_(cfg) {
        for (int p = 0; p < 2; ++p) fd_[p] = open_port(cfg.ifname[p]);
        for (int d = 0; d < 2; ++d) {
            auto& dir = dir_[d];
            dir.in = d;
            dir.out = 1 - d;
            dir.f = cfg.dir[d];
            dir.rng.seed(cfg.seed + std::uint64_t(d) * 0x9e3779b97f4a7c15ull);
            if (dir.f.rate_mbit > 0) {
                dir.bytes_per_ns = dir.f.rate_mbit * 1e6 / 8 / 1e9;
                double auto_burst = std::max(16384.0, dir.bytes_per_ns * 1e6);
                dir.burst = cfg.burst_bytes ? double(cfg.burst_bytes) : auto_burst;
                dir.tokens = dir.burst;
                dir.tokens_at_ns = now_ns();
            }
        }
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGUSR1);
        sigprocmask(SIG_BLOCK, &set, nullptr);
        sigfd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
        if (sigfd_ < 0) die(std::string("signalfd: ") + std::strerror(errno));
        rx_.resize(max_frame);
    }

    void print_config() const {
        for (int d = 0; d < 2; ++d) {
            const auto& f = cfg_.dir[d];
            std::printf(
                "faultrelay: %s loss=%g%% dup=%g%% reorder=%g%% corrupt=%g%% delay=%lluus jitter=%lluus "
                "rate=%s\n",
                name(d).c_str(), f.loss, f.dup, f.reorder, f.corrupt,
                static_cast<unsigned long long>(f.delay_us), static_cast<unsigned long long>(f.jitter_us),
                f.rate_mbit > 0 ? (std::to_string(f.rate_mbit) + "Mbit/s").c_str() : "unlimited");
        }
        std::printf("faultrelay: seed=%llu\n", static_cast<unsigned long long>(cfg_.seed));
    }

    int run() {
        std::printf("faultrelay: ready, relaying %s <-> %s\n", cfg_.ifname[0].c_str(), cfg_.ifname[1].c_str());
        std::fflush(stdout);
        std::uint64_t stats_every = std::uint64_t(cfg_.stats_s * 1e9);
        std::uint64_t next_stats = stats_every ? now_ns() + stats_every : 0;
        for (;;) {
            std::uint64_t now = now_ns();
            for (int d = 0; d < 2; ++d) {
                release_held(dir_[d], now);
                transmit(dir_[d], now);
            }
            if (next_stats && now >= next_stats) {
                print_stats("stats");
                next_stats = now + stats_every;
            }
            // Sleep until a socket is ready or the next deadline.
            std::uint64_t deadline = next_stats ? next_stats : UINT64_MAX;
            for (int d = 0; d < 2; ++d) deadline = std::min(deadline, next_deadline(dir_[d], now));
            timespec timeout{}, *timeout_p = nullptr;
            if (deadline != UINT64_MAX) {
                std::uint64_t wait = std::min<std::uint64_t>(deadline > now ? deadline - now : 0, 60'000'000'000ull);
                timeout.tv_sec = time_t(wait / 1'000'000'000ull);
                timeout.tv_nsec = long(wait % 1'000'000'000ull);
                timeout_p = &timeout;
            }
            pollfd pfd[3];
            for (int p = 0; p < 2; ++p) {
                pfd[p].fd = fd_[p];
                pfd[p].events = POLLIN;
                // Port p is the out port of direction 1-p.
                if (dir_[1 - p].blocked) pfd[p].events |= POLLOUT;
                pfd[p].revents = 0;
            }
            pfd[2] = {sigfd_, POLLIN, 0};
            int n = ppoll(pfd, 3, timeout_p, nullptr);
            if (n < 0) {
                if (errno == EINTR) continue;
                die(std::string("poll: ") + std::strerror(errno));
            }
            if (pfd[2].revents & POLLIN) {
                signalfd_siginfo si;
                while (read(sigfd_, &si, sizeof si) == ssize_t(sizeof si)) {
                    if (si.ssi_signo == SIGUSR1) {
                        print_stats("stats");
                    } else {
                        print_stats("final");
                        return 0;
                    }
                }
            }
            for (int p = 0; p < 2; ++p) {
                if (pfd[p].revents & POLLOUT) dir_[1 - p].blocked = false;
                if (pfd[p].revents & (POLLERR | POLLNVAL)) {
                    int err = 0;
                    socklen_t len = sizeof err;
                    getsockopt(fd_[p], SOL_SOCKET, SO_ERROR, &err, &len);
                    if (pfd[p].revents & POLLNVAL || (err && err != ENETDOWN))
                        die("socket on '" + cfg_.ifname[p] + "' failed: " + std::strerror(err));
                }
                if (pfd[p].revents & POLLIN) receive(dir_[p]);
            }
        }
    }

private:
    std::string name(int d) const { return cfg_.ifname[d] + "->" + cfg_.ifname[1 - d]; }

    void print_stats(const char* what) {
        for (int d = 0; d < 2; ++d) {
            const auto& c = dir_[d].c;
            std::printf(
                "faultrelay: %s %s received=%llu forwarded=%llu dropped=%llu duplicated=%llu reordered=%llu "
                "corrupted=%llu queue_full=%llu tx_errors=%llu queued=%zu received_bytes=%llu "
                "forwarded_bytes=%llu gso_frames=%llu gso_corrupt_dropped=%llu\n",
                what, name(d).c_str(), static_cast<unsigned long long>(c.received),
                static_cast<unsigned long long>(c.forwarded), static_cast<unsigned long long>(c.dropped),
                static_cast<unsigned long long>(c.duplicated), static_cast<unsigned long long>(c.reordered),
                static_cast<unsigned long long>(c.corrupted), static_cast<unsigned long long>(c.queue_full),
                static_cast<unsigned long long>(c.tx_errors), dir_[d].in_flight(),
                static_cast<unsigned long long>(c.received_bytes),
                static_cast<unsigned long long>(c.forwarded_bytes),
                static_cast<unsigned long long>(c.gso_frames),
                static_cast<unsigned long long>(c.gso_corrupt_dropped));
        }
        std::fflush(stdout);
    }

    // Drains the socket of port d (direction d's input), at most 256 frames per call.
    void receive(direction& dir) {
        for (int i = 0; i < 256; ++i) {
            alignas(cmsghdr) char control[CMSG_SPACE(sizeof(tpacket_auxdata))];
            virtio_net_hdr vnet{};
            iovec iov[2] = {{&vnet, sizeof vnet}, {rx_.data(), rx_.size()}};
            sockaddr_ll from{};
            msghdr msg{};
            msg.msg_name = &from;
            msg.msg_namelen = sizeof from;
            msg.msg_iov = iov;
            msg.msg_iovlen = 2;
            msg.msg_control = control;
            msg.msg_controllen = sizeof control;
            ssize_t n = recvmsg(fd_[dir.in], &msg, MSG_DONTWAIT | MSG_TRUNC);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
                if (errno == ENETDOWN) return;
                die("receive on '" + cfg_.ifname[dir.in] + "': " + std::strerror(errno));
            }
            if (from.sll_pkttype == PACKET_OUTGOING) continue;  // belt and braces
            if (std::size_t(n) < sizeof vnet) continue;
            std::size_t len = std::min<std::size_t>(std::size_t(n) - sizeof vnet, rx_.size());
            frame f;
            f.vnet = vnet;
            f.bytes.assign(rx_.begin(), rx_.begin() + std::ptrdiff_t(len));
            // Put back a VLAN tag the kernel moved into auxdata.
            for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
                if (cm->cmsg_level != SOL_PACKET || cm->cmsg_type != PACKET_AUXDATA) continue;
                tpacket_auxdata aux;
                std::memcpy(&aux, CMSG_DATA(cm), sizeof aux);
                if ((aux.tp_status & TP_STATUS_VLAN_VALID) && f.bytes.size() >= 12) {
                    std::uint16_t tpid = (aux.tp_status & TP_STATUS_VLAN_TPID_VALID) ? aux.tp_vlan_tpid : 0x8100;
                    std::uint8_t tag[4] = {std::uint8_t(tpid >> 8), std::uint8_t(tpid),
                                           std::uint8_t(aux.tp_vlan_tci >> 8), std::uint8_t(aux.tp_vlan_tci)};
                    f.bytes.insert(f.bytes.begin() + 12, tag, tag + 4);
                }
            }
            finish_checksum(f);
            ++dir.c.received;
            dir.c.received_bytes += f.bytes.size();
            if (f.vnet.gso_type != VIRTIO_NET_HDR_GSO_NONE) ++dir.c.gso_frames;
            inject(dir, std::move(f));
        }
    }

    // Fills in a checksum the sender's stack left to "hardware", so that the
    // frame is complete as it leaves (and a corrupted bit is caught by the
    // receiver's L4 checksum, as on a real wire). GSO super-frames keep the
    // offload: the kernel segments and checksums them on the way out.
    static void finish_checksum(frame& f) {
        f.vnet.flags &= std::uint8_t(~VIRTIO_NET_HDR_F_DATA_VALID);
        if (!(f.vnet.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || f.vnet.gso_type != VIRTIO_NET_HDR_GSO_NONE) return;
        std::size_t start = f.vnet.csum_start, at = start + f.vnet.csum_offset;
        if (start >= f.bytes.size() || at + 2 > f.bytes.size()) return;  // leave it to the kernel
        std::uint32_t sum = 0;
        for (std::size_t i = start; i < f.bytes.size(); i += 2) {
            std::uint32_t hi = f.bytes[i], lo = i + 1 < f.bytes.size() ? f.bytes[i + 1] : 0;
            sum += (hi << 8) | lo;
        }
        while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
        std::uint16_t c = std::uint16_t(~sum);
        if (c == 0) c = 0xffff;
        f.bytes[at] = std::uint8_t(c >> 8);
        f.bytes[at + 1] = std::uint8_t(c);
        f.vnet.flags &= std::uint8_t(~VIRTIO_NET_HDR_F_NEEDS_CSUM);
        f.vnet.csum_start = f.vnet.csum_offset = 0;
    }

    // False if the frame must be dropped instead: the kernel recomputes the
    // checksums of a GSO super-frame as it segments it, so a flipped bit
    // there would reach the receiver undetectably, which no real wire does.
    bool corrupt_maybe(direction& dir, frame& f) {
        if (f.bytes.empty() || !dir.chance(dir.f.corrupt)) return true;
        if (f.vnet.gso_type != VIRTIO_NET_HDR_GSO_NONE) {
            ++dir.c.gso_corrupt_dropped;
            return false;
        }
        std::uint64_t bit = std::uniform_int_distribution<std::uint64_t>(0, f.bytes.size() * 8 - 1)(dir.rng);
        f.bytes[bit / 8] ^= std::uint8_t(1u << (bit % 8));
        ++dir.c.corrupted;
        return true;
    }

    // Puts a frame in the delay queue, stamped with its departure time.
    void enqueue(direction& dir, frame f, std::uint64_t now) {
        if (dir.queue.size() >= cfg_.queue_limit) {
            ++dir.c.queue_full;
            return;
        }
        std::uint64_t due = now + dir.f.delay_us * 1000;
        if (dir.f.jitter_us)
            due += std::uniform_int_distribution<std::uint64_t>(0, dir.f.jitter_us * 1000)(dir.rng);
        due = std::max(due, dir.last_due_ns);  // jitter keeps order
        dir.last_due_ns = due;
        f.due_ns = due;
        dir.queue.push_back(std::move(f));
    }

    // Counts one more frame gone into the queue for every held frame, and
    // releases those whose turn has come (behind the frame just queued).
    void count_and_release(direction& dir, std::uint64_t now) {
        for (std::size_t i = 0; i < dir.held.size();) {
            auto& h = dir.held[i];
            if (h.frames_left > 0) --h.frames_left;
            if (h.frames_left == 0) {
                frame f = std::move(h.f);
                dir.held.erase(dir.held.begin() + std::ptrdiff_t(i));
                enqueue(dir, std::move(f), now);
            } else {
                ++i;
            }
        }
    }

    void inject(direction& dir, frame f) {
        std::uint64_t now = now_ns();
        if (dir.chance(dir.f.loss)) {
            ++dir.c.dropped;
            return;
        }
        if (dir.in_flight() >= cfg_.queue_limit) {
            ++dir.c.queue_full;
            return;
        }
        int copies = 1;
        if (dir.chance(dir.f.dup)) {
            copies = 2;
            ++dir.c.duplicated;
        }
        for (int k = 0; k < copies; ++k) {
            frame copy;
            if (k + 1 < copies) copy = f;
            else copy = std::move(f);
            if (!corrupt_maybe(dir, copy)) continue;
            if (dir.chance(dir.f.reorder)) {
                ++dir.c.reordered;
                held_frame h;
                h.frames_left = std::uniform_int_distribution<unsigned>(1, cfg_.reorder_gap)(dir.rng);
                h.release_ns = now + cfg_.reorder_hold_us * 1000;
                h.f = std::move(copy);
                dir.held.push_back(std::move(h));
                continue;
            }
            enqueue(dir, std::move(copy), now);
            count_and_release(dir, now);
        }
    }

    void release_held(direction& dir, std::uint64_t now) {
        for (std::size_t i = 0; i < dir.held.size();) {
            if (dir.held[i].release_ns <= now) {
                frame f = std::move(dir.held[i].f);
                dir.held.erase(dir.held.begin() + std::ptrdiff_t(i));
                enqueue(dir, std::move(f), now);
            } else {
                ++i;
            }
        }
    }

    void refill(direction& dir, std::uint64_t now) {
        if (dir.bytes_per_ns <= 0) return;
        dir.tokens = std::min(dir.burst, dir.tokens + double(now - dir.tokens_at_ns) * dir.bytes_per_ns);
        dir.tokens_at_ns = now;
    }

    // Sends every queued frame that is due (and that the rate allows).
    void transmit(direction& dir, std::uint64_t now) {
        refill(dir, now);
        while (!dir.blocked && !dir.queue.empty()) {
            frame& f = dir.queue.front();
            if (f.due_ns > now) return;
            if (dir.bytes_per_ns > 0 && dir.tokens < 0) return;
            iovec iov[2] = {{&f.vnet, sizeof f.vnet}, {f.bytes.data(), f.bytes.size()}};
            msghdr msg{};
            msg.msg_iov = iov;
            msg.msg_iovlen = 2;
            ssize_t n = sendmsg(fd_[dir.out], &msg, MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
                    dir.blocked = true;
                    return;
                }
                if (errno == EINTR) continue;
                ++dir.c.tx_errors;  // EMSGSIZE (frame above the out MTU), ENETDOWN, ...
            } else {
                ++dir.c.forwarded;
                dir.c.forwarded_bytes += f.bytes.size();
                if (dir.bytes_per_ns > 0) dir.tokens -= double(f.bytes.size());
            }
            dir.queue.pop_front();
        }
    }

    std::uint64_t next_deadline(const direction& dir, std::uint64_t now) const {
        std::uint64_t t = UINT64_MAX;
        for (const auto& h : dir.held) t = std::min(t, h.release_ns);
        if (!dir.blocked && !dir.queue.empty()) {
            std::uint64_t due = dir.queue.front().due_ns;
            if (dir.bytes_per_ns > 0 && dir.tokens < 0)
                due = std::max(due, now + std::uint64_t(-dir.tokens / dir.bytes_per_ns) + 1);
            t = std::min(t, due);
        }
        return t;
    }

    config cfg_;
    int fd_[2] = {-1, -1};
    int sigfd_ = -1;
    direction dir_[2];
    std::vector<std::uint8_t> rx_;
};

}  // namespace

int main(int argc, char** argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    config cfg = parse_args(argc, argv);
    relay r(cfg);
    if (!cfg.quiet) r.print_config();
    return r.run();
}
