// How long an idle event loop spins before it blocks, when the spin adapts
// (loop_options::adaptive_poll): the policy of KVM's halt polling.  Waking a
// sleeping thread costs its waker (an IPI, on a VM an exit) and the sleeper
// (the wake-up latency) far more than a few microseconds of spinning while
// events come that fast; when they do not, the window closes and the loop
// blocks at once, so an idle thread costs nothing.
//   - a spin that found an event keeps the window;
//   - a spin that found nothing halves it (below `floor`: closed);
//   - a block that ended within `max` grows it (it should have spun): from
//     closed to `floor`, then doubling up to `max`;
//   - a longer block closes it.
// Plain arithmetic on durations the loop measures, so tests drive it with
// made-up times.
#pragma once

#include <algorithm>
#include <chrono>

namespace vmrdma::detail {

class poll_window {
public:
    explicit poll_window(std::chrono::nanoseconds max = {}) noexcept : max_(max), floor_(std::min(max, floor_default)) {}

    // How long to spin now (zero: block at once).
    std::chrono::nanoseconds current() const noexcept { return current_; }
    bool enabled() const noexcept { return max_.count() > 0; }

    void spun(bool found) noexcept {
        if (found) return;
        current_ /= 2;
        if (current_ < floor_) current_ = {};
    }

    void blocked(std::chrono::nanoseconds how_long) noexcept {
        if (!enabled()) return;
        if (how_long > max_) {
            current_ = {};
        } else if (current_ < max_) {
            current_ = current_.count() ? std::min(max_, current_ * 2) : floor_;
        }
    }

private:
    static constexpr std::chrono::nanoseconds floor_default{std::chrono::microseconds(2)};
    std::chrono::nanoseconds max_;
    std::chrono::nanoseconds floor_;
    std::chrono::nanoseconds current_{};
};

}  // namespace vmrdma::detail
