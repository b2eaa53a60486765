// rawframe: the raw-Ethernet upper bound of a veth path (pktgen-style), and
// the comparison of AF_PACKET I/O strategies that chose the eth: transport's:
//   mmsg  sendmmsg(2)/recvmmsg(2) in batches of 64 (what eth: uses)
//   ring  PACKET_TX_RING (TPACKET_V2) to send, PACKET_RX_RING (TPACKET_V3) to receive
//   mixed  sendmmsg(2) to send (gathers from the caller's memory), V3 RX ring to receive
//   mixed2 sendmmsg(2) to send, TPACKET_V2 RX ring (per-frame hand-over) to receive
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
#include <string>
#include <vector>

#include "examples/support/netns_pair.hpp"

namespace {

constexpr std::uint16_t ethertype = 0x88B6;  // not vmrdma's: nothing else listens
constexpr int batch = 64;

struct options {
    std::string mode = "mmsg";
    std::size_t frame = 9014;  // bytes on the wire, Ethernet header included
    double seconds = 2.0;
    bool json = false;
};

struct result {
    std::uint64_t frames = 0, bytes = 0;
    double seconds = 0;
};

int open_socket(const std::string& ifname) {
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ethertype));
    if (fd < 0) { std::perror("socket(AF_PACKET)"); std::exit(1); }
    sockaddr_ll a{};
    a.sll_family = AF_PACKET;
    a.sll_protocol = htons(ethertype);
    a.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) { std::perror("bind"); std::exit(1); }
    int bytes = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes);
    return fd;
}

void fill_frame(std::vector<std::uint8_t>& f, const std::uint8_t dst[6]) {
    std::memcpy(f.data(), dst, 6);
    std::memset(f.data() + 6, 0x02, 6);
    f[12] = ethertype >> 8;
    f[13] = ethertype & 0xff;
    for (std::size_t i = 14; i < f.size(); ++i) f[i] = static_cast<std::uint8_t>(i);
}

using clock_type = std::chrono::steady_clock;

result send_mmsg(int fd, const options& o, const std::uint8_t dst[6]) {
    std::vector<std::uint8_t> frame(o.frame);
    fill_frame(frame, dst);
    iovec iov{frame.data(), frame.size()};
    std::vector<mmsghdr> msgs(batch);
    for (auto& m : msgs) {
        m.msg_hdr = {};
        m.msg_hdr.msg_iov = &iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    result r;
    auto t0 = clock_type::now();
    auto end = t0 + std::chrono::duration<double>(o.seconds);
    while (clock_type::now() < end) {
        int n = sendmmsg(fd, msgs.data(), batch, 0);
        if (n > 0) r.frames += static_cast<std::uint64_t>(n);
    }
    r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    r.bytes = r.frames * o.frame;
    return r;
}

result send_ring(int fd, const options& o, const std::uint8_t dst[6]) {
    int v = TPACKET_V2;
    setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v);
    tpacket_req req{};
    req.tp_frame_size = static_cast<unsigned>((o.frame + TPACKET2_HDRLEN + 4095) & ~4095u);
    req.tp_block_size = req.tp_frame_size * 4;
    req.tp_block_nr = 64;
    req.tp_frame_nr = req.tp_block_nr * 4;
    if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) != 0) { std::perror("PACKET_TX_RING"); std::exit(1); }
    std::size_t size = std::size_t{req.tp_block_size} * req.tp_block_nr;
    auto* ring = static_cast<std::uint8_t*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (ring == MAP_FAILED) { std::perror("mmap"); std::exit(1); }
    std::vector<std::uint8_t> frame(o.frame);
    fill_frame(frame, dst);
    result r;
    unsigned slot = 0;
    auto t0 = clock_type::now();
    auto end = t0 + std::chrono::duration<double>(o.seconds);
    while (clock_type::now() < end) {
        int queued = 0;
        for (int i = 0; i < batch; ++i) {
            auto* hdr = reinterpret_cast<tpacket2_hdr*>(ring + std::size_t{slot} * req.tp_frame_size);
            if (hdr->tp_status != TP_STATUS_AVAILABLE) break;
            std::memcpy(reinterpret_cast<std::uint8_t*>(hdr) + TPACKET2_HDRLEN - sizeof(sockaddr_ll),
                        frame.data(), frame.size());
            hdr->tp_len = static_cast<unsigned>(frame.size());
            hdr->tp_status = TP_STATUS_SEND_REQUEST;
            slot = (slot + 1) % req.tp_frame_nr;
            ++queued;
        }
        if (send(fd, nullptr, 0, 0) >= 0) r.frames += static_cast<std::uint64_t>(queued);
    }
    r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    r.bytes = r.frames * o.frame;
    munmap(ring, size);
    return r;
}

// Receives until `idle` passes without a frame; returns what arrived.
result receive_mmsg(int fd, const options& o) {
    std::vector<std::uint8_t> bufs(batch * (o.frame + 64));
    std::vector<iovec> iov(batch);
    std::vector<mmsghdr> msgs(batch);
    result r;
    clock_type::time_point first{}, last{};
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 500) <= 0) break;
        for (int i = 0; i < batch; ++i) {
            iov[i] = {&bufs[i * (o.frame + 64)], o.frame + 64};
            msgs[i].msg_hdr = {};
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, msgs.data(), batch, MSG_DONTWAIT, nullptr);
        if (n <= 0) continue;
        if (r.frames == 0) first = clock_type::now();
        last = clock_type::now();
        for (int i = 0; i < n; ++i) r.bytes += msgs[i].msg_len;
        r.frames += static_cast<std::uint64_t>(n);
    }
    r.seconds = std::chrono::duration<double>(last - first).count();
    return r;
}

result receive_ring(int fd, const options& o) {
    int v = TPACKET_V3;
    setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v);
    tpacket_req3 req{};
    req.tp_block_size = 1 << 22;
    req.tp_block_nr = 16;
    req.tp_frame_size = static_cast<unsigned>((o.frame + 256 + 4095) & ~4095u);
    req.tp_frame_nr = req.tp_block_size / req.tp_frame_size * req.tp_block_nr;
    req.tp_retire_blk_tov = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0) { std::perror("PACKET_RX_RING"); std::exit(1); }
    std::size_t size = std::size_t{req.tp_block_size} * req.tp_block_nr;
    auto* ring = static_cast<std::uint8_t*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (ring == MAP_FAILED) { std::perror("mmap"); std::exit(1); }
    result r;
    clock_type::time_point first{}, last{};
    unsigned block = 0;
    for (;;) {
        auto* bd = reinterpret_cast<tpacket_block_desc*>(ring + std::size_t{block} * req.tp_block_size);
        if (!(bd->hdr.bh1.block_status & TP_STATUS_USER)) {
            pollfd p{fd, POLLIN | POLLERR, 0};
            if (poll(&p, 1, 500) <= 0) break;
            continue;
        }
        if (r.frames == 0) first = clock_type::now();
        last = clock_type::now();
        auto* pkt = reinterpret_cast<tpacket3_hdr*>(reinterpret_cast<std::uint8_t*>(bd) + bd->hdr.bh1.offset_to_first_pkt);
        for (unsigned i = 0; i < bd->hdr.bh1.num_pkts; ++i) {
            r.bytes += pkt->tp_snaplen;
            ++r.frames;
            pkt = reinterpret_cast<tpacket3_hdr*>(reinterpret_cast<std::uint8_t*>(pkt) + pkt->tp_next_offset);
        }
        bd->hdr.bh1.block_status = TP_STATUS_KERNEL;
        block = (block + 1) % req.tp_block_nr;
    }
    r.seconds = std::chrono::duration<double>(last - first).count();
    munmap(ring, size);
    return r;
}

// TPACKET_V2 receive ring: one slot per frame, each handed to user space as
// soon as it is written (V3 hands over whole blocks, on fill or on a timer).
result receive_ring_v2(int fd, const options& o) {
    int v = TPACKET_V2;
    setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v);
    tpacket_req req{};
    req.tp_frame_size = static_cast<unsigned>((o.frame + TPACKET2_HDRLEN + 64 + 4095) & ~4095u);
    req.tp_block_size = req.tp_frame_size;
    req.tp_frame_nr = std::max(64u, (64u << 20) / req.tp_frame_size);
    req.tp_block_nr = req.tp_frame_nr;
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0) { std::perror("PACKET_RX_RING"); std::exit(1); }
    std::size_t size = std::size_t{req.tp_block_size} * req.tp_block_nr;
    auto* ring = static_cast<std::uint8_t*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (ring == MAP_FAILED) { std::perror("mmap"); std::exit(1); }
    result r;
    clock_type::time_point first{}, last{};
    unsigned slot = 0;
    for (;;) {
        auto* hdr = reinterpret_cast<tpacket2_hdr*>(ring + std::size_t{slot} * req.tp_frame_size);
        if (!(hdr->tp_status & TP_STATUS_USER)) {
            pollfd p{fd, POLLIN | POLLERR, 0};
            if (poll(&p, 1, 500) <= 0) break;
            continue;
        }
        if (r.frames == 0) first = clock_type::now();
        last = clock_type::now();
        r.bytes += hdr->tp_snaplen;
        ++r.frames;
        __atomic_store_n(&hdr->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        slot = (slot + 1) % req.tp_frame_nr;
    }
    r.seconds = std::chrono::duration<double>(last - first).count();
    munmap(ring, size);
    return r;
}

void usage(const char* argv0) {
    std::printf(
        "usage: %s [--mode mmsg|ring|mixed|all] [--frame BYTES] [-D SECONDS] [--json]\n"
        "Blasts raw Ethernet frames across a veth pair between two network namespaces it\n"
        "makes (root), and prints what arrived: the path's upper bound for vmrdma.\n"
        "  --mode     mmsg: sendmmsg/recvmmsg; ring: PACKET_TX_RING/PACKET_RX_RING;\n"
        "             mixed: sendmmsg + V3 PACKET_RX_RING; mixed2: sendmmsg + V2 RX ring;\n"
        "             all: each in turn (default mmsg)\n"
        "  --frame    frame size on the wire incl. the 14-byte header (default 9014; MTU+14)\n"
        "  -D         seconds to send (default 2)\n",
        argv0);
}

// Runs one mode; returns {sent, received} measured in the two children.
std::pair<result, result> run_mode(const options& o) {
    unsigned mtu = static_cast<unsigned>(o.frame - 14);
    if (mtu < 1500) mtu = 1500;
    vmrdma::examples::netns_pair net("vmrdma-raw", mtu);
    int pipes[2][2];
    if (pipe(pipes[0]) != 0 || pipe(pipes[1]) != 0) std::exit(1);
    pid_t rx = fork();
    if (rx == 0) {
        vmrdma::examples::netns_pair::enter(net.a());
        int fd = open_socket(net.a().ifname);
        if (write(pipes[1][1], "r", 1) != 1) _exit(1);
        result r = o.mode == "mmsg"    ? receive_mmsg(fd, o)
                   : o.mode == "mixed2" ? receive_ring_v2(fd, o)
                                        : receive_ring(fd, o);
        if (write(pipes[0][1], &r, sizeof r) != sizeof r) _exit(1);
        _exit(0);
    }
    char c;
    if (read(pipes[1][0], &c, 1) != 1) std::exit(1);
    pid_t tx = fork();
    if (tx == 0) {
        vmrdma::examples::netns_pair::enter(net.b());
        int fd = open_socket(net.b().ifname);
        std::uint8_t dst[6];
        std::sscanf(net.a().mac.c_str(), "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dst[0], &dst[1], &dst[2],
                    &dst[3], &dst[4], &dst[5]);
        result s = o.mode == "ring" ? send_ring(fd, o, dst) : send_mmsg(fd, o, dst);
        if (write(pipes[0][1], &s, sizeof s) != sizeof s) _exit(1);
        _exit(0);
    }
    result sent{}, received{};
    int status;
    waitpid(tx, &status, 0);
    if (read(pipes[0][0], &sent, sizeof sent) != sizeof sent) std::exit(1);
    waitpid(rx, &status, 0);
    if (read(pipes[0][0], &received, sizeof received) != sizeof received) std::exit(1);
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
        else if (a == "--mode") o.mode = value();
        else if (a == "--frame") o.frame = std::strtoul(value().c_str(), nullptr, 10);
        else if (a == "-D") o.seconds = std::strtod(value().c_str(), nullptr);
        else if (a == "--json") o.json = true;
        else { std::fprintf(stderr, "rawframe: unknown option %s (try --help)\n", a.c_str()); return 2; }
    }
    if (o.frame < 60 || o.frame > 65535 + 14 || o.seconds <= 0 ||
        (o.mode != "mmsg" && o.mode != "ring" && o.mode != "mixed" && o.mode != "mixed2" &&
         o.mode != "all")) {
        std::fprintf(stderr, "rawframe: bad arguments (try --help)\n");
        return 2;
    }
    if (geteuid() != 0) { std::fprintf(stderr, "rawframe: needs root\n"); return 1; }
    std::vector<std::string> modes = o.mode == "all" ? std::vector<std::string>{"mmsg", "ring", "mixed", "mixed2"}
                                                     : std::vector<std::string>{o.mode};
    if (!o.json) std::printf("%-5s %7s %12s %12s %10s %10s\n", "mode", "frame", "sent/s", "arrived/s", "Gbit/s", "GiB/s");
    for (const auto& m : modes) {
        options one = o;
        one.mode = m;
        std::fprintf(stderr, "rawframe: %s, %zu-byte frames for %.1f s...\n", m.c_str(), o.frame, o.seconds);
        auto [sent, got] = run_mode(one);
        double sent_rate = sent.frames / sent.seconds;
        double rate = got.seconds > 0 ? got.frames / got.seconds : 0;
        double gbps = got.seconds > 0 ? got.bytes * 8 / got.seconds / 1e9 : 0;
        double gibs = got.seconds > 0 ? got.bytes / got.seconds / (1u << 30) : 0;
        if (o.json)
            std::printf("{\"mode\":\"%s\",\"frame\":%zu,\"sent_per_s\":%.0f,\"arrived_per_s\":%.0f,\"gbit_s\":%.3f,\"gib_s\":%.3f}\n",
                        m.c_str(), o.frame, sent_rate, rate, gbps, gibs);
        else
            std::printf("%-5s %7zu %12.0f %12.0f %10.2f %10.3f\n", m.c_str(), o.frame, sent_rate, rate, gbps, gibs);
    }
    return 0;
}
