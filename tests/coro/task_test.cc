// task<T> semantics: laziness, values, exceptions, symmetric transfer and
// destruction of tasks that never ran or never finished.
#include <doctest/doctest.h>

#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "vmrdma/sync_wait.hpp"
#include "vmrdma/task.hpp"

using vmrdma::sync_wait;
using vmrdma::task;

namespace {

task<int> answer() { co_return 42; }
task<std::string> text() { co_return std::string(100, 'x'); }
task<void> nothing() { co_return; }
task<int> fails() {
    throw std::runtime_error("boom");
    co_return 0;
}
task<int> add_one(task<int> inner) { co_return co_await std::move(inner) + 1; }

struct live_counter {
    static inline int live = 0;
    live_counter() { ++live; }
    live_counter(const live_counter&) { ++live; }
    ~live_counter() { --live; }
};

task<int> holds_counter(live_counter c) {
    (void)c;
    co_return 1;
}

}  // namespace

TEST_CASE("a task does not start until it is awaited") {
    bool started = false;
    auto body = [&]() -> task<void> {
        started = true;
        co_return;
    };
    auto t = body();
    CHECK_FALSE(started);
    sync_wait(std::move(t));
    CHECK(started);
}

TEST_CASE("values propagate through co_await") {
    CHECK(sync_wait(answer()) == 42);
    CHECK(sync_wait(add_one(add_one(answer()))) == 44);
    CHECK(sync_wait(text()).size() == 100);
    sync_wait(nothing());
}

TEST_CASE("exceptions propagate to the awaiter") {
    CHECK_THROWS_WITH_AS(sync_wait(fails()), "boom", std::runtime_error);
    CHECK_THROWS_AS(sync_wait(add_one(fails())), std::runtime_error);
}

TEST_CASE("awaiting an empty task throws broken_promise, as a broken promise does") {
    auto is_broken_promise = [](const std::future_error& e) {
        return e.code() == std::make_error_code(std::future_errc::broken_promise);
    };
    // Default-constructed.
    try {
        sync_wait(add_one(task<int>{}));
        FAIL("awaiting an empty task<int> returned");
    } catch (const std::future_error& e) {
        CHECK(is_broken_promise(e));
    }
    // Moved from: the coroutine now belongs to another task.
    auto await_void = [](task<void> t) -> task<void> { co_await std::move(t); };
    task<void> full = nothing();
    task<void> taken = std::move(full);
    CHECK_THROWS_AS(sync_wait(await_void(std::move(full))), std::future_error);
    sync_wait(await_void(std::move(taken)));  // the one that owns it still runs
}

TEST_CASE("destroying a task that never ran frees its frame and arguments") {
    live_counter::live = 0;
    {
        auto t = holds_counter(live_counter{});
        CHECK(live_counter::live == 1);
    }
    CHECK(live_counter::live == 0);
}

TEST_CASE("destroying an unfinished task frees the whole chain") {
    live_counter::live = 0;
    // `never` suspends forever (nobody resumes it); destroying the outer task
    // must free both frames.
    struct suspend_forever {
        bool await_ready() noexcept { return false; }
        void await_suspend(std::coroutine_handle<>) noexcept {}
        void await_resume() noexcept {}
    };
    auto never = [](live_counter c) -> task<int> {
        (void)c;
        co_await suspend_forever{};
        co_return 0;
    };
    auto outer = [](task<int> inner, live_counter c) -> task<int> {
        (void)c;
        co_return co_await std::move(inner);
    };
    {
        auto t = outer(never(live_counter{}), live_counter{});
        auto starter = [](task<int>& t) -> task<void> {
            co_await std::move(t);
        };
        auto s = starter(t);
        s.handle().resume();  // runs until `never` suspends
        CHECK_FALSE(t.done());
        CHECK(live_counter::live == 2);
    }
    CHECK(live_counter::live == 0);
}

TEST_CASE("tasks move") {
    auto a = answer();
    auto b = std::move(a);
    CHECK_FALSE(a.valid());
    CHECK(b.valid());
    a = std::move(b);
    CHECK(sync_wait(std::move(a)) == 42);
}

TEST_CASE("sync_wait waits for a task resumed by another thread") {
    struct resume_elsewhere {
        std::unique_ptr<std::thread>* thread;
        bool await_ready() noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) {
            *thread = std::make_unique<std::thread>([h] { h.resume(); });
        }
        void await_resume() noexcept {}
    };
    std::unique_ptr<std::thread> worker;
    auto t = [](std::unique_ptr<std::thread>* w) -> task<int> {
        co_await resume_elsewhere{w};
        co_return 7;
    }(&worker);
    CHECK(sync_wait(std::move(t)) == 7);
    worker->join();
}
