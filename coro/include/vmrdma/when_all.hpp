// when_all: start several tasks, resume the awaiter once every one finished.
// Results come back in argument (or range) order; a void task yields
// std::monostate. If any task threw, all are still awaited to the end (nothing
// outlives what it borrows) and then the first exception by position is
// rethrown.
#pragma once

#include <atomic>
#include <coroutine>
#include <exception>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "vmrdma/task.hpp"

namespace vmrdma {

template <typename T>
using result_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

namespace detail {

// Counts finished children; the last to arrive resumes the waiter.
struct completion_latch {
    explicit completion_latch(std::size_t children) : count(children + 1) {}
    std::atomic<std::size_t> count;
    std::coroutine_handle<> waiter;
    bool arrive() noexcept { return count.fetch_sub(1, std::memory_order_acq_rel) == 1; }
};

template <typename T>
class latched_child {
public:
    struct promise_type {
        completion_latch* latch = nullptr;
        std::variant<std::monostate, T, std::exception_ptr> result;

        latched_child get_return_object() noexcept {
            return latched_child{std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        auto final_suspend() noexcept {
            struct arrive {
                bool await_ready() noexcept { return false; }
                std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
                    auto* latch = h.promise().latch;
                    if (latch->arrive()) return latch->waiter;
                    return std::noop_coroutine();
                }
                void await_resume() noexcept {}
            };
            return arrive{};
        }
        template <typename U>
        void return_value(U&& v) {
            result.template emplace<1>(std::forward<U>(v));
        }
        void unhandled_exception() noexcept { result.template emplace<2>(std::current_exception()); }
    };

    explicit latched_child(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    latched_child(latched_child&& o) noexcept : handle_(std::exchange(o.handle_, {})) {}
    latched_child& operator=(latched_child&&) = delete;
    ~latched_child() {
        if (handle_) handle_.destroy();
    }

    void start(completion_latch& latch) noexcept {
        handle_.promise().latch = &latch;
        handle_.resume();
    }
    void rethrow_if_failed() const {
        auto& r = handle_.promise().result;
        if (r.index() == 2) std::rethrow_exception(std::get<2>(r));
    }
    T take() { return std::move(std::get<1>(handle_.promise().result)); }

private:
    std::coroutine_handle<promise_type> handle_;
};

template <typename T>
latched_child<result_t<T>> make_latched(task<T> t) {
    if constexpr (std::is_void_v<T>) {
        co_await std::move(t);
        co_return std::monostate{};
    } else {
        co_return co_await std::move(t);
    }
}

// Starts every child, then suspends until the latch says all have finished.
template <typename StartAll>
struct latch_awaiter {
    completion_latch& latch;
    StartAll start_all;
    bool await_ready() noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> waiter) noexcept {
        latch.waiter = waiter;
        start_all();
        return !latch.arrive();
    }
    void await_resume() noexcept {}
};

}  // namespace detail

template <typename... Ts>
task<std::tuple<result_t<Ts>...>> when_all(task<Ts>... tasks) {
    std::tuple<detail::latched_child<result_t<Ts>>...> children{
        detail::make_latched(std::move(tasks))...};
    detail::completion_latch latch{sizeof...(Ts)};
    auto start_all = [&] { std::apply([&](auto&... c) { (c.start(latch), ...); }, children); };
    co_await detail::latch_awaiter<decltype(start_all)>{latch, start_all};
    std::apply([](auto&... c) { (c.rethrow_if_failed(), ...); }, children);
    co_return std::apply([](auto&... c) { return std::tuple<result_t<Ts>...>{c.take()...}; },
                         children);
}

template <typename T>
task<std::vector<result_t<T>>> when_all(std::vector<task<T>> tasks) {
    std::vector<detail::latched_child<result_t<T>>> children;
    children.reserve(tasks.size());
    for (auto& t : tasks) children.push_back(detail::make_latched(std::move(t)));
    detail::completion_latch latch{children.size()};
    auto start_all = [&] {
        for (auto& c : children) c.start(latch);
    };
    co_await detail::latch_awaiter<decltype(start_all)>{latch, start_all};
    for (auto& c : children) c.rethrow_if_failed();
    std::vector<result_t<T>> results;
    results.reserve(children.size());
    for (auto& c : children) results.push_back(c.take());
    co_return results;
}

}  // namespace vmrdma
