#include "eth_port.hpp"

#include <arpa/inet.h>
#include <net/if_arp.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "vmrdma/error.hpp"

namespace vmrdma::detail {

namespace {
[[noreturn]] void fail(int err, const std::string& what) {
    if (err == EPERM || err == EACCES)
        throw error(errc::permission_denied,
                    what + ": raw Ethernet needs CAP_NET_RAW (run as root, or "
                           "`setcap cap_net_raw+ep` on the program)");
    throw_errno(-err, what);
}
}  // namespace

eth_port::eth_port(std::string_view ifname, std::uint16_t ethertype) : name_(ifname) {
    if (name_.empty() || name_.size() >= IFNAMSIZ)
        throw error(errc::invalid_argument, "eth: interface name '" + name_ + "' is not valid");
    unsigned ifindex = if_nametoindex(name_.c_str());
    if (ifindex == 0)
        throw error(errc::invalid_argument,
                    "eth:" + name_ + ": no such network interface in this network namespace");
    fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ethertype));
    if (fd_ < 0) fail(errno, "eth:" + name_ + ": cannot open a raw socket");
    try {
        ifreq ifr{};
        std::memcpy(ifr.ifr_name, name_.c_str(), name_.size() + 1);
        if (ioctl(fd_, SIOCGIFFLAGS, &ifr) < 0) fail(errno, "eth:" + name_ + ": SIOCGIFFLAGS");
        // Both would "work" and then reach no peer: say so at open.
        if (ifr.ifr_flags & IFF_LOOPBACK)
            throw error(errc::invalid_argument, "eth:" + name_ +
                                                    " is a loopback interface: vmrdma needs an Ethernet "
                                                    "interface with a MAC address (a NIC, a veth, a bridge port)");
        if (!(ifr.ifr_flags & IFF_UP))
            throw error(errc::invalid_argument,
                        "eth:" + name_ + " is down: bring it up first (ip link set " + name_ + " up)");
        if (ioctl(fd_, SIOCGIFHWADDR, &ifr) < 0) fail(errno, "eth:" + name_ + ": SIOCGIFHWADDR");
        if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER)
            throw error(errc::invalid_argument, "eth:" + name_ + " is not an Ethernet interface");
        std::memcpy(mac_.bytes.data(), ifr.ifr_hwaddr.sa_data, 6);
        if (ioctl(fd_, SIOCGIFMTU, &ifr) < 0) fail(errno, "eth:" + name_ + ": SIOCGIFMTU");
        mtu_ = static_cast<std::uint32_t>(ifr.ifr_mtu);
        if (mtu_ < VR_MTU_MIN)
            throw error(errc::invalid_argument, "eth:" + name_ + ": MTU " + std::to_string(mtu_) +
                                                    " is below the minimum of 1500");
        if (mtu_ > VR_MTU_MAX) mtu_ = VR_MTU_MAX;

        sockaddr_ll addr{};
        addr.sll_family = AF_PACKET;
        addr.sll_protocol = htons(ethertype);
        addr.sll_ifindex = static_cast<int>(ifindex);
        if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
            fail(errno, "eth:" + name_ + ": bind");
        int one = 1;
        // Our own transmissions are no business of our receive path.
        setsockopt(fd_, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
        int bytes = 8 << 20;
        // Bigger socket buffers absorb bursts; FORCE needs CAP_NET_ADMIN.
        if (setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) < 0)
            setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
        if (setsockopt(fd_, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) < 0)
            setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    } catch (...) {
        close(fd_);
        throw;
    }

    constexpr std::size_t iov_per_frame = 1 + VR_MAX_FRAGS;
    tx_headers_.resize(batch * max_header);
    tx_iov_.resize(batch * iov_per_frame);
    tx_msgs_.resize(batch);
    for (std::size_t i = 0; i < batch; ++i) {
        tx_msgs_[i].msg_hdr = {};
        tx_msgs_[i].msg_hdr.msg_iov = &tx_iov_[i * iov_per_frame];
    }
    frame_bytes_ = VR_ETH_HLEN + mtu_;
    batch_frames_ = std::clamp<std::size_t>(cache_budget / frame_bytes_, 4, batch);
    tx_bundles_.resize(batch_frames_ * frame_bytes_);
    tx_frames_.resize(batch_frames_);
    // An entry's length is 16 bits: even half the largest frame fits.
    static_assert((VR_ETH_HLEN + VR_MTU_MAX) / 2 <= UINT16_MAX);
    rx_buffers_.resize(batch * frame_bytes_);
    rx_iov_.resize(batch);
    rx_msgs_.resize(batch);
}

eth_port::~eth_port() {
    if (rx_ring_) munmap(rx_ring_, rx_ring_block_ * (rx_ring_slots_ / rx_ring_per_block_));
    close(fd_);
}

// Ends the open bundle: its slot sends what the encoder names (a bundle
// of one goes out as the plain frame it holds).
void eth_port::close_bundle() noexcept {
    if (open_ == none) return;
    vr_bundle_span span{};
    if (vr_bundle_close(&bundle_, &span)) {
        auto* buffer = reinterpret_cast<std::uint8_t*>(&tx_bundles_[open_ * frame_bytes_]);
        tx_msgs_[open_].msg_hdr.msg_iov[0] = {buffer + span.off, span.len};
        tx_msgs_[open_].msg_hdr.msg_iovlen = 1;
        tx_frames_[open_] = span.count;
    }
    open_ = none;
}

bool eth_port::queue(const vr_frame& frame) {
    if (frame.hdr_len > max_header || frame.hdr_len < VR_ETH_HLEN) {
        ++tx_dropped_;  // cannot happen with this engine; never overrun the slot
        return true;
    }
    const auto cap = static_cast<std::uint32_t>(frame_bytes_);
    if (bundling_ && vr_bundle_wanted(cap, frame.len)) {
        if (!vr_bundle_joins(&bundle_, &frame)) {
            close_bundle();
            if (tx_count_ == batch_frames_) return false;
            open_ = tx_count_++;
            auto* slot = reinterpret_cast<std::uint8_t*>(&tx_bundles_[open_ * frame_bytes_]);
            vr_bundle_open(&bundle_, slot, cap, &frame);
        }
        // Entries are copied whole: the frame's payload is small by
        // definition. Plain pointers cannot fail to copy.
        vr_bundle_append(&bundle_, &frame, &vr_ptr_mem_ops);
        return true;
    }
    // A large frame ends the bundle before it: frames leave in engine order.
    close_bundle();
    if (tx_count_ == batch_frames_) return false;
    std::byte* hdr = &tx_headers_[tx_count_ * max_header];
    std::memcpy(hdr, frame.hdr, frame.hdr_len);
    msghdr& m = tx_msgs_[tx_count_].msg_hdr;
    iovec* iov = m.msg_iov;
    iov[0] = {hdr, frame.hdr_len};
    std::size_t n = 1;
    for (std::uint32_t i = 0; i < frame.nfrags; ++i) {
        const vr_frag& f = frame.frag[i];
        if (f.len == 0) continue;
        iov[n++] = {static_cast<std::byte*>(f.mem) + f.off, f.len};
    }
    m.msg_iovlen = n;
    tx_frames_[tx_count_] = 1;
    ++tx_count_;
    return true;
}

void eth_port::flush() {
    close_bundle();
    std::size_t sent = 0;
    while (sent < tx_count_) {
        int n = sendmmsg(fd_, &tx_msgs_[sent], static_cast<unsigned>(tx_count_ - sent), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            // ENOBUFS and friends: the rest of the batch is lost on the
            // floor, exactly as if the wire had dropped it.
            for (std::size_t i = sent; i < tx_count_; ++i) tx_dropped_ += tx_frames_[i];
            break;
        }
        for (std::size_t i = sent; i < sent + static_cast<std::size_t>(n); ++i)
            if (tx_frames_[i] > 1) ++bundles_sent_;
        sent += static_cast<std::size_t>(n);
    }
    tx_count_ = 0;
}

bool eth_port::use_rx_ring(std::size_t ring_budget, std::size_t min_frames) {
    if (rx_ring_) return true;
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    // A slot: the kernel's tpacket2_hdr and sockaddr_ll, alignment, then the
    // frame; whole pages. The kernel allocates each block as a power of two
    // of pages, so a block is one, holding at least four slots: a block of
    // one 12 KiB slot (MTU 9000) took 16 KiB, one of 68 KiB (MTU 65535)
    // 128 KiB; four or more slots to a block leave at most a slot's worth.
    const std::size_t slot = (TPACKET_ALIGN(TPACKET2_HDRLEN) + 64 + frame_bytes_ + page - 1) / page * page;
    std::size_t block = page;
    while (block < 4 * slot) block *= 2;
    const std::size_t per_block = block / slot;
    const std::size_t blocks = std::max((min_frames + per_block - 1) / per_block, ring_budget / block);
    const std::size_t frames = blocks * per_block;
    int version = TPACKET_V2;
    if (setsockopt(fd_, SOL_PACKET, PACKET_VERSION, &version, sizeof version) != 0) return false;
    tpacket_req req{};
    req.tp_block_size = static_cast<unsigned>(block);
    req.tp_block_nr = static_cast<unsigned>(blocks);
    req.tp_frame_size = static_cast<unsigned>(slot);
    req.tp_frame_nr = static_cast<unsigned>(frames);
    if (setsockopt(fd_, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0) return false;
    void* ring = mmap(nullptr, block * blocks, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (ring == MAP_FAILED) {
        req = {};  // no ring after all: frames go to the socket's queue again
        setsockopt(fd_, SOL_PACKET, PACKET_RX_RING, &req, sizeof req);
        return false;
    }
    rx_ring_ = static_cast<std::byte*>(ring);
    rx_ring_slot_ = slot;
    rx_ring_block_ = block;
    rx_ring_per_block_ = per_block;
    rx_ring_slots_ = frames;
    // Frames queued before the ring stay in the socket's queue, where
    // drain() no longer looks and which keeps poll(2) readable: drop them
    // (the protocol recovers them as it recovers from loss).
    std::byte scratch[1];
    while (recv(fd_, scratch, sizeof scratch, MSG_DONTWAIT | MSG_TRUNC) >= 0) {
    }
    return true;
}

void eth_port::drain_ring(const frame_fn& on_frame) {
    for (std::size_t n = 0; n < rx_ring_slots_; ++n) {
        // Where the kernel puts frame n (packet_lookup_frame): slots fill a
        // block from its start; what is left at its end is unused.
        auto* slot = rx_ring_ + rx_ring_next_ / rx_ring_per_block_ * rx_ring_block_ +
                     rx_ring_next_ % rx_ring_per_block_ * rx_ring_slot_;
        auto* h = reinterpret_cast<tpacket2_hdr*>(slot);
        // The kernel hands a slot over by setting TP_STATUS_USER last.
        if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) return;
        if (h->tp_snaplen == h->tp_len) {  // else larger than our MTU: dropped, as recvmmsg's MSG_TRUNC
            ++rx_ring_taken_;
            on_frame(slot + h->tp_mac, h->tp_snaplen, std::uint64_t{h->tp_sec} * 1'000'000'000u + h->tp_nsec);
        }
        __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        rx_ring_next_ = (rx_ring_next_ + 1) % rx_ring_slots_;
    }
}

void eth_port::drain(const frame_fn& on_frame) {
    if (rx_ring_) {
        drain_ring(on_frame);
        return;
    }
    for (;;) {
        for (std::size_t i = 0; i < batch_frames_; ++i) {
            rx_iov_[i] = {&rx_buffers_[i * frame_bytes_], frame_bytes_};
            rx_msgs_[i].msg_hdr = {};
            rx_msgs_[i].msg_hdr.msg_iov = &rx_iov_[i];
            rx_msgs_[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd_, rx_msgs_.data(), static_cast<unsigned>(batch_frames_), MSG_DONTWAIT, nullptr);
        if (n <= 0) return;  // EAGAIN: drained (errors surface as lost frames)
        for (int i = 0; i < n; ++i) {
            if (rx_msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) continue;  // larger than our MTU
            on_frame(&rx_buffers_[static_cast<std::size_t>(i) * frame_bytes_], rx_msgs_[i].msg_len, 0);
        }
        if (static_cast<std::size_t>(n) < batch_frames_) return;
    }
}

}  // namespace vmrdma::detail
