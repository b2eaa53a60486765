// device_core against a scripted transport: the invariants of
// coro/src/rdma/device_core.hpp, with no engine and no network.
//  - a completion resumes its operation's awaiter and, of the coroutines
//    waiting for room, exactly one, in the pool it freed;
//  - a fence returns when its connection's last operation ends, not before;
//  - a cancelled operation leaves at once; a CONNECT whose awaiter left is
//    disconnected when it completes;
//  - the backend going away fails every operation and every room waiter.
#include <doctest/doctest.h>

#include <cerrno>
#include <deque>
#include <map>
#include <vector>

#include "device_core.hpp"
#include "vmrdma/async_scope.hpp"
#include "vmrdma/event_loop.hpp"

using vmrdma::errc;
using vmrdma::error;
using vmrdma::event_loop;
using vmrdma::task;
using vmrdma::detail::completion_sink;
using vmrdma::detail::device_core;

namespace {

// Each connection id is its own pool of `capacity` places; requests are
// kept until the test completes them.
class scripted_transport final : public vmrdma::detail::transport {
public:
    explicit scripted_transport(completion_sink& sink, std::uint32_t capacity) : sink_(sink), capacity_(capacity) {}

    vmrdma::mac_address mac() const noexcept override { return {}; }
    std::uint32_t mtu() const noexcept override { return 1500; }
    std::string backend_name() const override { return "the script"; }
    void open_endpoint(std::uint16_t, const vmrdma::endpoint_options&) override {}
    void close_endpoint(std::uint16_t) noexcept override {}
    void set_weight(std::uint16_t, std::uint32_t) override {}
    std::uint64_t register_memory(std::uint16_t, std::span<std::byte>, std::uint32_t) override { return 1; }
    void deregister(std::uint64_t) noexcept override {}

    int post(const vr_ring_req& req) noexcept override {
        ++attempts[req.conn];
        if (gone) return -ESHUTDOWN;
        auto& pool = held[req.conn];
        if (pool.size() >= capacity_) return -EAGAIN;
        pool.push_back(req);
        return 0;
    }
    void post_detached(const vr_ring_req& req) override { detached.push_back(req); }
    std::uint64_t room_of(const vr_ring_req& req) const noexcept override { return req.conn; }
    void cancel(std::uint64_t cookie) noexcept override { cancelled.push_back(cookie); }
    void want_flush() noexcept override {}
    vmrdma::counters device_stats() const override { return {}; }
    vmrdma::counters endpoint_stats(std::uint16_t) const override { return {}; }

    // Completes the oldest request held in `pool`.
    void complete_oldest(std::uint32_t pool, int status = 0, std::uint32_t new_conn = 0) {
        REQUIRE(!held[pool].empty());
        auto req = held[pool].front();
        held[pool].pop_front();
        vr_completion wc{};
        wc.cookie = req.cookie;
        wc.status = status;
        wc.op = req.opcode == VR_RING_CONNECT ? VR_WC_CONNECT : VR_WC_WRITE;
        wc.conn = new_conn ? new_conn : req.conn;
        sink_.completed(wc);
    }

    std::map<std::uint32_t, int> attempts;
    std::map<std::uint32_t, std::deque<vr_ring_req>> held;
    std::vector<vr_ring_req> detached;
    std::vector<std::uint64_t> cancelled;
    bool gone = false;

private:
    completion_sink& sink_;
    std::uint32_t capacity_;
};

vr_ring_req write_on(std::uint32_t conn) {
    vr_ring_req r{};
    r.opcode = VR_RING_WRITE;
    r.conn = conn;
    r.len = 8;
    return r;
}

vr_ring_req connect_request() {
    vr_ring_req r{};
    r.opcode = VR_RING_CONNECT;
    return r;
}

struct fixture {
    event_loop loop;
    scripted_transport* script = nullptr;
    device_core core;
    explicit fixture(std::uint32_t capacity)
        : core(loop, [this, capacity](completion_sink& sink) {
              auto t = std::make_unique<scripted_transport>(sink, capacity);
              script = t.get();
              return t;
          }) {}

    // Lets every ready coroutine run until the loop has nothing left to do.
    task<void> settle() {
        for (int i = 0; i < 8; ++i) co_await loop.schedule();
    }
    // Opens connection `id` through a CONNECT that pool 0 completes.
    task<void> connect(std::uint32_t id) {
        vmrdma::async_scope scope;
        std::uint32_t got = 0;
        scope.spawn([](device_core& c, std::uint32_t& out) -> task<void> {
            out = (co_await c.perform(connect_request(), {})).conn;
        }(core, got));
        co_await settle();
        script->complete_oldest(0, 0, id);
        co_await scope.join();
        REQUIRE(got == id);
    }
};

}  // namespace

TEST_CASE("a completion resumes one waiter for room, in the pool it freed") {
    fixture f(1);
    f.loop.run([](fixture& f) -> task<void> {
        vmrdma::async_scope scope;
        int done = 0;
        auto op = [](device_core& c, std::uint32_t conn, int& n) -> task<void> {
            co_await c.perform(write_on(conn), {});
            ++n;
        };
        for (int i = 0; i < 4; ++i) scope.spawn(op(f.core, 1, done));  // 1 held, 3 wait
        for (int i = 0; i < 2; ++i) scope.spawn(op(f.core, 2, done));  // 1 held, 1 waits
        co_await f.settle();
        CHECK(f.script->attempts[1] == 4);
        CHECK(f.script->attempts[2] == 2);

        f.script->complete_oldest(1);
        co_await f.settle();
        CHECK(done == 1);
        CHECK(f.script->attempts[1] == 5);  // exactly one waiter tried again, and got in
        CHECK(f.script->attempts[2] == 2);  // nobody in the other pool woke

        f.script->complete_oldest(2);
        co_await f.settle();
        CHECK(f.script->attempts[1] == 5);
        CHECK(f.script->attempts[2] == 3);

        for (int i = 0; i < 3; ++i) {
            f.script->complete_oldest(1);
            co_await f.settle();
        }
        f.script->complete_oldest(2);
        co_await scope.join();
        CHECK(done == 6);
        CHECK(f.script->attempts[1] == 7);  // 4 first tries, 3 retries: none wasted
    }(f));
}

TEST_CASE("a fence returns when its own connection's last operation ends") {
    fixture f(8);
    f.loop.run([](fixture& f) -> task<void> {
        co_await f.connect(7);
        co_await f.connect(9);
        vmrdma::async_scope scope;
        auto op = [](device_core& c, std::uint32_t conn) -> task<void> { co_await c.perform(write_on(conn), {}); };
        scope.spawn(op(f.core, 7));
        scope.spawn(op(f.core, 7));
        scope.spawn(op(f.core, 9));
        co_await f.settle();
        bool fenced = false;
        scope.spawn([](device_core& c, bool& flag) -> task<void> {
            co_await c.drained(7);
            flag = true;
        }(f.core, fenced));
        co_await f.settle();
        f.script->complete_oldest(9);
        co_await f.settle();
        CHECK_FALSE(fenced);
        f.script->complete_oldest(7);
        co_await f.settle();
        CHECK_FALSE(fenced);
        f.script->complete_oldest(7);
        co_await scope.join();
        CHECK(fenced);
    }(f));
}

TEST_CASE("a failed completion throws its errc; a refusal throws before any wait") {
    fixture f(8);
    f.loop.run([](fixture& f) -> task<void> {
        co_await f.connect(3);
        vmrdma::async_scope scope;
        std::error_code got;
        scope.spawn([](device_core& c, std::error_code& out) -> task<void> {
            try {
                co_await c.perform(write_on(3), {});
            } catch (const error& e) {
                out = e.code();
            }
        }(f.core, got));
        co_await f.settle();
        f.script->complete_oldest(3, -ETIMEDOUT);
        co_await scope.join();
        CHECK((got == errc::timeout));
    }(f));
}

TEST_CASE("a cancelled operation leaves at once and its CONNECT is closed when it completes") {
    fixture f(8);
    f.loop.run([](fixture& f) -> task<void> {
        vmrdma::async_scope scope;
        std::stop_source stop;
        std::error_code got;
        scope.spawn([](device_core& c, std::stop_token token, std::error_code& out) -> task<void> {
            try {
                co_await c.perform(connect_request(), token);
            } catch (const error& e) {
                out = e.code();
            }
        }(f.core, stop.get_token(), got));
        co_await f.settle();
        stop.request_stop();
        co_await scope.join();
        CHECK((got == errc::cancelled));
        CHECK(f.script->cancelled.size() == 1);  // the transport was told
        // The script ignores the cancel; the engine connects after all.
        f.script->complete_oldest(0, 0, 11);
        REQUIRE(f.script->detached.size() == 1);
        CHECK(f.script->detached[0].opcode == VR_RING_DISCONNECT);
        CHECK(f.script->detached[0].conn == 11);
        CHECK_FALSE(f.core.connection_open(11));
    }(f));
}

TEST_CASE("the backend going away fails held operations and room waiters") {
    fixture f(1);
    f.loop.run([](fixture& f) -> task<void> {
        vmrdma::async_scope scope;
        std::vector<std::error_code> got;
        auto op = [](device_core& c, std::vector<std::error_code>& out) -> task<void> {
            try {
                co_await c.perform(write_on(5), {});
            } catch (const error& e) {
                out.push_back(e.code());
            }
        };
        scope.spawn(op(f.core, got));  // held
        scope.spawn(op(f.core, got));  // waits for room
        co_await f.settle();
        f.script->gone = true;  // from now on every post is refused with -ESHUTDOWN
        f.core.fail_outstanding(-ESHUTDOWN);
        co_await scope.join();
        REQUIRE(got.size() == 2);
        CHECK((got[0] == errc::shut_down));  // the held one, from its completion
        CHECK((got[1] == errc::shut_down));  // the waiter, woken, from its refused retry
        CHECK(f.script->attempts[5] == 3);
    }(f));
}
