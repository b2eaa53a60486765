#include "vmrdma/event_loop.hpp"

#include <sched.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

namespace vmrdma {

event_loop::event_loop(loop_options options)
    : options_(options), loop_thread_(std::this_thread::get_id()) {
    io_uring_params params{};
    // One CQ entry per SQ entry is too tight once many operations are in
    // flight; ask for four times as many so completions never overflow.
    auto init = [&](unsigned flags) {
        params = {};
        params.flags = IORING_SETUP_CQSIZE | flags;
        params.cq_entries = options.ring_entries * 4;
        return io_uring_queue_init_params(options.ring_entries, &ring_, &params);
    };
    // Cooperative task work (Linux 5.19+): a completion does not interrupt
    // this thread with an IPI; it runs when the thread next enters the
    // kernel, which a busy loop does all the time. Per-frame poll wake-ups
    // made IPIs a tenth of a transfer's CPU time. Older kernels: without.
    int rc = -EINVAL;
    if (options.coalesce_wakeups) {
        // Task work deferred to this loop's thread (Linux 6.1+), which lets a
        // wait for several completions sleep through the ones before
        // (wait_for_completion). One thread may enter the ring: the first
        // that does (enable_once), not necessarily the one constructing it.
        rc = init(IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_TASKRUN_FLAG |
                  IORING_SETUP_R_DISABLED);
        deferred_taskrun_ = rc == 0;
        ring_enabled_ = !deferred_taskrun_;
    }
    if (rc == -EINVAL) rc = init(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
    taskrun_flag_ = rc == 0;
    if (rc == -EINVAL) rc = init(0);
    if (rc < 0) throw_errno(rc, "io_uring_queue_init failed (is io_uring disabled by sysctl or seccomp?)");
    wake_fd_ = eventfd(0, EFD_CLOEXEC);
    if (wake_fd_ < 0) {
        int err = errno;
        io_uring_queue_exit(&ring_);
        throw_errno(-err, "eventfd failed");
    }
    arm_wakeup();
}

event_loop::~event_loop() {
    shutting_down_ = true;
    for (std::uint32_t i = 0; i < slots_.size(); ++i)
        if (slots_[i]->busy) cancel(i);
    // Nothing may stay pending in the kernel: wait until every slot is free.
    if (busy_slots_ > 0) enable_once();
    if (busy_slots_ > internal_busy_ && on_foreign_thread()) {
        // Only the ring's thread could wait for them, and their memory goes now.
        std::fprintf(stderr,
                     "vmrdma: an event_loop that coalesces wake-ups was destroyed on another thread than "
                     "the one that drove it, with %zu operations in the kernel\n",
                     busy_slots_ - internal_busy_);
        std::terminate();
    }
    while (busy_slots_ > 0) {
        if (io_uring_submit_and_wait(&ring_, 1) < 0) break;
        reap();
    }
    io_uring_queue_exit(&ring_);
    close(wake_fd_);
}

io_uring_sqe* event_loop::get_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe) return sqe;
    // The submission queue is full: hand the batch to the kernel and retry.
    enable_once();
    int submitted = io_uring_submit(&ring_);
    count_submitted(submitted);
    sqe = io_uring_get_sqe(&ring_);
    if (!sqe) throw error(errc::resources_exhausted, "io_uring submission queue full");
    return sqe;
}

std::uint32_t event_loop::acquire_slot() {
    if (free_slots_.empty()) {
        slots_.push_back(std::make_unique<detail::op_slot>());
        free_slots_.push_back(static_cast<std::uint32_t>(slots_.size() - 1));
    }
    std::uint32_t index = free_slots_.back();
    free_slots_.pop_back();
    return index;
}

void event_loop::arm(io_uring_sqe* sqe, std::uint32_t index) noexcept {
    auto& s = *slots_[index];
    s.busy = true;
    s.orphaned = false;
    s.result = 0;
    s.cqe_flags = 0;
    ++busy_slots_;
    io_uring_sqe_set_data64(sqe, std::uint64_t{index} + 1);
}

void event_loop::release_slot(std::uint32_t index) noexcept {
    auto& s = *slots_[index];
    s.waiter = {};
    s.on_complete = nullptr;
    s.context = nullptr;
    ++s.generation;  // stale cancel requests for this slot now miss
    free_slots_.push_back(index);
}

void event_loop::cancel(std::uint32_t index) noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (!sqe) {
        enable_once();
        io_uring_submit(&ring_);
        sqe = io_uring_get_sqe(&ring_);
        if (!sqe) return;  // the kernel holds the queue; the op still completes
    }
    io_uring_prep_cancel64(sqe, std::uint64_t{index} + 1, 0);
    io_uring_sqe_set_data64(sqe, 0);  // the cancel's own completion is ignored
}

void detail::cancel_request::operator()() const noexcept {
    auto* l = loop;
    auto index = slot;
    auto gen = generation;
    auto cancel_if_current = [l, index, gen] {
        auto& s = l->slot(index);
        if (s.busy && s.generation == gen) l->cancel(index);
    };
    if (l->on_loop_thread()) {
        cancel_if_current();
    } else {
        try {
            l->post(cancel_if_current);
        } catch (...) {
            // Out of memory while posting: the operation completes normally.
        }
    }
}

void event_loop::abandon(std::uint32_t index) noexcept {
    auto& s = *slots_[index];
    if (s.busy) {
        s.orphaned = true;
        cancel(index);
        enable_once();
        if (on_foreign_thread()) {
            // Only the ring's thread could reap it, and its memory goes now.
            std::fprintf(stderr,
                         "vmrdma: an operation of an event_loop that coalesces wake-ups was abandoned on "
                         "another thread than the one that drives the loop\n");
            std::terminate();
        }
        while (s.busy) {
            if (io_uring_submit_and_wait(&ring_, 1) < 0) break;
            reap();
        }
    } else if (s.waiter) {
        forget(s.waiter);  // completed but not yet resumed: its frame is going away
    }
    release_slot(index);
}

void event_loop::forget(std::coroutine_handle<> h) noexcept {
    auto it = std::find(ready_.begin(), ready_.end(), h);
    if (it != ready_.end()) ready_.erase(it);
}

// Busy polling: one spinning turn, or false once busy_poll has passed since
// the last turn that did something (then the loop blocks). The kernel is
// entered only if something waits there: operations to submit, or task work
// that holds completions, which the kernel flags in the shared SQ ring
// (IORING_SQ_TASKRUN); otherwise the next turn's hooks (a transport that
// reads its socket's ring in turns) are all a spin costs.
bool event_loop::spin() noexcept {
    if (options_.busy_poll.count() == 0) return false;
    if (turn_time_ - last_work_ >= options_.busy_poll) return false;  // read this turn
    ++stats_.spins;
    const bool task_work = !taskrun_flag_ || (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_TASKRUN);
    if (io_uring_sq_ready(&ring_) > 0 || task_work) {
        enable_once();
        int submitted = io_uring_submit_and_get_events(&ring_);
        count_submitted(submitted);
    }
    if (io_uring_cq_ready(&ring_) > 0)
        ++stats_.polled;
    else if ((options_.yield_while_polling || shares_cores()) && last_work_ != turn_time_)  // did nothing
        yield_core();
    return true;
}

void event_loop::yield_core() noexcept {
    ++stats_.yields;
    sched_yield();
}

void event_loop::reap() {
    // Copy a batch out and advance the CQ before acting on any of it: a
    // completion may destroy a frame whose destructor reaps recursively.
    struct done {
        std::uint64_t user_data;
        int res;
        std::uint32_t flags;
    };
    std::array<io_uring_cqe*, 64> cqes;
    for (;;) {
        unsigned n = io_uring_peek_batch_cqe(&ring_, cqes.data(), cqes.size());
        if (n == 0) return;
        std::array<done, 64> batch;
        for (unsigned i = 0; i < n; ++i) batch[i] = {cqes[i]->user_data, cqes[i]->res, cqes[i]->flags};
        io_uring_cq_advance(&ring_, n);
        stats_.completions += n;
        for (unsigned i = 0; i < n; ++i) {
            if (batch[i].user_data == 0) continue;  // a cancel request's own completion
            auto index = static_cast<std::uint32_t>(batch[i].user_data - 1);
            auto& s = *slots_[index];
            s.result = batch[i].res;
            s.cqe_flags = batch[i].flags;
            if (!(batch[i].flags & IORING_CQE_F_MORE)) {
                s.busy = false;
                --busy_slots_;
            }
            if (s.orphaned) continue;  // abandon() frees it
            if (s.on_complete)
                s.on_complete(*this, s);
            else
                ready_.push_back(s.waiter);
        }
    }
}

// Resumes what is ready now (coroutines made ready meanwhile wait for the
// next turn, so a busy coroutine cannot starve the ring) and runs the turn
// hooks; true when a hook has more to do.
bool event_loop::run_ready_work(bool driven_from_outside) {
    const auto resumed = stats_.resumptions;
    for (std::size_t n = ready_.size(); n > 0 && !ready_.empty(); --n) {
        auto h = ready_.front();
        ready_.pop_front();
        ++stats_.resumptions;
        h.resume();
    }
    // The hooks' clock (turn_time()): read again only if time may have
    // passed since the reap read it: coroutines ran, or the loop is stepped
    // by a host whose own work came between its calls. A spinning turn that
    // finds nothing reads the clock once, not four times (a quarter of a
    // busy-polling thread's time went to clock_gettime).
    if (driven_from_outside || stats_.resumptions != resumed) turn_time_ = std::chrono::steady_clock::now();
    bool more_work = false;
    for (std::size_t i = 0; i < turn_hooks_.size(); ++i) more_work |= turn_hooks_[i].second();
    return more_work;
}

void event_loop::submit_counted() {
    enable_once();
    int submitted = io_uring_submit(&ring_);
    if (submitted == -EEXIST) throw_foreign_thread();
    count_submitted(submitted);
}

void event_loop::turn(const bool& finished) {
    const auto resumed = stats_.resumptions, reaped = stats_.completions;
    expect_more_ = false;  // this turn's hooks say it anew
    const bool more_work = run_ready_work(false);
    // This turn did something (busy_poll spins from here on): the turn's
    // time is close enough, and saves a clock read per turn.
    if (more_work || stats_.resumptions != resumed) last_work_ = turn_time_;
    // Block for completions only while the awaited task still needs them.
    const bool may_block = !finished && !more_work;
    if (may_block && ready_.empty()) {
        // loop_options::gather_while_polling: a stream's frames are on
        // their way, and one sleep gathers them.
        const bool gather = options_.gather_while_polling && gathering_due();
        if (gather || !spin()) wait_for_completion();
    } else {
        submit_counted();
    }
    turn_time_ = std::chrono::steady_clock::now();
    reap();
    if (stats_.completions != reaped) last_work_ = turn_time_;
}

// Idle: the idle hooks arm what wakes a sleeper, then block. After
// expect_more(), with coalesce_wakeups: for two completions or coalesce_wait.
// With task work deferred to this thread, what arrives for an operation
// that is already waiting to run (a multishot receive's further frames)
// only queues; the kernel wakes a thread that waits for n completions once
// n operations have work, and at once for urgent work such as a timer's.
// So a stream's frames gather for coalesce_wait at most, a timer still
// fires on time, and a post() from another thread waits coalesce_wait at
// most.
void event_loop::wait_for_completion() {
    prepare_to_wait();
    ++stats_.blocks;
    enable_once();
    const bool gather = gathering_due();
    expect_more_ = false;
    int submitted;
    if (gather) {
        ++stats_.coalesced;
        __kernel_timespec ts{};
        ts.tv_nsec = std::chrono::duration_cast<std::chrono::nanoseconds>(coalesce_wait).count();
        io_uring_cqe* cqe = nullptr;
        // Submits too; ends when two operations have work, at a timer, or
        // at coalesce_wait (the usual end while one receive gathers frames).
        submitted = io_uring_submit_and_wait_timeout(&ring_, &cqe, 2, &ts, nullptr);
    } else {
        submitted = io_uring_submit_and_wait(&ring_, 1);
    }
    if (submitted == -EEXIST) throw_foreign_thread();
    count_submitted(submitted);
}

// coalesce_wakeups: the ring was made disabled, so that the thread that
// first enters the kernel for it (run(), run_once(), or a destructor that
// must wait) becomes its only submitter, whichever thread constructed it.
void event_loop::enable_once() noexcept {
    if (ring_enabled_) return;
    ring_enabled_ = true;
    submitter_ = std::this_thread::get_id();
    // io_uring_enable_rings() is declared by Debian's liburing 2.3 but not
    // exported from its shared library: the register call it makes.
    int rc = io_uring_register(static_cast<unsigned>(ring_.ring_fd), IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
    if (rc < 0) {  // a disabled ring from io_uring_setup that cannot be enabled: nothing could run
        std::fprintf(stderr, "vmrdma: cannot enable the event loop's io_uring: %s\n", std::strerror(-rc));
        std::abort();
    }
}

// What an io_uring_enter that submitted (a positive count) handed over.
void event_loop::count_submitted(int submitted) noexcept {
    if (submitted <= 0) return;
    ++stats_.submits;
    stats_.sqes += static_cast<std::uint64_t>(submitted);
}

void event_loop::check_driving_thread() const {
    if (on_foreign_thread()) throw_foreign_thread();
}

// Also where the kernel refuses a thread that merely has the id of the one
// that drove the ring (a new thread may reuse an ended one's id).
void event_loop::throw_foreign_thread() {
    throw error(errc::invalid_argument,
                "this event_loop coalesces wake-ups and is bound to the thread that first drove it "
                "(loop_options::coalesce_wakeups = false lets several threads drive one loop)");
}

bool event_loop::run_once(std::chrono::nanoseconds max_wait) {
    check_driving_thread();
    loop_thread_ = std::this_thread::get_id();
    const bool more_work = run_ready_work(true);
    if (!more_work && ready_.empty() && max_wait > std::chrono::nanoseconds::zero()) {
        prepare_to_wait();
        __kernel_timespec ts{};
        ts.tv_sec = max_wait.count() / 1'000'000'000;
        ts.tv_nsec = max_wait.count() % 1'000'000'000;
        io_uring_cqe* cqe = nullptr;
        enable_once();
        // Submits too; -ETIME when nothing completed in time.
        int submitted = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
        count_submitted(submitted);
    } else {
        // Enters the kernel only if it must: to submit, or to run task work
        // that holds completions (io_uring_submit does both).
        submit_counted();
    }
    turn_time_ = std::chrono::steady_clock::now();
    reap();
    return !more_work && ready_.empty();
}

bool event_loop::run_ready() {
    loop_thread_ = std::this_thread::get_id();
    hooks_want_more_ = run_ready_work(true);
    turn_time_ = std::chrono::steady_clock::now();
    reap();
    return io_uring_sq_ready(&ring_) > 0;
}

void event_loop::submit_pending() { submit_counted(); }

std::size_t event_loop::add_turn_hook(std::function<bool()> hook) {
    turn_hooks_.emplace_back(next_hook_id_, std::move(hook));
    return next_hook_id_++;
}

void event_loop::remove_turn_hook(std::size_t id) noexcept {
    std::erase_if(turn_hooks_, [id](const auto& h) { return h.first == id; });
    std::erase_if(idle_hooks_, [id](const auto& h) { return h.first == id; });
}

std::size_t event_loop::add_idle_hook(std::function<void()> hook) {
    idle_hooks_.emplace_back(next_hook_id_, std::move(hook));
    return next_hook_id_++;
}

bool event_loop::prepare_to_wait() {
    for (std::size_t i = 0; i < idle_hooks_.size(); ++i) idle_hooks_[i].second();
    return io_uring_sq_ready(&ring_) > 0;
}

void event_loop::post(std::function<void()> fn) {
    {
        std::lock_guard lock(posted_mutex_);
        posted_.push_back(std::move(fn));
    }
    std::uint64_t one = 1;
    // A failed write can only mean the counter would overflow, in which case
    // the loop is certain to wake anyway.
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

void event_loop::post_resume(std::coroutine_handle<> h) {
    post([this, h] { ready_.push_back(h); });
}

void event_loop::drain_posted() {
    std::vector<std::function<void()>> work;
    {
        std::lock_guard lock(posted_mutex_);
        work.swap(posted_);
    }
    for (auto& fn : work) fn();
}

void event_loop::arm_wakeup() {
    wake_slot_ = arm_callback(&event_loop::on_wakeup, nullptr, [this](io_uring_sqe* sqe, detail::op_slot& s) {
        io_uring_prep_read(sqe, wake_fd_, &s.scratch, sizeof s.scratch, 0);
    });
    ++internal_busy_;
}

void event_loop::on_wakeup(event_loop& loop, detail::op_slot&) {
    --loop.internal_busy_;
    loop.release_slot(loop.wake_slot_);
    ++loop.stats_.wakeups;
    if (loop.shutting_down_) return;
    loop.drain_posted();
    loop.arm_wakeup();
}

task<void> event_loop::sleep_for(std::chrono::nanoseconds duration, std::stop_token stop) {
    __kernel_timespec ts{};
    auto ns = std::max<std::int64_t>(duration.count(), 0);
    ts.tv_sec = ns / 1'000'000'000;
    ts.tv_nsec = ns % 1'000'000'000;
    int res = co_await submit_raw(
        [&ts](io_uring_sqe* sqe) { io_uring_prep_timeout(sqe, &ts, 0, 0); }, std::move(stop));
    if (res == -ETIME || res >= 0) co_return;
    throw_errno(res, "timer failed");
}

}  // namespace vmrdma
