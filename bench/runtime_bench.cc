// runtime_bench: what the coroutine runtime costs.
//   1. co_await of a task that completes at once, against a plain callback
//      (std::function and a function pointer) doing the same work;
//   2. the eventfd -> io_uring -> resume round trip, in both wait modes,
//      on one thread and across threads, against a blocking read(2)/write(2)
//      ping-pong between two threads (the no-runtime baseline).
// Prints one line per figure: ns per operation (median of --repeats runs).
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "vmrdma/runtime.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using vmrdma::task;

struct options {
    long iterations = 1'000'000;
    long round_trips = 100'000;
    int repeats = 5;
};

void usage(const char* argv0) {
    std::printf(
        "usage: %s [-n ITERATIONS] [-r ROUND_TRIPS] [--repeats N]\n"
        "Measures the coroutine runtime: co_await against a plain callback, and the\n"
        "eventfd -> io_uring -> resume round trip against blocking read/write.\n"
        "  -n N          co_await / callback iterations per run (default 1000000)\n"
        "  -r N          eventfd round trips per run (default 100000)\n"
        "  --repeats N   runs per figure; the median is printed (default 5)\n",
        argv0);
}

template <typename F>
double median_ns_per_op(int repeats, long ops, F&& run_once) {
    std::vector<double> samples;
    for (int i = 0; i < repeats; ++i) {
        auto start = clock_type::now();
        run_once();
        auto ns = std::chrono::duration<double, std::nano>(clock_type::now() - start).count();
        samples.push_back(ns / static_cast<double>(ops));
    }
    std::sort(samples.begin(), samples.end());
    return samples[samples.size() / 2];
}

// Work the compiler cannot fold away.
volatile long sink;

__attribute__((noinline)) task<long> add(long a, long b) { co_return a + b; }
__attribute__((noinline)) void add_cb(long a, long b, const std::function<void(long)>& done) { done(a + b); }
__attribute__((noinline)) void add_fp(long a, long b, void (*done)(void*, long), void* ctx) { done(ctx, a + b); }

task<long> await_loop(long n) {
    long acc = 0;
    for (long i = 0; i < n; ++i) acc = co_await add(acc, i);
    co_return acc;
}

double bench_co_await(const options& o) {
    return median_ns_per_op(o.repeats, o.iterations,
                            [&] { sink = vmrdma::sync_wait(await_loop(o.iterations)); });
}

double bench_std_function(const options& o) {
    return median_ns_per_op(o.repeats, o.iterations, [&] {
        long acc = 0;
        std::function<void(long)> done = [&acc](long v) { acc = v; };
        for (long i = 0; i < o.iterations; ++i) add_cb(acc, i, done);
        sink = acc;
    });
}

double bench_function_pointer(const options& o) {
    return median_ns_per_op(o.repeats, o.iterations, [&] {
        long acc = 0;
        auto done = [](void* ctx, long v) { *static_cast<long*>(ctx) = v; };
        for (long i = 0; i < o.iterations; ++i) add_fp(acc, i, done, &acc);
        sink = acc;
    });
}

// One thread: notify, then await the wake-up through io_uring.
double bench_eventfd_same_thread(const options& o, vmrdma::eventfd_wait_mode mode) {
    return median_ns_per_op(o.repeats, o.round_trips, [&] {
        vmrdma::event_loop loop;
        vmrdma::eventfd_channel ch(loop, mode);
        auto body = [&]() -> task<void> {
            for (long i = 0; i < o.round_trips; ++i) {
                ch.notify();
                co_await ch.wait();
            }
        };
        loop.run(body());
    });
}

// Two threads: the loop's coroutine signals a peer thread blocked in read(2),
// which answers on the channel's eventfd; the coroutine awaits the answer.
double bench_eventfd_cross_thread(const options& o, vmrdma::eventfd_wait_mode mode) {
    return median_ns_per_op(o.repeats, o.round_trips, [&] {
        vmrdma::event_loop loop;
        vmrdma::eventfd_channel answer(loop, mode);
        int ask = eventfd(0, EFD_CLOEXEC);
        std::thread peer([&] {
            std::uint64_t v;
            for (long i = 0; i < o.round_trips; ++i) {
                if (read(ask, &v, sizeof v) != sizeof v) std::abort();
                answer.notify();
            }
        });
        auto body = [&]() -> task<void> {
            std::uint64_t one = 1;
            for (long i = 0; i < o.round_trips; ++i) {
                if (write(ask, &one, sizeof one) != sizeof one) std::abort();
                co_await answer.wait();
            }
        };
        loop.run(body());
        peer.join();
        close(ask);
    });
}

// Baseline: the same cross-thread ping-pong with blocking read/write only.
double bench_blocking_cross_thread(const options& o) {
    return median_ns_per_op(o.repeats, o.round_trips, [&] {
        int ask = eventfd(0, EFD_CLOEXEC);
        int answer = eventfd(0, EFD_CLOEXEC);
        std::thread peer([&] {
            std::uint64_t v;
            for (long i = 0; i < o.round_trips; ++i) {
                if (read(ask, &v, sizeof v) != sizeof v) std::abort();
                if (write(answer, &v, sizeof v) != sizeof v) std::abort();
            }
        });
        std::uint64_t v = 1;
        for (long i = 0; i < o.round_trips; ++i) {
            if (write(ask, &v, sizeof v) != sizeof v) std::abort();
            if (read(answer, &v, sizeof v) != sizeof v) std::abort();
        }
        peer.join();
        close(ask);
        close(answer);
    });
}

long parse_count(const char* s, const char* what) {
    char* end = nullptr;
    long v = std::strtol(s, &end, 10);
    if (!end || *end || v <= 0) {
        std::fprintf(stderr, "runtime_bench: %s must be a positive integer, got '%s'\n", what, s);
        std::exit(2);
    }
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&](const char* what) {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "runtime_bench: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return parse_count(argv[++i], what);
        };
        if (a == "-h" || a == "--help") {
            usage(argv[0]);
            return 0;
        } else if (a == "-n") {
            o.iterations = next("-n");
        } else if (a == "-r") {
            o.round_trips = next("-r");
        } else if (a == "--repeats") {
            o.repeats = static_cast<int>(next("--repeats"));
        } else {
            std::fprintf(stderr, "runtime_bench: unknown option '%s' (try --help)\n", a.c_str());
            return 2;
        }
    }
    using mode = vmrdma::eventfd_wait_mode;
    std::printf("# median of %d runs; ns per operation\n", o.repeats);
    std::fprintf(stderr, "measuring co_await vs callbacks (%ld iterations)...\n", o.iterations);
    double co = bench_co_await(o);
    double fn = bench_std_function(o);
    double fp = bench_function_pointer(o);
    std::printf("%-46s %8.1f ns\n", "co_await of a ready task<long>", co);
    std::printf("%-46s %8.1f ns   (co_await / this = %.2fx)\n", "std::function callback", fn, co / fn);
    std::printf("%-46s %8.1f ns   (co_await / this = %.2fx)\n", "function-pointer callback", fp, co / fp);
    std::fprintf(stderr, "measuring eventfd round trips (%ld per run)...\n", o.round_trips);
    double same_read = bench_eventfd_same_thread(o, mode::read_rearm);
    double same_poll = bench_eventfd_same_thread(o, mode::multishot_poll);
    double cross_read = bench_eventfd_cross_thread(o, mode::read_rearm);
    double cross_poll = bench_eventfd_cross_thread(o, mode::multishot_poll);
    double blocking = bench_blocking_cross_thread(o);
    std::printf("%-46s %8.1f ns\n", "eventfd->io_uring->resume, 1 thread, read", same_read);
    std::printf("%-46s %8.1f ns\n", "eventfd->io_uring->resume, 1 thread, poll", same_poll);
    std::printf("%-46s %8.1f ns   (vs blocking = %.2fx)\n", "round trip across threads, read_rearm",
                cross_read, cross_read / blocking);
    std::printf("%-46s %8.1f ns   (vs blocking = %.2fx)\n", "round trip across threads, multishot_poll",
                cross_poll, cross_poll / blocking);
    std::printf("%-46s %8.1f ns\n", "baseline: blocking read/write across threads", blocking);
    return 0;
}
