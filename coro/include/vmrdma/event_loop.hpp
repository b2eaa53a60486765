// event_loop: one io_uring, driven by one thread. Coroutines suspend on
// io_uring operations (any SQE, through submit()), timers and eventfds; the
// loop submits in batches (one io_uring_enter per turn) and resumes the
// waiting coroutines from the completions. post() and schedule() are the only
// members safe to call from other threads.
//
// Lifetime rules: an operation's buffers must outlive it. Destroying a
// suspended task cancels its pending operation and waits for the kernel to
// let go before the frame's memory is freed, so nothing stays pending in the
// kernel. Tasks are destroyed on the loop thread.
#pragma once

#include <liburing.h>

#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>
#include <vector>

#include "vmrdma/error.hpp"
#include "vmrdma/task.hpp"

namespace vmrdma {

class event_loop;

namespace detail {

// One in-flight io_uring operation. Slots live as long as the loop (stable
// addresses), so a kernel-visible scratch buffer can sit inside one.
struct op_slot {
    std::coroutine_handle<> waiter;
    int result = 0;
    std::uint32_t cqe_flags = 0;
    std::uint32_t generation = 0;
    bool busy = false;      // submitted, completion not yet reaped
    bool orphaned = false;  // its awaiter is gone; just free it on completion
    // Called instead of resuming a waiter (internal multishot users).
    void (*on_complete)(event_loop&, op_slot&) = nullptr;
    void* context = nullptr;
    std::uint64_t scratch = 0;  // e.g. the 8 bytes read from an eventfd
    __kernel_timespec timespec{};
};

struct cancel_request {
    event_loop* loop;
    std::uint32_t slot;
    std::uint32_t generation;
    void operator()() const noexcept;
};

}  // namespace detail

struct loop_options {
    unsigned ring_entries = 256;
    // Busy polling (RDMA libraries' "polling mode"): a turn with nothing to
    // do turns again instead of blocking, until this long has passed since
    // the last turn that did something. On virtual machines waking an idle
    // CPU costs tens of microseconds; polling trades CPU for latency. A
    // spinning turn enters the kernel only when something waits there
    // (operations to submit, task work holding completions); an eth: device
    // on such a loop reads its frames in the turns (device_options::
    // receive_in_turns), from a mapped ring, so a spin costs no system call.
    std::chrono::nanoseconds busy_poll{0};
    // A busy-polling loop whose transport expects more of a stream
    // (expect_more(), with coalesce_wakeups) sleeps once to gather it instead
    // of spinning: the spin takes a stream's frames one turn each, on a core
    // the kernel needs to deliver them (vmrdmad polling 100 us read 64 KiB
    // messages at 0.71-0.77 of the in-process rate; gathering, 0.99-1.09).
    // Off by default: where both ends poll, a round trip can be shorter
    // than the gap that makes arrivals a stream (10 us), and each gathering
    // sleep then adds a timer's lateness to it (4 KiB busy round trips went
    // from 4 to 19-32 us). vmrdmad turns it on: its frontends block.
    bool gather_while_polling = false;
    // A busy-polling turn that did nothing gives the core away once
    // (sched_yield) before it spins again, to a thread of the same priority
    // that waits for it. Where polling threads outnumber cores (vmrdmad
    // beside frontends that spin, as MPI ranks do), a spin otherwise held a
    // core that the thread with the next step of the work waited for until
    // the scheduler took it away: NetPIPE through vmrdmad, two ranks and
    // two daemons on two cores, took 230-320 us a small message with
    // vmrdmad polling 50 us, 15-18 us with both yielding (docs/
    // split-driver.md, "Polling beside spinning frontends"). Where nothing
    // else waits, a yield is a system call that returns at once, but it
    // delays noticing what comes meanwhile: the in-process eth: busy round
    // trip went from 3.4 to 4.0 us with it. Off by default; vmrdmad turns it
    // on, and a unix: or xen: device has the same effect on the loop it
    // lives on while it lives (event_loop::add_core_sharer).
    bool yield_while_polling = false;
    // Wake-up coalescing (docs/runtime.md, "Coalesced wake-ups"): after a
    // transport took frames of a message whose rest is on its way
    // (expect_more()), the next blocking turn sleeps through arrivals for
    // up to event_loop::coalesce_wait instead of waking at the first, so
    // that the sender's softirq wakes this thread once per burst rather
    // than once per frame. Timers still wake it at once; a post() from
    // another thread (a stop request too) within coalesce_wait. Without
    // expect_more() a blocking turn wakes at the first completion. Needs
    // IORING_SETUP_DEFER_TASKRUN (Linux 6.1; measured on 6.18, where a
    // receive's further frames only queue while its task work waits; older
    // kernels: off), and binds the loop to one thread: the first that
    // submits or waits (run(), run_once()); run() or run_once() on another
    // thread then throws, and the loop must be destroyed on that thread
    // while operations of its users are pending. A host whose loop is
    // turned by several threads, or by one and submitted by another
    // (run_ready() and submit_pending()), turns it off.
    bool coalesce_wakeups = true;
};

// Counters for tests and figures: how the loop spent its turns.
struct loop_stats {
    std::uint64_t submits = 0;       // io_uring_enter calls that submitted
    std::uint64_t sqes = 0;          // SQEs handed to the kernel
    std::uint64_t completions = 0;   // CQEs reaped
    std::uint64_t resumptions = 0;   // coroutines resumed from the ready queue
    std::uint64_t wakeups = 0;       // cross-thread wake-ups received
    std::uint64_t polled = 0;        // spinning turns that found completions waiting
    std::uint64_t spins = 0;         // turns that spun instead of blocking (busy_poll)
    std::uint64_t blocks = 0;        // turns that blocked in the kernel for a completion
    std::uint64_t coalesced = 0;     // blocking turns that gathered arrivals (expect_more)
    std::uint64_t yields = 0;        // spinning turns that gave the core away (yield_while_polling)
};

class event_loop {
public:
    explicit event_loop(loop_options options = {});
    ~event_loop();
    event_loop(const event_loop&) = delete;
    event_loop& operator=(const event_loop&) = delete;

    // Drives the loop on this thread until `t` finishes; returns its value or
    // rethrows its exception. The thread calling run() becomes the loop thread.
    template <typename T>
    T run(task<T> t);

    // Awaitable for one SQE. `prepare(io_uring_sqe*)` fills it in (any opcode,
    // no user_data). Resumes with the CQE's res when >= 0; throws vmrdma::error
    // for a negative res (errc::cancelled when the stop token fired).
    template <typename Prepare>
    auto submit(Prepare prepare, std::stop_token stop = {});

    // As submit(), but resumes with the CQE's res as it is, negative or not
    // (-ECANCELED when the stop token fired). For opcodes whose negative
    // results are not failures, such as timeouts (-ETIME).
    template <typename Prepare>
    auto submit_raw(Prepare prepare, std::stop_token stop = {});

    // Completes after `duration` (a relative io_uring timeout); throws
    // errc::cancelled if `stop` fires first.
    task<void> sleep_for(std::chrono::nanoseconds duration, std::stop_token stop = {});

    // Drives the loop without run(), for a host that owns the thread and
    // steps the loop itself (libfabric's manual progress): one turn on this
    // thread (which becomes the loop thread) that resumes what is ready,
    // runs the turn hooks, submits, and reaps what has completed. It blocks
    // for at most `max_wait` for a completion, and only when nothing is
    // ready and no hook has more to do; 0 never blocks. Returns true when
    // the loop is idle afterwards (nothing ready, no hook with more to do):
    // then waiting on wait_fd() misses nothing this turn left undone.
    bool run_once(std::chrono::nanoseconds max_wait = std::chrono::nanoseconds::zero());
    // For a host whose loop is submitted by one dedicated thread (so that no
    // other thread ever owns an operation: io_uring runs an operation's
    // completion task work on the thread that submitted it, which
    // interrupts that thread's own blocking system calls: a read(2) with a
    // timeout returns EINTR). run_ready() is one turn that never enters the
    // kernel: it resumes what is ready, runs the turn hooks and takes the
    // completions already posted; operations it prepares stay queued.
    // Returns true when some wait to be submitted. submit_pending(), on the
    // submitting thread, hands them to the kernel; that thread then waits in
    // a system call (poll(2) on wait_fd() will do), where their task work
    // runs.
    bool run_ready();
    // Whether another run_ready() has work now: coroutines ready, or a turn
    // hook that said it has more (without it a turn only polls again).
    bool has_ready_work() const noexcept { return !ready_.empty() || hooks_want_more_; }
    // Whether coroutines wait in the ready queue now.
    bool has_ready() const noexcept { return !ready_.empty(); }
    // A turn hook found work that resumes no coroutine (a transport that
    // took frames and answered them itself): busy polling goes on spinning
    // (loop_options::busy_poll counts from the last turn with work).
    void note_work() noexcept { last_work_ = turn_time_; }
    void submit_pending();
    // The io_uring's file descriptor: readable (POLLIN) while completions
    // wait to be reaped. Wait on it (poll, epoll) only after run_once()
    // said the loop is idle and prepare_to_wait() was called, then call
    // run_once() again.
    int wait_fd() const noexcept { return ring_.ring_fd; }
    // Runs the idle hooks (add_idle_hook): what must be armed for a sleeper
    // to be woken. The loop calls it itself before it blocks or spins; a
    // host that waits on wait_fd() calls it first. True when that left
    // operations to submit (submit_pending()).
    bool prepare_to_wait();

    // Runs `hook` on every turn, after the ready coroutines and before the
    // loop submits and waits: transports flush work batched during the turn.
    // A hook returns true when it has more to do, and the loop then does not
    // block this turn. Returns an id for remove_turn_hook. Loop thread only.
    std::size_t add_turn_hook(std::function<bool()> hook);
    void remove_turn_hook(std::size_t id) noexcept;
    // Runs `hook` whenever the loop is about to block for completions (not
    // before a spinning turn), and from prepare_to_wait(): a transport that takes its input
    // in the turn hooks arms a wake-up (one poll) only here, so a loop that
    // is turned all the time gets no completion per arrival. Loop thread
    // only; the id is remove_turn_hook's.
    std::size_t add_idle_hook(std::function<void()> hook);

    // Thread-safe: run `fn` on the loop thread soon.
    void post(std::function<void()> fn);

    // Thread-safe: `co_await loop.schedule()` continues on the loop thread.
    auto schedule() noexcept {
        struct awaiter {
            event_loop& loop;
            bool await_ready() noexcept { return false; }
            void await_suspend(std::coroutine_handle<> h) { loop.post_resume(h); }
            void await_resume() noexcept {}
        };
        return awaiter{*this};
    }

    // loop_options::coalesce_wakeups: how long a blocking turn after
    // expect_more() may sleep through arrivals. About six 9000-byte frames
    // on this project's veth pairs; what a burst's last frames can wait.
    static constexpr std::chrono::microseconds coalesce_wait{20};
    // A transport took frames of a message whose rest is still to come:
    // the next blocking turn may gather arrivals (coalesce_wakeups). Loop
    // thread only; holds for the next turn only.
    void expect_more() noexcept { expect_more_ = true; }

    const loop_options& options() const noexcept { return options_; }
    // A transport whose engine runs in another process on this machine
    // (unix:'s vmrdmad, xen:'s backend) counts itself here while it lives.
    // While any does, busy polling yields in spins that found nothing, as
    // with loop_options::yield_while_polling: that process may need this
    // core for the next step of what the loop polls for (a busy-polling
    // frontend's 64 B round trip through vmrdmad on two cores: 87-90 us
    // without, 12-14 us with).
    void add_core_sharer() noexcept { ++core_sharers_; }
    void remove_core_sharer() noexcept { --core_sharers_; }
    bool shares_cores() const noexcept { return core_sharers_ > 0; }
    // Whether loop_options::coalesce_wakeups is in effect (the kernel has
    // IORING_SETUP_DEFER_TASKRUN, Linux 6.1+).
    bool coalescing_wakeups() const noexcept { return deferred_taskrun_; }
    bool on_loop_thread() const noexcept { return std::this_thread::get_id() == loop_thread_; }
    const loop_stats& stats() const noexcept { return stats_; }
    // When this turn's completions were reaped, or, where coroutines ran
    // since or the loop is stepped by run_once()/run_ready(), when its turn
    // hooks began: a clock for work done per completion or per turn that
    // needs the time to within a turn, not to the nanosecond (a protocol
    // engine's input and timers), at no cost per call.
    std::chrono::steady_clock::time_point turn_time() const noexcept { return turn_time_; }
    // Operations submitted and not yet completed (the internal wake-up read
    // excluded): zero means nothing is pending in the kernel for users.
    std::size_t pending_operations() const noexcept { return busy_slots_ - internal_busy_; }

    // --- for awaitables and transports built on the loop ---
    io_uring* native() noexcept { return &ring_; }
    // A fresh id for a provided-buffer group on this ring.
    int allocate_buffer_group() noexcept { return next_buffer_group_++; }
    io_uring_sqe* get_sqe();
    std::uint32_t acquire_slot();
    detail::op_slot& slot(std::uint32_t index) noexcept { return *slots_[index]; }
    void arm(io_uring_sqe* sqe, std::uint32_t index) noexcept;
    // Submits an operation whose completions go to on_complete(loop, slot)
    // instead of resuming a coroutine (multishot receives, transports'
    // timers). prepare(sqe, slot) fills the SQE; the slot can hold data the
    // kernel reads. Returns the slot index.
    template <typename Prepare>
    std::uint32_t arm_callback(void (*on_complete)(event_loop&, detail::op_slot&), void* context,
                               Prepare prepare);
    void cancel(std::uint32_t index) noexcept;
    // The awaiter of a still-busy slot is going away: cancel it and reap
    // completions until the kernel has finished with it, then free it.
    void abandon(std::uint32_t index) noexcept;
    void release_slot(std::uint32_t index) noexcept;
    void make_ready(std::coroutine_handle<> h) { ready_.push_back(h); }
    // A coroutine made ready is being destroyed before it ran: drop it.
    void forget(std::coroutine_handle<> h) noexcept;

private:
    friend struct detail::cancel_request;
    void post_resume(std::coroutine_handle<> h);
    void turn(const bool& finished);
    // Resume what is ready, run the hooks: whether one has more.
    // driven_from_outside: run_once()/run_ready(), whose caller's own work
    // came before (turn_time() is read anew for the hooks).
    bool run_ready_work(bool driven_from_outside);
    void submit_counted();
    void count_submitted(int submitted) noexcept;
    void reap();
    void drain_posted();
    void arm_wakeup();
    static void on_wakeup(event_loop& loop, detail::op_slot& slot);
    std::uint32_t wake_slot_ = 0;
    bool shutting_down_ = false;
    int next_buffer_group_ = 1;

    bool spin() noexcept;
    void yield_core() noexcept;  // loop_options::yield_while_polling
    void wait_for_completion();
    void enable_once() noexcept;
    // coalesce_wakeups binds the ring to one thread (SINGLE_ISSUER): run()
    // and run_once() elsewhere throw rather than spin on refused calls.
    void check_driving_thread() const;
    [[noreturn]] static void throw_foreign_thread();
    bool on_foreign_thread() const noexcept {
        return deferred_taskrun_ && ring_enabled_ && std::this_thread::get_id() != submitter_;
    }
    // The next blocking wait gathers arrivals: coalesce_wakeups is in effect
    // and a transport said expect_more() this turn.
    bool gathering_due() const noexcept { return deferred_taskrun_ && expect_more_; }

    loop_options options_;
    unsigned core_sharers_ = 0;  // add_core_sharer()
    bool taskrun_flag_ = false;  // the kernel flags pending task work (IORING_SQ_TASKRUN)
    // coalesce_wakeups in effect: the ring defers task work to this loop's
    // thread, and starts disabled until that thread first enters the kernel.
    bool deferred_taskrun_ = false;
    bool ring_enabled_ = true;
    std::thread::id submitter_;  // the thread that enabled the ring
    bool expect_more_ = false;  // expect_more() this turn
    std::chrono::steady_clock::time_point last_work_{};  // busy_poll: the last turn that did something
    io_uring ring_{};
    int wake_fd_ = -1;
    std::thread::id loop_thread_;
    std::vector<std::unique_ptr<detail::op_slot>> slots_;
    std::vector<std::uint32_t> free_slots_;
    std::size_t busy_slots_ = 0;
    std::size_t internal_busy_ = 0;
    std::deque<std::coroutine_handle<>> ready_;
    bool hooks_want_more_ = false;  // the last run_ready()'s hooks have more to do
    std::mutex posted_mutex_;
    std::vector<std::function<void()>> posted_;
    std::vector<std::pair<std::size_t, std::function<bool()>>> turn_hooks_;
    std::vector<std::pair<std::size_t, std::function<void()>>> idle_hooks_;
    std::size_t next_hook_id_ = 1;
    loop_stats stats_;
    std::chrono::steady_clock::time_point turn_time_ = std::chrono::steady_clock::now();
};

namespace detail {

template <typename Prepare, bool Raw>
class sqe_awaiter {
public:
    sqe_awaiter(event_loop& loop, Prepare prepare, std::stop_token stop)
        : loop_(loop), prepare_(std::move(prepare)), stop_(std::move(stop)) {}
    sqe_awaiter(const sqe_awaiter&) = delete;
    sqe_awaiter& operator=(const sqe_awaiter&) = delete;
    ~sqe_awaiter() {
        cancel_on_stop_.reset();
        if (slot_ != none) loop_.abandon(slot_);
    }

    bool await_ready() const noexcept { return stop_.stop_requested(); }
    void await_suspend(std::coroutine_handle<> h) {
        io_uring_sqe* sqe = loop_.get_sqe();
        slot_ = loop_.acquire_slot();
        auto& s = loop_.slot(slot_);
        s.waiter = h;
        prepare_(sqe);
        loop_.arm(sqe, slot_);
        if (stop_.stop_possible())
            cancel_on_stop_.emplace(stop_, cancel_request{&loop_, slot_, s.generation});
    }
    int await_resume() {
        cancel_on_stop_.reset();
        int res = -ECANCELED;  // the stop token fired before submission
        if (slot_ != none) {
            res = loop_.slot(slot_).result;
            loop_.release_slot(std::exchange(slot_, none));
        }
        if constexpr (!Raw) {
            if (res < 0) throw_errno(res, "io_uring operation failed");
        }
        return res;
    }

private:
    static constexpr std::uint32_t none = UINT32_MAX;
    event_loop& loop_;
    Prepare prepare_;
    std::stop_token stop_;
    std::uint32_t slot_ = none;
    std::optional<std::stop_callback<cancel_request>> cancel_on_stop_;
};

// Runs a task to completion and raises a flag at its end.
struct flagging_coroutine {
    struct promise_type {
        bool* done = nullptr;
        flagging_coroutine get_return_object() noexcept {
            return {std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        std::suspend_always final_suspend() noexcept {
            *done = true;
            return {};
        }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
    std::coroutine_handle<promise_type> handle;
};

template <typename T, typename Out>
flagging_coroutine run_and_keep(task<T>& inner, std::exception_ptr& failure, Out& out) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(inner);
            out.emplace(true);
        } else {
            out.emplace(co_await std::move(inner));
        }
    } catch (...) {
        failure = std::current_exception();
    }
}

}  // namespace detail

template <typename Prepare>
std::uint32_t event_loop::arm_callback(void (*on_complete)(event_loop&, detail::op_slot&), void* context,
                                       Prepare prepare) {
    io_uring_sqe* sqe = get_sqe();
    std::uint32_t index = acquire_slot();
    auto& s = slot(index);
    s.on_complete = on_complete;
    s.context = context;
    prepare(sqe, s);
    arm(sqe, index);
    return index;
}

template <typename Prepare>
auto event_loop::submit(Prepare prepare, std::stop_token stop) {
    return detail::sqe_awaiter<Prepare, false>(*this, std::move(prepare), std::move(stop));
}

template <typename Prepare>
auto event_loop::submit_raw(Prepare prepare, std::stop_token stop) {
    return detail::sqe_awaiter<Prepare, true>(*this, std::move(prepare), std::move(stop));
}

template <typename T>
T event_loop::run(task<T> t) {
    check_driving_thread();
    loop_thread_ = std::this_thread::get_id();
    bool done = false;
    std::exception_ptr failure;
    std::optional<std::conditional_t<std::is_void_v<T>, bool, T>> out;
    auto runner = detail::run_and_keep(t, failure, out);
    runner.handle.promise().done = &done;
    ready_.push_back(runner.handle);
    while (!done) turn(done);
    runner.handle.destroy();
    if (failure) std::rethrow_exception(failure);
    if constexpr (!std::is_void_v<T>) return std::move(*out);
}

}  // namespace vmrdma
