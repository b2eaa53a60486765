// with_timeout: run an operation with a deadline. The operation is a callable
// taking a std::stop_token and returning task<T>; when the deadline passes the
// token is stopped, the operation unwinds (its pending I/O cancelled), and
// with_timeout throws errc::timeout. An outer stop token cancels both, and
// then the operation's own cancellation error propagates. with_timeout
// returns only after the operation and the timer have both finished.
#pragma once

#include <chrono>
#include <stop_token>
#include <system_error>

#include "vmrdma/error.hpp"
#include "vmrdma/event_loop.hpp"
#include "vmrdma/task.hpp"
#include "vmrdma/when_all.hpp"

namespace vmrdma {

template <typename MakeTask>
auto with_timeout(event_loop& loop, std::chrono::nanoseconds limit, MakeTask make,
                  std::stop_token outer = {})
    -> decltype(make(std::stop_token{})) {
    using T = typename decltype(make(std::stop_token{}))::value_type;
    std::stop_source op_stop;
    std::stop_source timer_stop;
    bool expired = false;
    auto stop_both = [&] {
        op_stop.request_stop();
        timer_stop.request_stop();
    };
    std::stop_callback<decltype(stop_both)> forward_outer(outer, stop_both);

    auto operation = [&]() -> task<T> {
        struct stop_timer_on_exit {
            std::stop_source& s;
            ~stop_timer_on_exit() { s.request_stop(); }
        } guard{timer_stop};
        co_return co_await make(op_stop.get_token());
    };
    auto timer = [&]() -> task<void> {
        try {
            co_await loop.sleep_for(limit, timer_stop.get_token());
        } catch (const error& e) {
            if (e.code() == errc::cancelled) co_return;  // the operation won
            throw;
        }
        expired = true;
        op_stop.request_stop();
    };

    try {
        auto results = co_await when_all(operation(), timer());
        if constexpr (!std::is_void_v<T>) co_return std::move(std::get<0>(results));
    } catch (const error& e) {
        if (expired && e.code() == errc::cancelled)
            throw error(errc::timeout, "operation did not finish within its time limit");
        throw;
    }
}

}  // namespace vmrdma
