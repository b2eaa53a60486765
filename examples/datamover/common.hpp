// Small helpers shared by the data mover's sides.
#pragma once

#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "vmrdma/event_loop.hpp"

namespace datamover {

// Wakes every coroutine waiting on it (loop thread only).
class notifier {
public:
    explicit notifier(vmrdma::event_loop& loop) : loop_(loop) {}
    auto wait() {
        struct awaiter {
            notifier& n;
            bool await_ready() noexcept { return false; }
            void await_suspend(std::coroutine_handle<> h) { n.waiters_.push_back(h); }
            void await_resume() noexcept {}
        };
        return awaiter{*this};
    }
    void notify_all() {
        for (auto h : std::exchange(waiters_, {})) loop_.make_ready(h);
    }

private:
    vmrdma::event_loop& loop_;
    std::vector<std::coroutine_handle<>> waiters_;
};

inline std::string human_bytes(double b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
    return buf;
}

inline std::string human_duration(double s) {
    if (!(s >= 0) || s > 1e7) return "--:--";
    auto t = static_cast<long long>(s + 0.5);
    char buf[32];
    if (t >= 3600)
        std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
    else
        std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
    return buf;
}

}  // namespace datamover
