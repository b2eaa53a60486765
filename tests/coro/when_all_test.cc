// when_all and async_scope: ordering, exceptions, structured completion.
#include <doctest/doctest.h>

#include <stdexcept>
#include <vector>

#include "vmrdma/async_scope.hpp"
#include "vmrdma/event_loop.hpp"
#include "vmrdma/sync_wait.hpp"
#include "vmrdma/when_all.hpp"

using namespace std::chrono_literals;
using vmrdma::async_scope;
using vmrdma::event_loop;
using vmrdma::sync_wait;
using vmrdma::task;
using vmrdma::when_all;

namespace {
task<int> value(int v) { co_return v; }
task<void> nothing() { co_return; }
task<int> fails(const char* what) {
    throw std::runtime_error(what);
    co_return 0;
}
}  // namespace

TEST_CASE("when_all returns results in argument order") {
    auto [a, b, c] = sync_wait(when_all(value(1), value(2), nothing()));
    CHECK(a == 1);
    CHECK(b == 2);
    (void)c;
}

TEST_CASE("when_all over a range keeps range order even when finishing out of order") {
    event_loop loop;
    std::vector<int> finish_order;
    auto sleeper = [&](int id, std::chrono::milliseconds d) -> task<int> {
        co_await loop.sleep_for(d);
        finish_order.push_back(id);
        co_return id;
    };
    std::vector<task<int>> tasks;
    tasks.push_back(sleeper(0, 30ms));
    tasks.push_back(sleeper(1, 1ms));
    tasks.push_back(sleeper(2, 15ms));
    auto results = loop.run(when_all(std::move(tasks)));
    CHECK(results == std::vector<int>{0, 1, 2});
    CHECK(finish_order == std::vector<int>{1, 2, 0});
}

TEST_CASE("when_all of an empty range completes at once") {
    CHECK(sync_wait(when_all(std::vector<task<int>>{})).empty());
}

TEST_CASE("when_all waits for every task, then rethrows the first failure by position") {
    event_loop loop;
    bool slow_finished = false;
    auto slow = [&]() -> task<int> {
        co_await loop.sleep_for(5ms);
        slow_finished = true;
        co_return 1;
    };
    auto run = [&]() -> task<void> {
        co_await when_all(fails("first"), slow(), fails("second"));
    };
    CHECK_THROWS_WITH(loop.run(run()), "first");
    CHECK(slow_finished);
}

TEST_CASE("async_scope join waits for all spawned tasks") {
    event_loop loop;
    int finished = 0;
    auto child = [&](std::chrono::milliseconds d) -> task<void> {
        co_await loop.sleep_for(d);
        ++finished;
    };
    auto parent = [&]() -> task<void> {
        async_scope scope;
        scope.spawn(child(3ms));
        scope.spawn(child(1ms));
        scope.spawn(child(2ms));
        CHECK(scope.running() == 3);
        co_await scope.join();
        CHECK(scope.running() == 0);
    };
    loop.run(parent());
    CHECK(finished == 3);
}

TEST_CASE("async_scope join rethrows a child's exception after all finished") {
    event_loop loop;
    int finished = 0;
    auto ok = [&]() -> task<void> {
        co_await loop.sleep_for(2ms);
        ++finished;
    };
    auto bad = [&]() -> task<void> {
        co_await loop.sleep_for(1ms);
        throw std::runtime_error("child failed");
    };
    auto parent = [&]() -> task<void> {
        async_scope scope;
        scope.spawn(ok());
        scope.spawn(bad());
        co_await scope.join();
    };
    CHECK_THROWS_WITH(loop.run(parent()), "child failed");
    CHECK(finished == 1);
}

TEST_CASE("ten thousand concurrent tasks all complete") {
    event_loop loop;
    constexpr int count = 10000;
    int finished = 0;
    auto one = [&](int i) -> task<void> {
        co_await loop.sleep_for(std::chrono::microseconds(i % 7));
        ++finished;
    };
    auto parent = [&]() -> task<void> {
        async_scope scope;
        for (int i = 0; i < count; ++i) scope.spawn(one(i));
        co_await scope.join();
    };
    loop.run(parent());
    CHECK(finished == count);
    CHECK(loop.pending_operations() == 0);
    // Batched submission: far fewer io_uring_enter calls than operations.
    CHECK(loop.stats().submits < loop.stats().sqes);
}
