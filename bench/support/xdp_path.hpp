// AF_XDP as a raw-frame path (issue 12: is it faster than AF_PACKET here?).
// A sender that transmits frames from a UMEM through an XDP socket, and a
// receiver whose XDP program redirects frames of raw_ethertype into its
// XDP socket, both through Debian's libxdp (xsk_*) and libbpf.
//
// On veth both are copy mode (veth has no zero-copy AF_XDP): transmit builds
// an skb from the UMEM and hands it to the peer, receive copies each frame
// into the UMEM. Frames larger than a UMEM chunk (4 KiB) travel as several
// descriptors (multi-buffer AF_XDP, XDP_USE_SG, Linux 6.6+), and the
// receiver's program declares XDP frags support: veth refuses a native XDP
// program without it once the MTU exceeds a page. libxdp 1.3's default
// program does not, so the receiver loads a small program of its own.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "bench/support/raw_path.hpp"

namespace vmrdma::bench {

enum class xdp_attach { native, skb };  // XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE

// Sends frames of o.frame bytes to dst from ifname for o.seconds; counts the
// frames whose transmission completed. Throws std::runtime_error on failure.
raw_counts xdp_blast(const std::string& ifname, const raw_options& o, const std::uint8_t dst[6]);

// Attaches the redirect program to ifname in `attach` mode and counts the
// frames of raw_ethertype that arrive until 500 ms pass without one (the
// `ready` is called once the socket can receive). Detaches on return.
// Throws std::runtime_error on failure, saying what the kernel refused.
raw_counts xdp_sink(const std::string& ifname, xdp_attach attach, const std::function<void()>& ready);

}  // namespace vmrdma::bench
