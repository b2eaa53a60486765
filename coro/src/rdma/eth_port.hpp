// eth_port: the raw-Ethernet side of the eth: transport. One AF_PACKET
// socket bound to an interface and our EtherType; frames leave in batches
// through sendmmsg(2), gathered straight from registered memory (the header
// is the only thing copied), and arrive in a mapped receive ring (or, where
// the kernel refuses it or a host asks, through recvmmsg(2) into MTU-sized
// buffers), from which the engine places payload (the one copy after the
// kernel's). docs/eth-transport.md says why AF_PACKET and not AF_XDP.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "vmrdma/rdma.hpp"

extern "C" {
#include "proto/bundle.h"
#include "proto/engine.h"
}

namespace vmrdma::detail {

class eth_port {
public:
    // Throws vmrdma::error: permission_denied without CAP_NET_RAW,
    // invalid_argument for an unknown interface.
    eth_port(std::string_view ifname, std::uint16_t ethertype);
    ~eth_port();
    eth_port(const eth_port&) = delete;
    eth_port& operator=(const eth_port&) = delete;

    int fd() const noexcept { return fd_; }
    const mac_address& mac() const noexcept { return mac_; }
    std::uint32_t mtu() const noexcept { return mtu_; }
    const std::string& name() const noexcept { return name_; }

    // Adds a frame to the transmit batch; false when the batch is full
    // (call flush() first). The header is copied, fragments are referenced;
    // a small frame (at most half the MTU) is copied whole into a bundle
    // (proto/wire.h) when bundling is on and the frame before it was small
    // too and bound for the same peer: one frame on the wire for many.
    bool queue(const vr_frame& frame);
    void set_bundling(bool on) noexcept { bundling_ = on; }
    // Bundles the kernel took (a refused one is counted in tx_dropped()).
    std::uint64_t bundles_sent() const noexcept { return bundles_sent_; }
    // Sends the batch. Frames the kernel refused are counted as dropped:
    // the protocol recovers them as it recovers from loss.
    void flush();
    std::size_t queued() const noexcept { return tx_count_; }
    // Frames per batch, both ways: as many as fit in cache_budget bytes
    // (at least 4, at most 64), so that a frame's payload is still in cache
    // when the next pass over it (CRC, the kernel's copy, placement) runs.
    std::size_t batch_frames() const noexcept { return batch_frames_; }
    std::uint64_t tx_dropped() const noexcept { return tx_dropped_; }

    // Receives everything the socket holds now, calling on_frame(bytes,
    // length, arrival) for each (the bytes are valid during the call only;
    // arrival: the kernel's stamp in ns, CLOCK_REALTIME, from the ring; 0
    // where recvmmsg took the frame).
    using frame_fn = std::function<void(const std::byte*, std::uint32_t, std::uint64_t)>;
    void drain(const frame_fn& on_frame);
    // From now on frames arrive in a mapped TPACKET_V2 ring of about
    // budget_bytes, and of at least min_frames slots (one slot per frame,
    // handed over as it arrives), so that
    // drain() finds none waiting with a memory read instead of a recvmmsg(2)
    // call, and the kernel's copy of each frame is made as it arrives
    // (docs/eth-transport.md, "Receive"). False, and recvmmsg stays, if
    // the kernel refuses the ring.
    bool use_rx_ring(std::size_t budget_bytes, std::size_t min_frames);
    std::uint64_t rx_ring_frames() const noexcept { return rx_ring_taken_; }

private:
    static constexpr std::size_t batch = 64;
    static constexpr std::size_t cache_budget = 256 << 10;
    std::size_t batch_frames_ = batch;
    // Both headers, an auth block and a handshake's private data (a control
    // frame carries it in its header part).
    static constexpr std::size_t max_header = VR_ETH_HLEN + VR_HDR_LEN + VR_AUTH_BLOCK_LEN + VR_PRIVATE_DATA_MAX;
    int fd_ = -1;
    std::string name_;
    mac_address mac_;
    std::uint32_t mtu_ = 0;
    std::size_t frame_bytes_ = 0;  // Ethernet header + MTU: a receive buffer, a bundle slot
    // transmit batch
    std::vector<std::byte> tx_headers_;
    std::vector<iovec> tx_iov_;
    std::vector<mmsghdr> tx_msgs_;
    std::size_t tx_count_ = 0;
    std::vector<std::uint16_t> tx_frames_;  // frames in each queued message (a bundle's count)
    std::uint64_t tx_dropped_ = 0;           // frames, not messages
    // bundles (proto/bundle.h encodes them): one MTU-sized buffer per batch
    // slot; open_ is the slot of the bundle that small frames still join
    void close_bundle() noexcept;
    bool bundling_ = true;
    std::vector<std::byte> tx_bundles_;
    static constexpr std::size_t none = SIZE_MAX;
    std::size_t open_ = none;
    vr_bundle_writer bundle_{};
    std::uint64_t bundles_sent_ = 0;
    // receive ring (use_rx_ring): rx_ring_slots_ slots of rx_ring_slot_ bytes,
    // rx_ring_per_block_ of them at the start of each rx_ring_block_ bytes
    void drain_ring(const frame_fn& on_frame);
    std::byte* rx_ring_ = nullptr;
    std::size_t rx_ring_slot_ = 0, rx_ring_slots_ = 0, rx_ring_next_ = 0;
    std::size_t rx_ring_block_ = 0, rx_ring_per_block_ = 1;
    std::uint64_t rx_ring_taken_ = 0;  // frames handed to drain()'s caller
    // receive batch
    std::vector<std::byte> rx_buffers_;
    std::vector<iovec> rx_iov_;
    std::vector<mmsghdr> rx_msgs_;
};

}  // namespace vmrdma::detail
