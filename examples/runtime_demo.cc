// runtime_demo: the coroutine runtime in one screen. A producer thread
// completes "operations" through an eventfd, the way every vmrdma transport
// wakes coroutines; a consumer awaits them with a deadline, and a timer
// shows cancellation. Prints what happens in plain words.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "vmrdma/runtime.hpp"

using namespace std::chrono_literals;
using vmrdma::task;

int main(int argc, char** argv) {
    if (argc > 1 && (std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0)) {
        std::printf("usage: %s\nShows the vmrdma coroutine runtime: eventfd completions from another\n"
                    "thread, a deadline with with_timeout, and cancellation.\n", argv[0]);
        return 0;
    }
    vmrdma::event_loop loop;
    vmrdma::eventfd_channel completions(loop);

    auto consumer = [&]() -> task<int> {
        std::thread producer([&] {
            for (int i = 0; i < 5; ++i) {
                std::this_thread::sleep_for(2ms);
                completions.notify();
            }
        });
        int seen = 0;
        while (seen < 5) {
            auto n = co_await vmrdma::with_timeout(
                loop, 1s, [&](std::stop_token st) { return completions.wait(st); });
            seen += static_cast<int>(n);
            std::printf("  woke up: %d of 5 completions arrived through the eventfd\n", seen);
        }
        producer.join();
        try {
            co_await vmrdma::with_timeout(loop, 5ms,
                                          [&](std::stop_token st) { return completions.wait(st); });
        } catch (const vmrdma::error& e) {
            std::printf("  a wait with nothing to deliver ended cleanly: %s\n", e.what());
        }
        co_return seen;
    };
    std::printf("vmrdma runtime demo: awaiting completions from another thread...\n");
    int seen = loop.run(consumer());
    std::printf("done: %d completions, %llu io_uring submissions for %llu operations, "
                "nothing left pending (%zu).\n",
                seen, static_cast<unsigned long long>(loop.stats().submits),
                static_cast<unsigned long long>(loop.stats().sqes), loop.pending_operations());
    return seen == 5 ? 0 : 1;
}
