// arrival_stream: a message continues a stream when it begins within
// max_gap_ns of the end of the one before it, or once its own frames have
// arrived for long_message_ns; otherwise it is a message on its own. Frames
// without data (ACKs) count for nothing; a frame of whole messages says so
// when they are large enough to gather after.
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
        s.frame(t, mid, mid_after, 1, 9000);
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
        s.frame(t, mid, true, 1, 9000);
        mid = true;
        CHECK_FALSE(s.flowing());
    }
    s.frame(start + arrival_stream::long_message_ns, true, true, 1, 9000);
    CHECK(s.flowing());
}

TEST_CASE("one-frame messages back to back stream too; a many-frame message after them continues it") {
    arrival_stream s;
    auto m = message(s, 1'000 * us, 8, 2 * us);
    CHECK_FALSE(s.large_whole_messages());  // a many-frame message's last frame
    std::uint64_t t = m.end;
    s.frame(t += 60 * us, false, false, 1, 4168);  // a 4 KiB write on its own
    CHECK_FALSE(s.flowing());
    CHECK(s.large_whole_messages());
    for (int i = 0; i < 3; ++i) {
        s.frame(t += 3 * us, false, false, 1, 4168);
        CHECK(s.flowing());
        CHECK(s.large_whole_messages());
    }
    auto next = message(s, t + 2 * us, 8, 2 * us);
    CHECK(next.flowing_during);
    CHECK_FALSE(s.large_whole_messages());
}

TEST_CASE("whole messages below min_whole_message_bytes on average: a bundle of small ones is not worth a gather") {
    arrival_stream s;
    std::uint64_t t = 1'000 * us;
    s.frame(t, false, false, 60, 8200);  // sixty 64-byte writes in one bundle
    s.frame(t += 3 * us, false, false, 60, 8200);
    CHECK(s.flowing());
    CHECK_FALSE(s.large_whole_messages());
    s.frame(t += 3 * us, false, false, 2, 2 * (arrival_stream::min_whole_message_bytes + 86));  // two 1 KiB ones
    CHECK(s.large_whole_messages());
    s.frame(t += 3 * us, false, false, 2, 2 * arrival_stream::min_whole_message_bytes - 2);
    CHECK_FALSE(s.large_whole_messages());
}

TEST_CASE("frames without data (ACKs) neither begin nor end a message, nor make a stream") {
    arrival_stream s;
    std::uint64_t t = 1'000 * us;
    for (int i = 0; i < 20; ++i) s.frame(t += 2 * us, false, false, 0, 86);  // a sender hears its ACKs
    CHECK_FALSE(s.flowing());
    CHECK_FALSE(s.large_whole_messages());
    // An ACK between two messages does not move the end the gap counts from.
    auto m = message(s, t + 2 * us, 8, 2 * us);
    s.frame(m.end + 9 * us, false, false, 0, 86);
    auto late = message(s, m.end + arrival_stream::max_gap_ns + 1, 8, 2 * us);
    CHECK_FALSE(late.flowing_during);
}

TEST_CASE("a stamp from before the last end (a clock stepped back) is not a stream") {
    arrival_stream s;
    auto m = message(s, 1'000 * us, 8, 2 * us);
    auto back = message(s, m.end - 500 * us, 8, 2 * us);
    CHECK_FALSE(back.flowing_during);
}
