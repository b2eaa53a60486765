// task<T>: a lazy coroutine. Nothing runs until the task is awaited; when it
// finishes, its awaiter is resumed by symmetric transfer (no stack growth on
// long chains). Values and exceptions propagate to the awaiter. Destroying a
// task that never finished destroys its frame and everything it holds.
// Awaiting an empty task (default-constructed or moved from) throws
// std::future_error(broken_promise): there is no coroutine to give a value.
#pragma once

#include <coroutine>
#include <exception>
#include <future>
#include <utility>
#include <variant>

namespace vmrdma {

template <typename T = void>
class task;

namespace detail {

class promise_base {
public:
    std::suspend_always initial_suspend() noexcept { return {}; }

    struct final_awaiter {
        bool await_ready() noexcept { return false; }
        template <typename P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> done) noexcept {
            auto next = done.promise().continuation_;
            return next ? next : std::noop_coroutine();
        }
        void await_resume() noexcept {}
    };
    final_awaiter final_suspend() noexcept { return {}; }

    void set_continuation(std::coroutine_handle<> c) noexcept { continuation_ = c; }

private:
    std::coroutine_handle<> continuation_;
};

template <typename T>
class promise final : public promise_base {
public:
    task<T> get_return_object() noexcept;
    void unhandled_exception() noexcept { result_.template emplace<2>(std::current_exception()); }
    template <typename U>
    void return_value(U&& value) {
        result_.template emplace<1>(std::forward<U>(value));
    }
    T take() {
        if (result_.index() == 2) std::rethrow_exception(std::get<2>(result_));
        return std::move(std::get<1>(result_));
    }

private:
    std::variant<std::monostate, T, std::exception_ptr> result_;
};

template <>
class promise<void> final : public promise_base {
public:
    task<void> get_return_object() noexcept;
    void unhandled_exception() noexcept { exception_ = std::current_exception(); }
    void return_void() noexcept {}
    void take() {
        if (exception_) std::rethrow_exception(exception_);
    }

private:
    std::exception_ptr exception_;
};

}  // namespace detail

template <typename T>
class [[nodiscard]] task {
public:
    using promise_type = detail::promise<T>;
    using value_type = T;

    task() noexcept = default;
    explicit task(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    task(task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    task& operator=(task&& other) noexcept {
        if (this != &other) {
            reset();
            handle_ = std::exchange(other.handle_, {});
        }
        return *this;
    }
    task(const task&) = delete;
    task& operator=(const task&) = delete;
    ~task() { reset(); }

    bool valid() const noexcept { return static_cast<bool>(handle_); }
    bool done() const noexcept { return handle_ && handle_.done(); }

    auto operator co_await() && noexcept {
        struct awaiter {
            std::coroutine_handle<promise_type> handle;
            bool await_ready() noexcept { return !handle || handle.done(); }
            std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) noexcept {
                handle.promise().set_continuation(caller);
                return handle;
            }
            T await_resume() {
                if (!handle) throw std::future_error(std::future_errc::broken_promise);
                return handle.promise().take();
            }
        };
        return awaiter{handle_};
    }

    // For the runtime's adapters (sync_wait, when_all, spawn): the raw handle.
    std::coroutine_handle<promise_type> handle() const noexcept { return handle_; }

private:
    void reset() noexcept {
        if (handle_) std::exchange(handle_, {}).destroy();
    }

    std::coroutine_handle<promise_type> handle_;
};

namespace detail {
template <typename T>
task<T> promise<T>::get_return_object() noexcept {
    return task<T>{std::coroutine_handle<promise<T>>::from_promise(*this)};
}
inline task<void> promise<void>::get_return_object() noexcept {
    return task<void>{std::coroutine_handle<promise<void>>::from_promise(*this)};
}
}  // namespace detail

}  // namespace vmrdma
