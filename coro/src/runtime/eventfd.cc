#include "vmrdma/eventfd.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace vmrdma {

eventfd_channel::eventfd_channel(event_loop& loop, eventfd_wait_mode mode)
    : loop_(loop), mode_(mode) {
    // read_rearm needs a blocking fd, or io_uring's READ returns -EAGAIN
    // instead of parking in the kernel. multishot_poll needs a non-blocking
    // one: several readiness CQEs can queue up for one counter value, and
    // the read after a stale one must not block.
    int flags = EFD_CLOEXEC | (mode == eventfd_wait_mode::multishot_poll ? EFD_NONBLOCK : 0);
    fd_ = eventfd(0, flags);
    if (fd_ < 0) throw_errno(-errno, "eventfd failed");
}

eventfd_channel::~eventfd_channel() {
    if (poll_slot_ != no_slot) loop_.abandon(poll_slot_);
    close(fd_);
}

void eventfd_channel::notify(std::uint64_t count) const noexcept {
    // Fails only when the counter would overflow: the reader wakes anyway.
    [[maybe_unused]] auto n = ::write(fd_, &count, sizeof count);
}

task<std::uint64_t> eventfd_channel::wait(std::stop_token stop) {
    if (mode_ == eventfd_wait_mode::read_rearm) return wait_read(std::move(stop));
    return wait_poll(std::move(stop));
}

task<std::uint64_t> eventfd_channel::wait_read(std::stop_token stop) {
    std::uint64_t value = 0;
    co_await loop_.submit(
        [this, &value](io_uring_sqe* sqe) { io_uring_prep_read(sqe, fd_, &value, sizeof value, 0); },
        std::move(stop));
    co_return value;
}

void eventfd_channel::arm_poll() {
    poll_slot_ = loop_.arm_callback(&eventfd_channel::on_poll, this, [this](io_uring_sqe* sqe, detail::op_slot&) {
        io_uring_prep_poll_multishot(sqe, fd_, POLLIN);
    });
}

void eventfd_channel::drain_counter() noexcept {
    std::uint64_t value = 0;
    if (::read(fd_, &value, sizeof value) == sizeof value) pending_ += value;
}

void eventfd_channel::on_poll(event_loop& loop, detail::op_slot& slot) {
    auto* self = static_cast<eventfd_channel*>(slot.context);
    bool ended = !slot.busy;  // no IORING_CQE_F_MORE: the multishot stopped
    if (slot.result > 0) self->drain_counter();
    if (ended) {
        loop.release_slot(self->poll_slot_);
        self->poll_slot_ = no_slot;  // re-armed by the next wait
    }
    if (self->waiter_ && (self->pending_ > 0 || ended))
        loop.make_ready(std::exchange(self->waiter_, {}));
}

void eventfd_channel::cancel_waiter() {
    if (!waiter_) return;
    waiter_cancelled_ = true;
    loop_.make_ready(std::exchange(waiter_, {}));
}

task<std::uint64_t> eventfd_channel::wait_poll(std::stop_token stop) {
    for (;;) {
        if (pending_ > 0) co_return std::exchange(pending_, 0);
        if (stop.stop_requested()) throw error(errc::cancelled, "eventfd wait cancelled");
        if (poll_slot_ == no_slot) arm_poll();
        // Parks this coroutine as the channel's waiter. If its frame is
        // destroyed while parked, the channel and the loop forget it.
        struct park {
            eventfd_channel& ch;
            std::coroutine_handle<> self;
            bool resumed = false;
            explicit park(eventfd_channel& c) noexcept : ch(c) {}
            park(const park&) = delete;
            ~park() {
                if (!self || resumed) return;
                if (ch.waiter_ == self)
                    ch.waiter_ = {};
                else
                    ch.loop_.forget(self);
            }
            bool await_ready() noexcept { return false; }
            void await_suspend(std::coroutine_handle<> h) noexcept { ch.waiter_ = self = h; }
            void await_resume() noexcept { resumed = true; }
        };
        auto on_stop = [this] {
            if (loop_.on_loop_thread())
                cancel_waiter();
            else
                loop_.post([this] { cancel_waiter(); });
        };
        {
            std::stop_callback<decltype(on_stop)> cb(stop, on_stop);
            if (!waiter_cancelled_) co_await park{*this};
        }
        if (std::exchange(waiter_cancelled_, false) && pending_ == 0)
            throw error(errc::cancelled, "eventfd wait cancelled");
    }
}

}  // namespace vmrdma
