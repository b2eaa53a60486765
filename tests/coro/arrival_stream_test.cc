// arrival_stream: a message continues a stream when it begins within
// max_gap_ns of the end of the one before it, or once its own frames have
// arrived for long_message_ns; otherwise it is a message on its own.
#include <doctest/doctest.h>

#include <cstdint>

#include "arrival_stream.hpp"

using vmrdma::detail::arrival_stream;

namespace {

constexpr std::uint64_t us = 1000;

// A message of `frames` frames, one every `spacing` ns from `start`; the
// last one ends it. Returns whether the stream was flowing while the
// message was under way (after its first frame) and the time after it.
struct message_result {
    bool flowing_during;
    std::uint64_t end;
};

message_result message(arrival_stream& s, std::uint64_t start, int frames, std::uint64_t spacing) {
    bool mid = false;
    bool flowing_during = false;
    std::uint64_t t = start;
    for (int i = 0; i < frames; ++i, t += spacing) {
        const bool mid_after = i + 1 < frames;
        s.frame(t, mid, mid_after);
        if (mid_after) flowing_during = s.flowing();
        mid = mid_after;
    }
    return {flowing_during, t - spacing};
}

}  // namespace

TEST_CASE("the first message, and one that follows a long silence, are messages on their own") {
    arrival_stream s;
    auto first = message(s, 1'000 * us, 8, 2 * us);
    CHECK_FALSE(first.flowing_during);
    auto later = message(s, first.end + 60 * us, 8, 2 * us);  // after a round trip's pause
    CHECK_FALSE(later.flowing_during);
}

TEST_CASE("messages back to back stream from the second one on") {
    arrival_stream s;
    auto m = message(s, 1'000 * us, 8, 2 * us);
    CHECK_FALSE(m.flowing_during);
    for (int i = 0; i < 5; ++i) {
        m = message(s, m.end + 2 * us, 8, 2 * us);
        CHECK(m.flowing_during);
    }
    // The gap is measured from the previous message's last frame: just
    // within it streams, just beyond it does not.
    m = message(s, m.end + arrival_stream::max_gap_ns, 8, 2 * us);
    CHECK(m.flowing_during);
    m = message(s, m.end + arrival_stream::max_gap_ns + 1, 8, 2 * us);
    CHECK_FALSE(m.flowing_during);
}

TEST_CASE("a long message on its own streams once its frames have arrived for long_message_ns") {
    arrival_stream s;
    bool mid = false;
    const std::uint64_t start = 5'000 * us;
    for (std::uint64_t t = start; t < start + arrival_stream::long_message_ns; t += 3 * us) {
        s.frame(t, mid, true);
        mid = true;
        CHECK_FALSE(s.flowing());
    }
    s.frame(start + arrival_stream::long_message_ns, true, true);
    CHECK(s.flowing());
}

TEST_CASE("frames outside any message end none and start none: a single-frame message after a stream") {
    arrival_stream s;
    auto m = message(s, 1'000 * us, 8, 2 * us);
    m = message(s, m.end + 2 * us, 8, 2 * us);
    REQUIRE(m.flowing_during);
    // Single-frame messages (mid neither before nor after) keep marking the
    // end; a multi-frame message right after them continues the stream.
    std::uint64_t t = m.end;
    for (int i = 0; i < 3; ++i) s.frame(t += 2 * us, false, false);
    auto next = message(s, t + 2 * us, 8, 2 * us);
    CHECK(next.flowing_during);
}

TEST_CASE("a stamp from before the last end (a clock stepped back) is not a stream") {
    arrival_stream s;
    auto m = message(s, 1'000 * us, 8, 2 * us);
    auto back = message(s, m.end - 500 * us, 8, 2 * us);
    CHECK_FALSE(back.flowing_during);
}
