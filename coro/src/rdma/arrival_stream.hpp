// arrival_stream: whether the frames arriving on an eth: port are a stream
// (messages back to back) or a message on its own, from the kernel's
// arrival stamps. The engine host gathers a message's frames in its loop's
// next wait (event_loop::expect_more) only in a stream: a receiver that
// takes frames from the mapped ring can only gather by sleeping, and a
// sleep is a timer, which on a VM wakes late (a 20 us gathering wait took
// 37-50 us here), so a lone message's frames are better taken as they come, while a
// stream's gain most from being taken in batches (docs/eth-transport.md,
// "Receive").
#pragma once

#include <cstdint>

namespace vmrdma::detail {

class arrival_stream {
public:
    // A message that begins within this of the end of the one before it
    // continues a stream: a frame time or two on any link, far less than a
    // round trip (a lone message's next one waits for its answer).
    static constexpr std::uint64_t max_gap_ns = 10'000;

    // A message whose frames have been arriving for this long is a stream of
    // its own: its frames are the bulk of a long transfer, and its end, one
    // gathering wait late at most, is a small part of its time.
    static constexpr std::uint64_t long_message_ns = 50'000;

    // A frame of whole messages (a bundle, or one message in one frame)
    // lets the next wait gather only if they are this large on average (the
    // frame's length, headers included, over the messages in it): a
    // stream of small ones is bound by how many are in flight, each waiting
    // for its ACK, and a gathering wait only delays those ACKs (64-byte
    // writes through vmrdmad lost a quarter of their rate); a stream of
    // large ones is bound by the sending core, which pays for every wake-up
    // of the receiver (4 KiB writes gained 12-27 %: docs/benchmarks.md).
    static constexpr std::uint32_t min_whole_message_bytes = 1024;

    // One frame taken, arrived at arrival_ns (the kernel's stamp, in
    // CLOCK_REALTIME: a step of that clock back makes the next message no
    // stream, a step forward makes the one under way a long one), the engine
    // in the middle of a message before and after it
    // (vr_engine_rx_mid_message), how many data frames it carried (more
    // than one in a bundle; none in an ACK or a handshake frame, which
    // neither begin nor end a message, so a sender's stream of ACKs is no
    // stream of messages and its wait for the ACK that opens its window is
    // never stretched) and its length. A data frame with no message under
    // way before it begins one, which it may also end.
    void frame(std::uint64_t arrival_ns, bool mid_before, bool mid_after, std::uint32_t data_frames,
               std::uint32_t bytes) noexcept {
        if (data_frames == 0) return;
        if (!mid_before) {  // a message begins
            message_start_ns_ = arrival_ns;
            flowing_ = seen_end_ && arrival_ns >= last_end_ns_ && arrival_ns - last_end_ns_ <= max_gap_ns;
        } else if (mid_after && arrival_ns >= message_start_ns_ + long_message_ns) {
            flowing_ = true;
        }
        if (!mid_after) {  // a message ends
            last_end_ns_ = arrival_ns;
            seen_end_ = true;
        }
        large_whole_ = !mid_before && !mid_after && bytes / data_frames >= min_whole_message_bytes;
    }

    // Whether the last message begun continues a stream, or is long.
    bool flowing() const noexcept { return flowing_; }
    // Whether the last data frame held only whole messages, of at least
    // min_whole_message_bytes each: in a stream, the next one is as near as
    // a long message's next frame. (After a many-frame message's last frame
    // the host does not gather: measured, that cost 1 MiB writes 2-12 %.)
    bool large_whole_messages() const noexcept { return large_whole_; }

private:
    std::uint64_t message_start_ns_ = 0;
    std::uint64_t last_end_ns_ = 0;
    bool seen_end_ = false;
    bool flowing_ = false;
    bool large_whole_ = false;
};

}  // namespace vmrdma::detail
