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

    // One frame taken, arrived at arrival_ns (the kernel's stamp, in
    // CLOCK_REALTIME: a step of that clock back makes the next message no
    // stream, a step forward makes the one under way a long one), the engine
    // in the middle of a message before and after it
    // (vr_engine_rx_mid_message).
    void frame(std::uint64_t arrival_ns, bool mid_before, bool mid_after) noexcept {
        if (mid_after && !mid_before) {  // a message begins
            message_start_ns_ = arrival_ns;
            flowing_ = seen_end_ && arrival_ns >= last_end_ns_ && arrival_ns - last_end_ns_ <= max_gap_ns;
        } else if (mid_after && arrival_ns >= message_start_ns_ + long_message_ns) {
            flowing_ = true;
        }
        if (!mid_after) {  // a message ends (or a frame outside one)
            last_end_ns_ = arrival_ns;
            seen_end_ = true;
        }
    }
    // Whether the message under way continues a stream, or is long.
    bool flowing() const noexcept { return flowing_; }

private:
    std::uint64_t message_start_ns_ = 0;
    std::uint64_t last_end_ns_ = 0;
    bool seen_end_ = false;
    bool flowing_ = false;
};

}  // namespace vmrdma::detail
