// The adaptive spin before blocking (vmrdma/poll_window.hpp): opens while
// events come faster than a sleep would take, closes when they stop, never
// exceeds its maximum; and an event loop whose waits are all long never spins.
#include <doctest/doctest.h>

#include <chrono>

#include "vmrdma/event_loop.hpp"
#include "vmrdma/poll_window.hpp"

using namespace std::chrono_literals;
using vmrdma::detail::poll_window;

TEST_CASE("a disabled window never opens") {
    poll_window w;
    CHECK_FALSE(w.enabled());
    w.blocked(1us);
    w.blocked(1us);
    CHECK(w.current() == 0ns);
}

TEST_CASE("short blocks open the window and grow it to its maximum, no further") {
    poll_window w(50us);
    CHECK(w.current() == 0ns);
    w.blocked(5us);  // woken soon after it slept: it should have spun
    CHECK(w.current() == 2us);
    for (int i = 0; i < 10; ++i) w.blocked(5us);
    CHECK(w.current() == 50us);
    w.spun(true);  // a spin that found its event keeps the window
    CHECK(w.current() == 50us);
}

TEST_CASE("failed spins shrink the window until it closes; a long block closes it at once") {
    poll_window w(32us);
    for (int i = 0; i < 10; ++i) w.blocked(1us);
    REQUIRE(w.current() == 32us);
    w.spun(false);
    CHECK(w.current() == 16us);
    w.spun(false);
    w.spun(false);
    w.spun(false);
    CHECK(w.current() == 2us);
    w.spun(false);
    CHECK(w.current() == 0ns);  // below the floor: closed, block at once
    for (int i = 0; i < 10; ++i) w.blocked(1us);
    REQUIRE(w.current() == 32us);
    w.blocked(1ms);  // idle: the next wait blocks at once
    CHECK(w.current() == 0ns);
}

TEST_CASE("a maximum below the floor is the window's only size") {
    poll_window w(1us);
    w.blocked(500ns);
    CHECK(w.current() == 1us);
    w.blocked(500ns);
    CHECK(w.current() == 1us);
}

TEST_CASE("an adaptive loop whose every wait is long blocks at once and never spins") {
    vmrdma::event_loop loop({.adaptive_poll = 50us});
    auto body = [&]() -> vmrdma::task<void> {
        for (int i = 0; i < 3; ++i) co_await loop.sleep_for(5ms);
    };
    loop.run(body());
    CHECK(loop.stats().blocks >= 3);
    CHECK(loop.stats().spins == 0);
}
