#include "bench/support/raw_path.hpp"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace vmrdma::bench {

namespace {
int open_socket_impl(const std::string& ifname);
constexpr std::uint16_t ethertype = raw_ethertype;
constexpr int batch = 64;



}  // namespace

int raw_open(const std::string& ifname) {
    return open_socket_impl(ifname);
}

namespace {

int open_socket_impl(const std::string& ifname) {
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
    if (f.size() < 14) {
        std::fprintf(stderr, "raw frames: a frame of %zu bytes has no room for its Ethernet header\n", f.size());
        std::exit(2);
    }
    std::memcpy(f.data(), dst, 6);
    std::memset(f.data() + 6, 0x02, 6);
    f[12] = ethertype >> 8;
    f[13] = ethertype & 0xff;
    for (std::size_t i = 14; i < f.size(); ++i) f[i] = static_cast<std::uint8_t>(i);
}

using clock_type = std::chrono::steady_clock;

// The payload slices of a message, in order, again and again: where the next
// frame's payload comes from when raw_options::message is set.
class message_slices {
public:
    message_slices(std::size_t message, std::size_t payload) : bytes_(message), payload_(payload) {
        for (std::size_t i = 0; i < bytes_.size(); ++i) bytes_[i] = static_cast<std::uint8_t>(i * 7);
    }
    iovec next() {
        std::size_t n = std::min(payload_, bytes_.size() - offset_);
        iovec v{bytes_.data() + offset_, n};
        offset_ = offset_ + n == bytes_.size() ? 0 : offset_ + n;
        return v;
    }

private:
    std::vector<std::uint8_t> bytes_;
    std::size_t payload_;
    std::size_t offset_ = 0;
};

bool walks_a_message(const raw_options& o) { return o.message > o.frame - 14; }

raw_counts send_mmsg(int fd, const raw_options& o, const std::uint8_t dst[6]) {
    std::vector<std::uint8_t> frame(o.frame);
    fill_frame(frame, dst);
    const bool walk = walks_a_message(o);
    message_slices slices(walk ? o.message : 0, o.frame - 14);
    // Two iovecs per frame when walking a message: its header, then its slice.
    std::vector<iovec> iov(2 * batch);
    std::vector<mmsghdr> msgs(batch);
    for (int i = 0; i < batch; ++i) {
        msgs[i].msg_hdr = {};
        msgs[i].msg_hdr.msg_iov = &iov[2 * i];
        if (walk) {
            iov[2 * i] = {frame.data(), 14};
            msgs[i].msg_hdr.msg_iovlen = 2;
        } else {
            iov[2 * i] = {frame.data(), frame.size()};
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
    }
    raw_counts r;
    int filled = 0;  // frames at the front of msgs whose slice is already set
    auto t0 = clock_type::now();
    auto end = t0 + std::chrono::duration<double>(o.seconds);
    while (clock_type::now() < end) {
        if (walk)
            for (; filled < batch; ++filled) iov[2 * filled + 1] = slices.next();
        int n = sendmmsg(fd, msgs.data(), batch, 0);
        if (n <= 0) continue;
        r.frames += static_cast<std::uint64_t>(n);
        for (int i = 0; i < n; ++i) r.bytes += walk ? 14 + iov[2 * i + 1].iov_len : frame.size();
        if (!walk) continue;
        // Slices not sent this time go first next time, so that the message's
        // bytes leave in order.
        for (int i = n; i < batch; ++i) iov[2 * (i - n) + 1] = iov[2 * i + 1];
        filled = batch - n;
    }
    r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    return r;
}

raw_counts send_ring(int fd, const raw_options& o, const std::uint8_t dst[6]) {
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
    const bool walk = walks_a_message(o);
    message_slices slices(walk ? o.message : 0, o.frame - 14);
    raw_counts r;
    unsigned slot = 0;
    auto t0 = clock_type::now();
    auto end = t0 + std::chrono::duration<double>(o.seconds);
    while (clock_type::now() < end) {
        int queued = 0;
        for (int i = 0; i < batch; ++i) {
            auto* hdr = reinterpret_cast<tpacket2_hdr*>(ring + std::size_t{slot} * req.tp_frame_size);
            if (hdr->tp_status != TP_STATUS_AVAILABLE) break;
            auto* data = reinterpret_cast<std::uint8_t*>(hdr) + TPACKET2_HDRLEN - sizeof(sockaddr_ll);
            std::size_t len = frame.size();
            if (walk) {
                iovec slice = slices.next();
                std::memcpy(data, frame.data(), 14);
                std::memcpy(data + 14, slice.iov_base, slice.iov_len);
                len = 14 + slice.iov_len;
            } else {
                std::memcpy(data, frame.data(), len);
            }
            hdr->tp_len = static_cast<unsigned>(len);
            hdr->tp_status = TP_STATUS_SEND_REQUEST;
            r.bytes += len;
            slot = (slot + 1) % req.tp_frame_nr;
            ++queued;
        }
        // The ring's slots are handed over whatever send says: they leave.
        send(fd, nullptr, 0, 0);
        r.frames += static_cast<std::uint64_t>(queued);
    }
    r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    munmap(ring, size);
    return r;
}

// Receives until `idle` passes without a frame; returns what arrived.
raw_counts receive_mmsg(int fd, const raw_options& o) {
    std::vector<std::uint8_t> bufs(batch * (o.frame + 64));
    std::vector<iovec> iov(batch);
    std::vector<mmsghdr> msgs(batch);
    raw_counts r;
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

raw_counts receive_ring(int fd, const raw_options& o) {
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
    raw_counts r;
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
raw_counts receive_ring_v2(int fd, const raw_options& o) {
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
    raw_counts r;
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


// One frame into buf (at most cap bytes): spins with MSG_DONTWAIT for
// busy_poll_us, then blocks up to timeout_ms.  The frame's length, or -1.
ssize_t receive_one(int fd, std::uint8_t* buf, std::size_t cap, unsigned busy_poll_us, int timeout_ms) {
    auto spin_end = clock_type::now() + std::chrono::microseconds(busy_poll_us);
    do {
        ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
        if (n >= 0) return n;
    } while (clock_type::now() < spin_end);
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return -1;
    return recv(fd, buf, cap, MSG_DONTWAIT);
}

}  // namespace

raw_rtt raw_pingpong(int fd, const raw_options& o, const std::uint8_t dst[6], unsigned frames,
                     unsigned busy_poll_us) {
    std::vector<std::uint8_t> frame(o.frame), in(o.frame + 64);
    fill_frame(frame, dst);
    sockaddr_ll self{};  // our own MAC as the source, so that the echo finds us
    socklen_t len = sizeof self;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&self), &len) == 0 && self.sll_halen == 6)
        std::memcpy(frame.data() + 6, self.sll_addr, 6);
    raw_rtt r;
    auto end = clock_type::now() + std::chrono::duration<double>(o.seconds);
    while (clock_type::now() < end) {
        auto t0 = clock_type::now();
        for (unsigned i = 0; i < frames; ++i)
            if (send(fd, frame.data(), frame.size(), 0) < 0) return r;
        for (unsigned i = 0; i < frames; ++i)
            if (receive_one(fd, in.data(), in.size(), busy_poll_us, 1000) < 0) return r;  // lost: stop
        r.us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
    }
    return r;
}

void raw_echo(int fd, const raw_options& o, unsigned busy_poll_us) {
    std::vector<std::uint8_t> buf(o.frame + 64);
    for (;;) {
        ssize_t n = receive_one(fd, buf.data(), buf.size(), busy_poll_us, 500);
        if (n < 14) return;
        std::uint8_t mac[6];  // back to where it came from
        std::memcpy(mac, buf.data() + 6, 6);
        std::memcpy(buf.data() + 6, buf.data(), 6);
        std::memcpy(buf.data(), mac, 6);
        if (send(fd, buf.data(), static_cast<std::size_t>(n), 0) < 0) return;
    }
}

raw_counts raw_blast(int fd, const raw_options& o, const std::uint8_t dst[6]) {
    return o.mode == "ring" ? send_ring(fd, o, dst) : send_mmsg(fd, o, dst);
}

raw_counts raw_sink(int fd, const raw_options& o) {
    if (o.mode == "mmsg") return receive_mmsg(fd, o);
    if (o.mode == "mixed2") return receive_ring_v2(fd, o);
    return receive_ring(fd, o);
}

}  // namespace vmrdma::bench
