// The io_uring event loop: timers by ordering, cancellation, timeouts,
// cross-thread wake-ups, generic SQEs, destruction with I/O pending, and
// clean shutdown with no fd left behind.
#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/fd_count.hpp"
#include "vmrdma/runtime.hpp"

using namespace std::chrono_literals;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::event_loop;
using vmrdma::task;

namespace {


bool is_cancelled(const error& e) { return e.code() == errc::cancelled; }

struct loop_stats_pair {
    vmrdma::loop_stats stats;
    bool coalescing;
};

}  // namespace

TEST_CASE("timers complete in deadline order, not start order") {
    event_loop loop;
    std::vector<int> order;
    auto sleeper = [&](int id, std::chrono::milliseconds d) -> task<void> {
        co_await loop.sleep_for(d);
        order.push_back(id);
    };
    loop.run(vmrdma::when_all(sleeper(3, 30ms), sleeper(1, 1ms), sleeper(2, 15ms)));
    CHECK(order == std::vector<int>{1, 2, 3});
}

TEST_CASE("a stop token cancels a pending timer promptly with errc::cancelled") {
    event_loop loop;
    std::stop_source stop;
    bool cancelled = false;
    auto sleeper = [&]() -> task<void> {
        try {
            co_await loop.sleep_for(1h, stop.get_token());
        } catch (const error& e) {
            cancelled = is_cancelled(e);
        }
    };
    auto stopper = [&]() -> task<void> {
        co_await loop.sleep_for(1ms);
        stop.request_stop();
    };
    loop.run(vmrdma::when_all(sleeper(), stopper()));  // returns long before an hour
    CHECK(cancelled);
    CHECK(loop.pending_operations() == 0);
}

TEST_CASE("an operation whose token is already stopped is never submitted") {
    event_loop loop;
    std::stop_source stop;
    stop.request_stop();
    auto t = [&]() -> task<void> { co_await loop.sleep_for(1h, stop.get_token()); };
    CHECK_THROWS_AS(loop.run(t()), error);
    CHECK(loop.stats().sqes <= 1);  // only the loop's own wake-up read
}

TEST_CASE("a stop requested from another thread cancels the operation") {
    event_loop loop;
    std::stop_source stop;
    std::thread other;
    auto t = [&]() -> task<void> {
        other = std::thread([&] {
            std::this_thread::sleep_for(2ms);
            stop.request_stop();
        });
        co_await loop.sleep_for(1h, stop.get_token());
    };
    try {
        loop.run(t());
        FAIL("the sleep should have been cancelled");
    } catch (const error& e) {
        CHECK(is_cancelled(e));
    }
    other.join();
    CHECK(loop.pending_operations() == 0);
}

TEST_CASE("with_timeout turns an overdue operation into errc::timeout") {
    event_loop loop;
    auto slow = [&](std::stop_token st) -> task<int> {
        co_await loop.sleep_for(1h, st);
        co_return 1;
    };
    try {
        loop.run(vmrdma::with_timeout(loop, 2ms, slow));
        FAIL("expected a timeout");
    } catch (const error& e) {
        CHECK(e.code() == errc::timeout);
    }
    CHECK(loop.pending_operations() == 0);
}

TEST_CASE("with_timeout returns the value of an operation that finishes in time") {
    event_loop loop;
    auto quick = [&](std::stop_token st) -> task<int> {
        co_await loop.sleep_for(1ms, st);
        co_return 7;
    };
    CHECK(loop.run(vmrdma::with_timeout(loop, 1h, quick)) == 7);
    CHECK(loop.pending_operations() == 0);
}

TEST_CASE("post from many threads runs every item on the loop thread") {
    event_loop loop;
    constexpr int threads = 4;
    constexpr int per_thread = 1000;
    std::atomic<int> ran{0};
    bool all_on_loop = true;
    auto waiter = [&]() -> task<void> {
        std::vector<std::thread> posters;
        const auto loop_id = std::this_thread::get_id();
        for (int t = 0; t < threads; ++t)
            posters.emplace_back([&] {
                for (int i = 0; i < per_thread; ++i)
                    loop.post([&] {
                        if (std::this_thread::get_id() != loop_id) all_on_loop = false;
                        ran.fetch_add(1);
                    });
            });
        for (auto& p : posters) p.join();
        while (ran.load() < threads * per_thread) co_await loop.sleep_for(100us);
    };
    loop.run(waiter());
    CHECK(ran.load() == threads * per_thread);
    CHECK(all_on_loop);
}

TEST_CASE("schedule() moves a coroutine from another thread onto the loop") {
    event_loop loop;
    std::thread::id resumed_on;
    std::thread worker;
    auto hop = [&]() -> task<void> {
        // Leave the loop thread, then come back through schedule().
        struct to_worker {
            std::thread* w;
            bool await_ready() noexcept { return false; }
            void await_suspend(std::coroutine_handle<> h) {
                *w = std::thread([h] { h.resume(); });
            }
            void await_resume() noexcept {}
        };
        co_await to_worker{&worker};
        CHECK(std::this_thread::get_id() != std::thread::id{});
        co_await loop.schedule();
        resumed_on = std::this_thread::get_id();
    };
    loop.run(hop());
    worker.join();
    CHECK(resumed_on == std::this_thread::get_id());
}

TEST_CASE("generic SQEs: write, read, sendmsg, recvmsg and poll") {
    event_loop loop;
    int fds[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    auto t = [&]() -> task<void> {
        const char msg[] = "hello";
        int n = co_await loop.submit(
            [&](io_uring_sqe* s) { io_uring_prep_write(s, fds[0], msg, sizeof msg, 0); });
        CHECK(n == static_cast<int>(sizeof msg));
        int revents = co_await loop.submit(
            [&](io_uring_sqe* s) { io_uring_prep_poll_add(s, fds[1], POLLIN); });
        CHECK((revents & POLLIN) != 0);
        char buf[16] = {};
        n = co_await loop.submit([&](io_uring_sqe* s) { io_uring_prep_read(s, fds[1], buf, sizeof buf, 0); });
        CHECK(n == static_cast<int>(sizeof msg));
        CHECK(std::string(buf) == "hello");

        char out[] = "world";
        iovec iov_out{out, sizeof out};
        msghdr mh_out{};
        mh_out.msg_iov = &iov_out;
        mh_out.msg_iovlen = 1;
        n = co_await loop.submit([&](io_uring_sqe* s) { io_uring_prep_sendmsg(s, fds[1], &mh_out, 0); });
        CHECK(n == static_cast<int>(sizeof out));
        char in[16] = {};
        iovec iov_in{in, sizeof in};
        msghdr mh_in{};
        mh_in.msg_iov = &iov_in;
        mh_in.msg_iovlen = 1;
        n = co_await loop.submit([&](io_uring_sqe* s) { io_uring_prep_recvmsg(s, fds[0], &mh_in, 0); });
        CHECK(n == static_cast<int>(sizeof out));
        CHECK(std::string(in) == "world");
    };
    loop.run(t());
    close(fds[0]);
    close(fds[1]);
}

TEST_CASE("a failed SQE throws with the errno's meaning") {
    event_loop loop;
    auto t = [&]() -> task<void> {
        char buf[4];
        co_await loop.submit([&](io_uring_sqe* s) { io_uring_prep_read(s, -1, buf, sizeof buf, 0); });
    };
    try {
        loop.run(t());
        FAIL("expected EBADF");
    } catch (const error& e) {
        CHECK(e.code() == std::errc::bad_file_descriptor);
    }
}

TEST_CASE("destroying a task suspended on I/O cancels it and leaves nothing in the kernel") {
    event_loop loop;
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    auto reader = [&]() -> task<void> {
        char buf[64];
        co_await loop.submit([&](io_uring_sqe* s) { io_uring_prep_read(s, fds[0], buf, sizeof buf, 0); });
        FAIL("the read can never complete: nobody writes");
    };
    auto t = [&]() -> task<void> {
        auto pending = reader();
        vmrdma::async_scope unused;
        (void)unused;
        // Start the reader, let it submit, then abandon it.
        auto starter = [](task<void>& r) -> task<void> { co_await std::move(r); };
        auto s = starter(pending);
        s.handle().resume();
        co_await loop.sleep_for(1ms);  // the read is now in the kernel
        CHECK(loop.pending_operations() == 1);
        s = {};
        pending = {};
        CHECK(loop.pending_operations() == 0);
    };
    loop.run(t());
    // The pipe still works and nothing read its bytes: the cancelled read
    // did not consume data written afterwards.
    REQUIRE(write(fds[1], "x", 1) == 1);
    char c = 0;
    CHECK(read(fds[0], &c, 1) == 1);
    CHECK(c == 'x');
    close(fds[0]);
    close(fds[1]);
}

TEST_CASE("a loop shuts down with nothing pending and no leaked descriptor") {
    int before = vmrdma::testing::open_fd_count();
    {
        event_loop loop;
        vmrdma::eventfd_channel a(loop, vmrdma::eventfd_wait_mode::read_rearm);
        vmrdma::eventfd_channel b(loop, vmrdma::eventfd_wait_mode::multishot_poll);
        auto t = [&]() -> task<void> {
            a.notify();
            b.notify();
            co_await a.wait();
            co_await b.wait();
            co_await loop.sleep_for(1us);
        };
        loop.run(t());
    }
    CHECK(vmrdma::testing::open_fd_count() == before);
}

TEST_CASE("busy polling finds a completion without blocking") {
    vmrdma::loop_options options;
    options.busy_poll = std::chrono::milliseconds(50);
    event_loop loop(options);
    vmrdma::eventfd_channel ch(loop);
    ch.notify(2);  // the read completes as soon as it is submitted
    CHECK(loop.run(ch.wait()) == 2);
    CHECK(loop.stats().polled >= 1);
    CHECK(loop.pending_operations() == 0);
}

TEST_CASE("busy polling spins on while a turn hook notes work, and blocks once it has stopped for busy_poll") {
    // A transport that takes frames in its turn hook and answers them itself
    // (a passive side of one-sided writes) resumes no coroutine: without
    // note_work() the loop would block busy_poll after the last resumption,
    // and every frame after that would wait for a wake-up. The hook notes
    // work until the notification is on its way, so with notes the loop is
    // still spinning when it lands; without them it has blocked long before
    // (busy_poll 50 ms, the notification after 300). Only whether it blocked
    // is checked, no time.
    using namespace std::chrono;
    vmrdma::loop_options options;
    options.busy_poll = milliseconds(50);
    auto run = [&](bool note) {
        event_loop loop(options);
        vmrdma::eventfd_channel ch(loop);
        std::atomic<bool> notifying{false};
        loop.add_turn_hook([&] {
            if (note && !notifying.load()) loop.note_work();
            return false;
        });
        std::thread notifier([&] {
            std::this_thread::sleep_for(milliseconds(300));
            notifying = true;
            ch.notify();
        });
        loop.run(ch.wait());
        notifier.join();
        return loop.stats().blocks;
    };
    CHECK(run(true) == 0);
    CHECK(run(false) >= 1);
}

TEST_CASE("async_scope keeps a spawned coroutine lambda alive until its task finishes") {
    event_loop loop;
    std::vector<std::string> seen;
    auto t = [&]() -> task<void> {
        vmrdma::async_scope scope;
        for (int i = 0; i < 3; ++i) {
            std::string word(40, static_cast<char>('a' + i));  // heap-allocated, gone after this iteration
            // The lambda, not its call: the scope owns the closure and the
            // copy of `word` it captured, across the suspension below.
            scope.spawn([word, &loop, &seen]() -> task<void> {
                co_await loop.sleep_for(2ms);
                seen.push_back(word);
            });
        }
        co_await scope.join();
    };
    loop.run(t());
    REQUIRE(seen.size() == 3);
    CHECK(seen[0] == std::string(40, 'a'));
    CHECK(seen[2] == std::string(40, 'c'));
}

// run_once and wait_fd: a host that owns its thread (libfabric's manual
// progress) steps the loop itself instead of calling run().
namespace {
// Turns the loop until `done` or `turns` turns have passed, waiting on the
// wait fd (not in the loop) whenever run_once says the loop is idle.
bool step_until(event_loop& loop, const bool& done, int turns) {
    for (int i = 0; i < turns && !done; ++i) {
        if (loop.run_once() && !done) {
            pollfd p{loop.wait_fd(), POLLIN, 0};
            ::poll(&p, 1, 1000);
        }
    }
    return done;
}
}  // namespace

TEST_CASE("run_once(0) never blocks and reports an idle loop") {
    event_loop loop;
    vmrdma::async_scope scope;
    std::stop_source stop;
    bool ended = false;
    // A timer an hour away: a turn that blocked would wait for it.
    scope.spawn([&]() -> task<void> {
        try {
            co_await loop.sleep_for(1h, stop.get_token());
        } catch (const error& e) {
            CHECK(is_cancelled(e));
        }
        ended = true;
    });
    for (int i = 0; i < 100; ++i) CHECK(loop.run_once());
    CHECK_FALSE(ended);
    CHECK(loop.pending_operations() == 1);
    stop.request_stop();
    CHECK(step_until(loop, ended, 100));
    CHECK(scope.running() == 0);
    CHECK(loop.pending_operations() == 0);
}

TEST_CASE("the wait fd wakes a poller for a completion, and run_once reaps it") {
    event_loop loop;
    int fds[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    vmrdma::async_scope scope;
    char buf[8] = {};
    bool got = false;
    scope.spawn([&]() -> task<void> {
        int n = co_await loop.submit([&](io_uring_sqe* s) { io_uring_prep_read(s, fds[1], buf, sizeof buf, 0); });
        CHECK(n == 3);
        got = true;
    });
    REQUIRE(loop.run_once());  // submitted; nothing to reap
    pollfd p{loop.wait_fd(), POLLIN, 0};
    CHECK(::poll(&p, 1, 0) == 0);  // nothing completed yet
    std::thread writer([&] {
        std::this_thread::sleep_for(20ms);
        REQUIRE(::write(fds[0], "abc", 3) == 3);
    });
    CHECK(::poll(&p, 1, 5000) == 1);  // woken by the completion, not the 5 s
    writer.join();
    CHECK(step_until(loop, got, 10));
    CHECK(std::string(buf) == "abc");
    close(fds[0]);
    close(fds[1]);
}

TEST_CASE("post() from another thread wakes a poller on the wait fd") {
    event_loop loop;
    REQUIRE(loop.run_once());  // arms the loop's own wake-up read
    bool ran = false;
    std::thread other([&] {
        std::this_thread::sleep_for(20ms);
        loop.post([&] { ran = true; });
    });
    pollfd p{loop.wait_fd(), POLLIN, 0};
    CHECK(::poll(&p, 1, 5000) == 1);
    other.join();
    CHECK(step_until(loop, ran, 10));
}

TEST_CASE("run_once with a wait returns when an operation completes, and when it does not") {
    event_loop loop;
    vmrdma::async_scope scope;
    bool woke = false;
    scope.spawn([&]() -> task<void> {
        co_await loop.sleep_for(1ms);
        woke = true;
    });
    for (int i = 0; i < 1000 && !woke; ++i) loop.run_once(10s);  // returns at the timer, not after 10 s
    CHECK(woke);
    // Nothing left to complete: it gives up after its wait.
    CHECK(loop.run_once(1ms));
    CHECK(scope.running() == 0);
}

TEST_CASE("run_ready never submits; the submitting thread's wait runs the task work; another thread reaps") {
    // The libfabric provider: application threads take turns at the loop
    // (run_ready, under a lock) and never own an operation; a helper
    // thread submits them and waits in poll(2) on the loop's fd. The
    // kernel must post completions for the thread that reaps them, so
    // task work is not deferred (as fabric/device_context.hpp makes it).
    event_loop loop(vmrdma::loop_options{.coalesce_wakeups = false});
    int fds[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    vmrdma::async_scope scope;
    char buf[4] = {};
    bool got = false;
    std::mutex turn;
    scope.spawn([&]() -> task<void> {
        int n = co_await loop.submit([&](io_uring_sqe* s) { io_uring_prep_read(s, fds[1], buf, sizeof buf, 0); });
        CHECK(n == 3);
        got = true;
    });
    CHECK(loop.run_ready());  // the read (and the loop's own wake-up read) wait to be submitted
    CHECK(io_uring_sq_ready(loop.native()) > 0);
    std::atomic<bool> submitted{false}, waited{false};
    std::thread submitter([&] {
        {
            std::lock_guard lock(turn);
            loop.submit_pending();
        }
        submitted = true;
        pollfd p{loop.wait_fd(), POLLIN, 0};
        ::poll(&p, 1, 10000);  // woken by the read's completion (its task work runs here)
        waited = true;
    });
    while (!submitted) std::this_thread::sleep_for(1ms);
    REQUIRE(::write(fds[0], "abc", 3) == 3);
    submitter.join();
    CHECK(waited);
    for (int i = 0; i < 100 && !got; ++i) {
        std::lock_guard lock(turn);
        loop.run_ready();
    }
    CHECK(got);
    CHECK(std::string(buf) == "abc");
    close(fds[0]);
    close(fds[1]);
}

TEST_CASE("turn_time is the time the loop reaped this turn's completions: it follows the clock, never ahead") {
    vmrdma::event_loop loop;
    std::chrono::steady_clock::time_point after_first{}, after_second{}, seen_first{}, seen_second{};
    auto body = [&]() -> vmrdma::task<void> {
        co_await loop.sleep_for(2ms);
        seen_first = loop.turn_time();
        after_first = std::chrono::steady_clock::now();
        co_await loop.sleep_for(2ms);
        seen_second = loop.turn_time();
        after_second = std::chrono::steady_clock::now();
    };
    loop.run(body());
    CHECK(seen_first <= after_first);
    CHECK(seen_second <= after_second);
    CHECK(seen_second - seen_first >= 2ms);  // the second sleep's completion was reaped 2 ms or more later
}

TEST_CASE("a turn hook's turn_time is read after the coroutines that ran before it in the turn") {
    // The hooks (the eth: engine host's transmit and timers) take their
    // clock from turn_time(); a coroutine that worked for a while before
    // them must not leave them with the time of the reap before it.
    vmrdma::event_loop loop;
    bool worked = false;
    std::chrono::steady_clock::time_point work_done{}, hook_saw{};
    auto id = loop.add_turn_hook([&] {
        if (std::exchange(worked, false)) hook_saw = loop.turn_time();
        return false;
    });
    auto body = [&]() -> vmrdma::task<void> {
        co_await loop.sleep_for(1ms);
        const auto start = std::chrono::steady_clock::now();
        while (std::chrono::steady_clock::now() - start < 2ms) {
        }  // the coroutine's own work, after the reap that resumed it
        work_done = std::chrono::steady_clock::now();
        worked = true;
    };
    loop.run(body());
    loop.remove_turn_hook(id);
    REQUIRE(hook_saw != std::chrono::steady_clock::time_point{});
    CHECK(hook_saw >= work_done);
}

TEST_CASE("run_once: its turn hooks see the time of this call, not of the last one") {
    // A host that steps the loop (libfabric's progress) does its own work
    // between calls, for as long as it likes.
    vmrdma::event_loop loop;
    std::chrono::steady_clock::time_point hook_saw{};
    auto id = loop.add_turn_hook([&] {
        hook_saw = loop.turn_time();
        return false;
    });
    loop.run_once(std::chrono::nanoseconds::zero());
    std::this_thread::sleep_for(1ms);  // the host's own work
    const auto before = std::chrono::steady_clock::now();
    loop.run_once(std::chrono::nanoseconds::zero());
    CHECK(hook_saw >= before);
    std::this_thread::sleep_for(1ms);
    const auto before_ready = std::chrono::steady_clock::now();
    loop.run_ready();
    CHECK(hook_saw >= before_ready);
    loop.remove_turn_hook(id);
}

// A turn hook says once that more is on its way (as the eth: transport
// does after frames of an unfinished message); the blocking turn that
// follows, with only a 5 ms timer pending, gathers for coalesce_wait and
// ends there; the next blocking turn waits for the timer alone.
loop_stats_pair gathering_once(vmrdma::loop_options options) {
    event_loop loop(options);
    bool asked = false, slept = false;
    auto id = loop.add_turn_hook([&] {
        if (!asked) loop.expect_more();
        asked = true;
        return false;
    });
    auto t = [&]() -> task<void> {
        co_await loop.sleep_for(5ms);
        slept = true;
    };
    loop.run(t());
    loop.remove_turn_hook(id);
    CHECK(slept);
    return {loop.stats(), loop.coalescing_wakeups()};
}

TEST_CASE("coalesced wake-ups: after expect_more() the next blocking turn gathers, and only that one") {
    auto [stats, coalescing] = gathering_once({});
    if (!coalescing) {
        MESSAGE("this kernel has no IORING_SETUP_DEFER_TASKRUN (Linux 6.1+): nothing to check");
        return;
    }
    CHECK(stats.blocks >= 2);     // the gathering turn, then the timer's
    CHECK(stats.coalesced == 1);  // only the turn after expect_more() gathered
}

TEST_CASE("a busy-polling loop spins through expect_more(), or with gather_while_polling sleeps once to gather") {
    // busy_poll 1 s outlasts the 5 ms timer: a loop that does not gather
    // spins to the timer and never blocks; one that gathers blocks in the
    // gathering turn only, and spins after it.
    const auto spun = gathering_once(vmrdma::loop_options{.busy_poll = std::chrono::seconds(1)}).stats;
    CHECK(spun.coalesced == 0);
    CHECK(spun.blocks == 0);
    auto [gathered, coalescing] = gathering_once(
        vmrdma::loop_options{.busy_poll = std::chrono::seconds(1), .gather_while_polling = true});
    if (!coalescing) {
        MESSAGE("this kernel has no IORING_SETUP_DEFER_TASKRUN (Linux 6.1+): nothing more to check");
        return;
    }
    CHECK(gathered.coalesced == 1);
    CHECK(gathered.blocks == 1);
    CHECK(gathered.spins >= 1);
}

TEST_CASE("a busy-polling loop with yield_while_polling gives the core away in spins that found nothing, else never") {
    // busy_poll 1 s outlasts the 5 ms sleep: the loop spins until the
    // timer, and every spin before it finds nothing.
    auto spin_through_sleep = [](vmrdma::loop_options o) {
        event_loop loop(o);
        bool slept = false;
        loop.run([&]() -> task<void> {
            co_await loop.sleep_for(5ms);
            slept = true;
        }());
        CHECK(slept);
        return loop.stats();
    };
    const auto yielding = spin_through_sleep({.busy_poll = std::chrono::seconds(1), .yield_while_polling = true});
    CHECK(yielding.spins >= 1);
    CHECK(yielding.yields >= 1);
    CHECK(yielding.yields <= yielding.spins);
    CHECK(yielding.blocks == 0);  // yielding is not sleeping: the loop still never blocked
    const auto spinning = spin_through_sleep({.busy_poll = std::chrono::seconds(1)});
    CHECK(spinning.spins >= 1);
    CHECK(spinning.yields == 0);
    const auto blocking = spin_through_sleep({.yield_while_polling = true});  // no busy_poll: nothing to yield in
    CHECK(blocking.spins == 0);
    CHECK(blocking.yields == 0);
}

TEST_CASE("a busy-polling loop yields in empty spins while a core sharer is counted, and not after") {
    event_loop loop({.busy_poll = std::chrono::seconds(1)});
    auto sleep_5ms = [&]() -> task<void> { co_await loop.sleep_for(5ms); };
    loop.run(sleep_5ms());
    CHECK(loop.stats().yields == 0);
    CHECK_FALSE(loop.shares_cores());
    loop.add_core_sharer();
    loop.add_core_sharer();  // two transports
    loop.remove_core_sharer();
    CHECK(loop.shares_cores());
    loop.run(sleep_5ms());
    const auto shared = loop.stats().yields;
    CHECK(shared >= 1);
    loop.remove_core_sharer();
    CHECK_FALSE(loop.shares_cores());
    loop.run(sleep_5ms());
    CHECK(loop.stats().yields == shared);
}

TEST_CASE("without coalesce_wakeups expect_more() changes nothing") {
    auto [stats, coalescing] = gathering_once(vmrdma::loop_options{.coalesce_wakeups = false});
    CHECK_FALSE(coalescing);
    CHECK(stats.coalesced == 0);
}

TEST_CASE("a coalescing loop made on one thread runs on another; a third thread that tries to run it is told why") {
    // The ring starts disabled and takes the first thread that enters the
    // kernel for it as its only submitter (IORING_SETUP_SINGLE_ISSUER).
    std::optional<event_loop> loop(std::in_place);
    if (!loop->coalescing_wakeups()) return;
    bool done = false;
    std::atomic<bool> ran{false}, tried{false};
    std::thread runner([&] {
        loop->run([&]() -> task<void> {
            co_await loop->sleep_for(1ms);
            done = true;
        }());
        ran = true;
        // Alive until the intruder has tried: a new thread may reuse the id
        // of one that has ended.
        while (!tried) std::this_thread::sleep_for(1ms);
    });
    while (!ran) std::this_thread::sleep_for(1ms);
    CHECK(done);
    std::string what;
    std::thread intruder([&] {
        try {
            loop->run([]() -> task<void> { co_return; }());
        } catch (const error& e) {
            what = e.what();
        }
        tried = true;
    });
    intruder.join();
    runner.join();
    CHECK(what.find("bound to the thread that first drove it") != std::string::npos);
    // Nothing of a user's is pending: it may go on this thread.
    CHECK(loop->pending_operations() == 0);
    loop.reset();
}
