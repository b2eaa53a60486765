// Runs a measurement side in a forked child inside a network namespace and
// brings its result back through a pipe: each side of a benchmark is its own
// process on its own "host", as it would be on two machines.
#pragma once

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "examples/support/netns_pair.hpp"

namespace vmrdma::bench {

// What one side measured. Plain data: it crosses a pipe.
struct side_result {
    bool ok = false;
    double seconds = 0;      // measured interval
    double cpu_seconds = 0;  // user + system time of this process in the interval
    double bytes = 0;
    double messages = 0;
    double latency_median_us = 0, latency_p99_us = 0;
    double retransmits = 0, timeouts = 0;  // vmrdma: its device's, over the whole run
    char error[160] = {};
};

// Median and 99th percentile of round trips (µs) into r; sorts `us`.
inline void summarize_latencies(std::vector<double>& us, side_result& r) {
    if (us.empty()) return;
    std::sort(us.begin(), us.end());
    r.latency_median_us = us[us.size() / 2];
    r.latency_p99_us = us[us.size() * 99 / 100];
}

inline double cpu_now() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// A child running `fn(ready)` in `host`'s namespace. `ready()` tells the
// parent the side is listening. wait() returns its result.
class child {
public:
    template <typename Fn>
    child(const examples::netns_host& host, Fn fn) {
        if (pipe(result_) != 0 || pipe(ready_) != 0) throw std::runtime_error("pipe failed");
        std::fflush(stdout);
        pid_ = fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            close(result_[0]);
            close(ready_[0]);
            side_result r;
            try {
                examples::netns_pair::enter(host);
                int ready_fd = ready_[1];
                r = fn([ready_fd] { [[maybe_unused]] auto n = write(ready_fd, "r", 1); });
            } catch (const std::exception& e) {
                r.ok = false;
                std::snprintf(r.error, sizeof r.error, "%s", e.what());
            }
            [[maybe_unused]] auto n = write(result_[1], &r, sizeof r);
            _exit(0);
        }
        close(result_[1]);
        close(ready_[1]);
    }
    ~child() {
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        close(result_[0]);
        close(ready_[0]);
    }
    child(const child&) = delete;
    child& operator=(const child&) = delete;

    // Blocks until the child said it is ready (false if it died first).
    bool wait_ready() {
        char c;
        return read(ready_[0], &c, 1) == 1;
    }
    side_result wait() {
        side_result r;
        if (read(result_[0], &r, sizeof r) != sizeof r) std::snprintf(r.error, sizeof r.error, "side died");
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
        return r;
    }

private:
    pid_t pid_ = -1;
    int result_[2] = {-1, -1};
    int ready_[2] = {-1, -1};
};

}  // namespace vmrdma::bench
