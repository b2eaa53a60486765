// async_scope: structured concurrency for spawned tasks. spawn() starts a task
// at once and lets it run concurrently with the spawner; join() completes when
// every spawned task has finished and rethrows the first exception any of
// them threw. A scope must be joined before it is destroyed (destroying one
// with running children terminates: they would outlive what they borrow).
// Spawn and join from the thread that resumes the children (the loop thread).
//
// Lifetimes: a coroutine lambda reaches its captures through the closure
// object, so `scope.spawn([&x]() -> task<void> { ... }())` runs on after the
// temporary closure died at the semicolon, and crashes or worse. Pass the
// lambda itself, not called: `scope.spawn([&x]() -> task<void> { ... })`;
// the scope keeps the closure alive until its task has finished.
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <type_traits>
#include <utility>

#include "vmrdma/task.hpp"

namespace vmrdma {

class async_scope {
public:
    async_scope() = default;
    async_scope(const async_scope&) = delete;
    async_scope& operator=(const async_scope&) = delete;
    ~async_scope() {
        if (running_ != 0) std::terminate();
    }

    void spawn(task<void> t) {
        ++running_;
        auto c = run_child(std::move(t));
        c.handle.promise().scope = this;
        c.handle.resume();
    }

    // Spawns make(), keeping the callable (a coroutine lambda and its
    // captures) alive until the task it returned has finished.
    template <typename MakeTask>
        requires std::is_invocable_r_v<task<void>, MakeTask&>
    void spawn(MakeTask make) {
        ++running_;
        auto c = run_owned(std::move(make));
        c.handle.promise().scope = this;
        c.handle.resume();
    }

    std::size_t running() const noexcept { return running_; }

    // Waits for every spawned task; rethrows the first failure.
    auto join() noexcept {
        struct awaiter {
            async_scope& scope;
            bool await_ready() noexcept { return scope.running_ == 0; }
            void await_suspend(std::coroutine_handle<> h) noexcept { scope.joiner_ = h; }
            void await_resume() {
                if (auto e = std::exchange(scope.first_error_, nullptr)) std::rethrow_exception(e);
            }
        };
        return awaiter{*this};
    }

private:
    // A self-destroying coroutine that owns one spawned task.
    struct child {
        struct promise_type {
            async_scope* scope = nullptr;
            child get_return_object() noexcept {
                return {std::coroutine_handle<promise_type>::from_promise(*this)};
            }
            std::suspend_always initial_suspend() noexcept { return {}; }
            auto final_suspend() noexcept {
                struct finish {
                    bool await_ready() noexcept { return false; }
                    std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
                        async_scope* s = h.promise().scope;
                        h.destroy();
                        return s->child_finished();
                    }
                    void await_resume() noexcept {}
                };
                return finish{};
            }
            void return_void() noexcept {}
            void unhandled_exception() noexcept { scope->record(std::current_exception()); }
        };
        std::coroutine_handle<promise_type> handle;
    };

    static child run_child(task<void> t) {
        co_await std::move(t);
    }

    // `make` is a parameter, so it lives in this frame as long as the task.
    template <typename MakeTask>
    static child run_owned(MakeTask make) {
        co_await make();
    }

    void record(std::exception_ptr e) noexcept {
        if (!first_error_) first_error_ = e;
    }

    std::coroutine_handle<> child_finished() noexcept {
        if (--running_ == 0 && joiner_) return std::exchange(joiner_, {});
        return std::noop_coroutine();
    }

    std::size_t running_ = 0;
    std::coroutine_handle<> joiner_;
    std::exception_ptr first_error_;
};

}  // namespace vmrdma
