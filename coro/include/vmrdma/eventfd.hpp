// eventfd_channel: the completion path every transport uses to wake
// coroutines. Producers (another thread, a daemon, a kernel module) add to
// the eventfd; a coroutine on the loop awaits wait(), which returns the
// counter accumulated since the last wait. A wake-up is a hint: after one,
// the consumer drains whatever completion ring the eventfd guards.
//
// Two ways to watch the fd through io_uring, both kept so the benchmark can
// compare them (docs/runtime.md has the figures):
//   read_rearm     one IORING_OP_READ per wait()
//   multishot_poll one IORING_OP_POLL_ADD with IORING_POLL_ADD_MULTI, armed
//                  once; each readiness CQE is followed by a read(2)
#pragma once

#include <coroutine>
#include <cstdint>
#include <optional>
#include <stop_token>

#include "vmrdma/event_loop.hpp"
#include "vmrdma/task.hpp"

namespace vmrdma {

enum class eventfd_wait_mode { read_rearm, multishot_poll };

class eventfd_channel {
public:
    static constexpr eventfd_wait_mode default_mode = eventfd_wait_mode::read_rearm;

    // Creates a new eventfd owned by the channel.
    explicit eventfd_channel(event_loop& loop, eventfd_wait_mode mode = default_mode);
    ~eventfd_channel();
    eventfd_channel(const eventfd_channel&) = delete;
    eventfd_channel& operator=(const eventfd_channel&) = delete;

    int fd() const noexcept { return fd_; }
    eventfd_wait_mode mode() const noexcept { return mode_; }

    // Thread-safe and async-signal-safe: adds `count` to the eventfd.
    void notify(std::uint64_t count = 1) const noexcept;

    // Completes with the accumulated count (>= 1) once the eventfd is
    // non-zero; throws errc::cancelled if `stop` fires first. One waiter at
    // a time.
    task<std::uint64_t> wait(std::stop_token stop = {});

private:
    task<std::uint64_t> wait_read(std::stop_token stop);
    task<std::uint64_t> wait_poll(std::stop_token stop);
    void arm_poll();
    static void on_poll(event_loop& loop, detail::op_slot& slot);
    void drain_counter() noexcept;
    void cancel_waiter();

    event_loop& loop_;
    eventfd_wait_mode mode_;
    int fd_ = -1;
    // multishot_poll state
    static constexpr std::uint32_t no_slot = UINT32_MAX;
    std::uint32_t poll_slot_ = no_slot;
    std::uint64_t pending_ = 0;
    std::coroutine_handle<> waiter_;
    bool waiter_cancelled_ = false;
};

}  // namespace vmrdma
