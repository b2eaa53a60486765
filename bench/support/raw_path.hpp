// Raw-frame paths shared by bench/rawframe and vmrdma-bench: blast frames of
// one size at a peer with one AF_PACKET strategy, and count what arrives.
// No protocol and no copies beyond the kernel's: the path's upper bound.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vmrdma::bench {

constexpr std::uint16_t raw_ethertype = 0x88B6;  // not vmrdma's: nothing else listens

struct raw_options {
    std::string mode = "mmsg";  // mmsg, ring, mixed, mixed2 (see rawframe --help)
    std::size_t frame = 9014;   // bytes on the wire, Ethernet header included
    double seconds = 2.0;
    // Bytes of the message the frames carry. 0: every frame is sent from one
    // frame-sized buffer, the same bytes again and again (hot in the cache).
    // More than a frame's payload: the payloads are consecutive slices of one
    // message-sized buffer, wrapping at its end, as a protocol reads a
    // message's bytes (the last slice of a message may be shorter), with the
    // 14-byte header gathered from a buffer of its own.
    std::size_t message = 0;
};

struct raw_counts {
    std::uint64_t frames = 0, bytes = 0;
    double seconds = 0;
};

// An AF_PACKET socket bound to ifname and raw_ethertype; exits on failure.
int raw_open(const std::string& ifname);
// Sends for o.seconds with the mode's transmit strategy.
raw_counts raw_blast(int fd, const raw_options& o, const std::uint8_t dst[6]);
// Receives with the mode's receive strategy until 500 ms pass without a frame.
raw_counts raw_sink(int fd, const raw_options& o);

// Round trips: the client sends `frames` frames of o.frame bytes and waits
// for as many back, one send(2) and recv(2) per frame, spinning with
// MSG_DONTWAIT for busy_poll_us before it blocks (as vmrdma-bench --busy-poll
// has vmrdma and TCP do); the echo side answers each frame it gets.  The
// fewest system calls a round trip of raw frames can take: the bound under
// any protocol's round trip on the path.
struct raw_rtt {
    std::vector<double> us;  // each round trip, microseconds
};
raw_rtt raw_pingpong(int fd, const raw_options& o, const std::uint8_t dst[6], unsigned frames,
                     unsigned busy_poll_us);
// Echoes frames to src-of-frame until 500 ms pass without one.
void raw_echo(int fd, const raw_options& o, unsigned busy_poll_us);

}  // namespace vmrdma::bench
