// The eventfd completion path, in both io_uring modes.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "vmrdma/runtime.hpp"

using namespace std::chrono_literals;
using vmrdma::errc;
using vmrdma::error;
using vmrdma::event_loop;
using vmrdma::eventfd_channel;
using vmrdma::eventfd_wait_mode;
using vmrdma::task;

TEST_CASE("eventfd wake-ups from another thread reach the waiting coroutine") {
    for (auto mode : {eventfd_wait_mode::read_rearm, eventfd_wait_mode::multishot_poll}) {
        CAPTURE(static_cast<int>(mode));
        event_loop loop;
        eventfd_channel ch(loop, mode);
        constexpr std::uint64_t total = 2000;
        std::uint64_t received = 0;
        std::thread producer;
        auto consumer = [&]() -> task<void> {
            producer = std::thread([&] {
                for (std::uint64_t i = 0; i < total; ++i) ch.notify();
            });
            while (received < total) received += co_await ch.wait();
        };
        loop.run(consumer());
        producer.join();
        // Counts accumulate: no notification is lost or counted twice.
        CHECK(received == total);
    }
}

TEST_CASE("eventfd wait returns the accumulated count") {
    for (auto mode : {eventfd_wait_mode::read_rearm, eventfd_wait_mode::multishot_poll}) {
        event_loop loop;
        eventfd_channel ch(loop, mode);
        ch.notify(3);
        ch.notify(4);
        CHECK(loop.run(ch.wait()) == 7);
    }
}

TEST_CASE("a stop token cancels an eventfd wait") {
    for (auto mode : {eventfd_wait_mode::read_rearm, eventfd_wait_mode::multishot_poll}) {
        CAPTURE(static_cast<int>(mode));
        event_loop loop;
        eventfd_channel ch(loop, mode);
        std::stop_source stop;
        bool cancelled = false;
        auto waiter = [&]() -> task<void> {
            try {
                co_await ch.wait(stop.get_token());
            } catch (const error& e) {
                cancelled = e.code() == errc::cancelled;
            }
        };
        auto stopper = [&]() -> task<void> {
            co_await loop.sleep_for(1ms);
            stop.request_stop();
        };
        loop.run(vmrdma::when_all(waiter(), stopper()));
        CHECK(cancelled);
        // The channel still works after a cancelled wait.
        ch.notify(5);
        CHECK(loop.run(ch.wait()) == 5);
    }
}

TEST_CASE("with_timeout bounds an eventfd wait that nobody signals") {
    event_loop loop;
    eventfd_channel ch(loop);
    try {
        loop.run(vmrdma::with_timeout(loop, 1ms, [&](std::stop_token st) { return ch.wait(st); }));
        FAIL("expected a timeout");
    } catch (const error& e) {
        CHECK(e.code() == errc::timeout);
    }
    CHECK(loop.pending_operations() == 0);
}
