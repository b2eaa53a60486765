// sync_wait: block the calling thread until a task finishes, for tasks that
// are resumed by someone else (another thread, or a loop running elsewhere).
// To drive an event_loop on this thread, use event_loop::run(task) instead.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <semaphore>
#include <type_traits>

#include "vmrdma/task.hpp"

namespace vmrdma {

namespace detail {

// A coroutine that signals a semaphore only once it is suspended at its end,
// so the waiting thread may destroy it as soon as it wakes.
struct signalling_coroutine {
    struct promise_type {
        std::binary_semaphore* done = nullptr;
        signalling_coroutine get_return_object() noexcept {
            return {std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_always initial_suspend() noexcept { return {}; }
        auto final_suspend() noexcept {
            struct signal {
                bool await_ready() noexcept { return false; }
                void await_suspend(std::coroutine_handle<promise_type> h) noexcept {
                    h.promise().done->release();
                }
                void await_resume() noexcept {}
            };
            return signal{};
        }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); }
    };
    std::coroutine_handle<promise_type> handle;
};

template <typename T, typename Out>
signalling_coroutine run_and_store(task<T>& inner, std::exception_ptr& error, Out& out) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(inner);
            out.emplace(true);
        } else {
            out.emplace(co_await std::move(inner));
        }
    } catch (...) {
        error = std::current_exception();
    }
}

}  // namespace detail

template <typename T>
T sync_wait(task<T> t) {
    std::binary_semaphore done{0};
    std::exception_ptr error;
    std::optional<std::conditional_t<std::is_void_v<T>, bool, T>> out;
    auto runner = detail::run_and_store(t, error, out);
    runner.handle.promise().done = &done;
    runner.handle.resume();
    done.acquire();
    runner.handle.destroy();
    if (error) std::rethrow_exception(error);
    if constexpr (!std::is_void_v<T>) return std::move(*out);
}

}  // namespace vmrdma
