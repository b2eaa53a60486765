// device_core: one device's operations, whatever transport carries them
// (transport.hpp). It hands each operation to the transport as a ring
// request, keeps the table of operations in flight, and resumes exactly the
// coroutine a completion belongs to: the operation's awaiter, one coroutine
// waiting for room in the pool the completion freed, and a connection's
// fence when its last operation ends.
#pragma once

#include <coroutine>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <unordered_map>
#include <vector>

#include "bounce_pool.hpp"
#include "engine_status.hpp"
#include "transport.hpp"
#include "vmrdma/error.hpp"
#include "vmrdma/event_loop.hpp"
#include "vmrdma/rdma.hpp"

namespace vmrdma::detail {

class device_core final : public completion_sink {
public:
    // make_transport(sink) builds the transport that reports to this core.
    template <typename MakeTransport>
    device_core(event_loop& loop, MakeTransport make_transport) : loop_(loop) {
        transport_ = make_transport(static_cast<completion_sink&>(*this));
    }
    ~device_core();
    device_core(const device_core&) = delete;
    device_core& operator=(const device_core&) = delete;

    event_loop& loop() noexcept { return loop_; }
    detail::transport& transport() noexcept { return *transport_; }

    // Posts one request (its cookie is filled in here) and awaits its
    // completion. Waits for room when the transport's pool is full; throws
    // for a refusal or a failed completion.
    task<vr_completion> perform(vr_ring_req req, std::stop_token stop);

    task<void> drained(std::uint32_t conn);
    // The endpoint's registered slots for sends and receives from ordinary
    // memory, made on first use; drop_bounce when the endpoint closes (the
    // pool lives on while an operation still holds a slot).
    std::shared_ptr<bounce_pool> bounce(std::uint16_t ep);
    void drop_bounce(std::uint16_t ep) noexcept { bounce_.erase(ep); }
    // The application closed the connection: disconnect it and forget it.
    void close_connection(std::uint32_t conn) noexcept;
    bool connection_open(std::uint32_t conn) const noexcept;

    // completion_sink
    void completed(const vr_completion& wc) override;
    void connection_failed(std::uint32_t conn) override;
    void fail_outstanding(int status) noexcept override;

private:
    struct pending_op {
        std::coroutine_handle<> waiter;
        vr_completion wc{};
        std::uint64_t room = 0;  // the transport's pool it holds a place in
        std::uint32_t generation = 0;
        std::uint32_t conn = 0;
        bool done = false;
        bool abandoned = false;  // its awaiter left (cancelled or destroyed)
    };
    struct connection_state {
        std::uint32_t outstanding = 0;
        std::vector<std::coroutine_handle<>> fences;  // drained() waiters
        bool closed = false;
    };
    class op_awaiter;
    class room_awaiter;

    std::uint32_t alloc_op(std::uint32_t conn, std::uint64_t room);
    void free_op(std::uint32_t index) noexcept;
    static std::uint64_t cookie_of(std::uint32_t index, std::uint32_t generation) noexcept {
        return (std::uint64_t{generation} << 32) | index;
    }
    void wake_room(std::uint64_t room) noexcept;
    void wake_fences(connection_state& c) noexcept;
    [[noreturn]] void refused(std::uint8_t opcode, int rc) const;

    std::unordered_map<std::uint16_t, std::shared_ptr<bounce_pool>> bounce_;
    event_loop& loop_;
    std::unique_ptr<detail::transport> transport_;
    std::vector<pending_op> ops_;
    std::vector<std::uint32_t> free_ops_;
    std::unordered_map<std::uint32_t, connection_state> connections_;
    // Coroutines waiting for room, per pool, oldest first.
    std::unordered_map<std::uint64_t, std::deque<std::coroutine_handle<>>> room_waiters_;
};

// Suspends until the completion of one op.
class device_core::op_awaiter {
public:
    op_awaiter(device_core& core, std::uint32_t index, std::stop_token stop)
        : core_(core), index_(index), stop_(std::move(stop)), generation_(core.ops_[index].generation) {}
    op_awaiter(const op_awaiter&) = delete;
    ~op_awaiter();
    // An op that completed inside its post (a receive that found its
    // message already waiting) goes on at once only if no coroutine is
    // ready before it; otherwise it joins the ready queue behind them, so
    // that coroutines resume in the order their ops completed (receives in
    // the order their messages arrived: the libfabric provider's slots
    // keep MPI's message order by it).
    bool await_ready() const noexcept { return core_.ops_[index_].done && !core_.loop_.has_ready(); }
    void await_suspend(std::coroutine_handle<> h);
    // Returns true when the op completed; false when it was cancelled (the
    // slot then stays with the transport until it completes).
    bool await_resume() noexcept;

private:
    struct canceller {
        op_awaiter* self;
        void operator()() const noexcept;
    };
    device_core& core_;
    std::uint32_t index_;
    std::stop_token stop_;
    std::optional<std::stop_callback<canceller>> on_stop_;
    std::coroutine_handle<> handle_;
    std::uint32_t generation_ = 0;
    bool suspended_ = false;
    bool resumed_ = false;
};

// Suspends until a completion frees room in one pool (or the backend goes).
class device_core::room_awaiter {
public:
    room_awaiter(device_core& core, std::uint64_t room) : core_(core), room_(room) {}
    room_awaiter(const room_awaiter&) = delete;
    ~room_awaiter();
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h);
    void await_resume() noexcept { resumed_ = true; }

private:
    device_core& core_;
    std::uint64_t room_;
    std::coroutine_handle<> handle_;
    bool resumed_ = false;
};

}  // namespace vmrdma::detail
