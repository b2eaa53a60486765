// device_core: hosts one proto/ engine on the event loop. It owns the raw
// port, feeds received frames and the time to the engine, flushes transmit
// batches once per loop turn, keeps one io_uring timer armed at the engine's
// next deadline, and turns engine completions into resumed coroutines.
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

#include "engine_status.hpp"
#include "eth_port.hpp"
#include "ring_receiver.hpp"
#include "vmrdma/error.hpp"
#include "vmrdma/event_loop.hpp"
#include "vmrdma/rdma.hpp"

namespace vmrdma::detail {


class ring_link;

class device_core {
public:
    device_core(event_loop& loop, std::unique_ptr<eth_port> port, const device_options& options);
    // The split-driver transports, unix: and xen: (ring_transport.cc): no
    // engine in this process; operations travel to the backend (vmrdmad or
    // the Xen backend) through the link's shared rings and their responses
    // come back through the same completion path.
    device_core(event_loop& loop, std::unique_ptr<ring_link> link);
    ~device_core();
    device_core(const device_core&) = delete;
    device_core& operator=(const device_core&) = delete;

    event_loop& loop() noexcept { return loop_; }
    vr_engine* engine() noexcept { return engine_; }
    const eth_port& port() const noexcept { return *port_; }
    ring_link* link() noexcept { return link_.get(); }  // null for eth:
    mac_address mac() const noexcept;
    std::uint32_t mtu() const noexcept;

    void open_endpoint(std::uint16_t id, const endpoint_options& options);
    void close_endpoint(std::uint16_t id) noexcept;

    // Posts one operation through `post(cookie)` (a vr_post_* call) and
    // awaits its completion. Waits for room when the engine's pool is full;
    // throws for a synchronous error or a failed completion.
    template <typename Post>
    task<vr_completion> perform(std::uint32_t conn, Post post, std::stop_token stop);

    task<std::uint32_t> next_accepted(std::uint16_t ep, std::stop_token stop);
    task<void> drained(std::uint32_t conn);
    void forget_connection(std::uint32_t conn) noexcept;
    bool connection_open(std::uint32_t conn) const noexcept;

    // Ask for a transmit flush at the end of this loop turn.
    void want_flush() noexcept { flush_wanted_ = true; }

private:
    struct pending_op {
        std::coroutine_handle<> waiter;
        vr_completion wc{};
        std::uint32_t generation = 0;
        std::uint32_t conn = 0;
        bool done = false;
        bool abandoned = false;  // its awaiter left (cancelled or destroyed)
    };
    struct endpoint_state {
        std::deque<std::uint32_t> accepted;
        std::coroutine_handle<> accept_waiter;
        bool closed = false;
    };
    struct connection_state {
        std::uint32_t outstanding = 0;
        bool closed = false;
    };
    class op_awaiter;
    class event_awaiter;

    std::uint32_t alloc_op(std::uint32_t conn);
    void free_op(std::uint32_t index) noexcept;
    static std::uint64_t cookie_of(std::uint32_t index, std::uint32_t generation) noexcept {
        return (std::uint64_t{generation} << 32) | index;
    }

    // Engine callbacks.
    static int on_xmit(void* ctx, const vr_frame* frame);
    static void on_complete(void* ctx, const vr_completion* wc);
    static std::uint32_t on_random(void* ctx);
    void completed(const vr_completion& wc);
    void wake_event_waiters();

    // Loop plumbing.
    bool flush();
    void start_receiving();
    static void on_frame(void* context, const std::byte* frame, std::uint32_t length);
    void arm_poll();
    static void on_readable(event_loop& loop, op_slot& slot);
    void arm_timer_if_needed();
    static void on_timer(event_loop& loop, op_slot& slot);
    static std::uint64_t now_ns() noexcept;

    // unix: and xen: transports (ring_transport.cc).
    void destroy_link() noexcept;
    void link_open_endpoint(std::uint16_t id, const endpoint_options& options);
    void link_close_endpoint(std::uint16_t id) noexcept;
    bool link_flush();
    void arm_doorbell();
    static void on_doorbell(event_loop& loop, op_slot& slot);
    void drain_link();
    void arm_hangup();
    static void on_hangup(event_loop& loop, op_slot& slot);
    void fail_outstanding(int status) noexcept;
    // For -ESHUTDOWN's messages: "vmrdmad", "the Xen backend".
    std::string backend_name() const;

    event_loop& loop_;
    std::unique_ptr<ring_link> link_;
    std::uint32_t doorbell_slot_ = UINT32_MAX;
    std::uint32_t hangup_slot_ = UINT32_MAX;
    std::unique_ptr<eth_port> port_;
    std::unique_ptr<std::uint64_t[]> engine_memory_;
    vr_engine* engine_ = nullptr;
    vr_host_ops host_ops_{};
    std::vector<pending_op> ops_;
    std::vector<std::uint32_t> free_ops_;
    std::unordered_map<std::uint16_t, endpoint_state> endpoints_;
    std::unordered_map<std::uint32_t, connection_state> connections_;
    std::vector<std::coroutine_handle<>> event_waiters_;  // room in the pool, drained conns
    std::size_t hook_id_ = 0;
    std::unique_ptr<ring_receiver> receiver_;  // or, where the kernel lacks buffer rings:
    std::uint32_t poll_slot_ = UINT32_MAX;     // poll + recvmmsg
    std::vector<std::uint32_t> timer_slots_;
    std::uint64_t armed_deadline_ = UINT64_MAX;
    bool flush_wanted_ = false;
    bool tx_blocked_ = false;
};

// Suspends until an engine completion for one op.
class device_core::op_awaiter {
public:
    op_awaiter(device_core& core, std::uint32_t index, std::stop_token stop)
        : core_(core), index_(index), stop_(std::move(stop)) {}
    op_awaiter(const op_awaiter&) = delete;
    ~op_awaiter();
    bool await_ready() const noexcept { return core_.ops_[index_].done; }
    void await_suspend(std::coroutine_handle<> h);
    // Returns true when the op completed; false when it was cancelled (the
    // slot then stays with the engine until it completes).
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

// Suspends until some completion (or a new accepted connection) arrives.
class device_core::event_awaiter {
public:
    explicit event_awaiter(std::vector<std::coroutine_handle<>>& waiters) : waiters_(waiters) {}
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) { waiters_.push_back(h); }
    void await_resume() const noexcept {}

private:
    std::vector<std::coroutine_handle<>>& waiters_;
};

template <typename Post>
task<vr_completion> device_core::perform(std::uint32_t conn, Post post, std::stop_token stop) {
    if (stop.stop_requested()) throw error(errc::cancelled, "operation cancelled before it was posted");
    std::uint32_t index = alloc_op(conn);
    for (;;) {
        int rc = post(cookie_of(index, ops_[index].generation));
        if (rc == 0) break;
        if (rc == -EAGAIN && !stop.stop_requested()) {
            // The engine's pool for this connection is full: wait for a
            // completion to make room, then try again.
            co_await event_awaiter{event_waiters_};
            continue;
        }
        free_op(index);
        if (rc == -ESHUTDOWN)
            throw error(errc::shut_down, backend_name() + " is shutting down or gone: open a new device to reconnect");
        throw error(code_from_status(rc), "the operation could not be posted");
    }
    if (connections_.count(conn)) ++connections_[conn].outstanding;
    want_flush();
    bool completed;
    {
        op_awaiter wait{*this, index, stop};
        completed = co_await wait;
    }
    if (!completed) throw error(errc::cancelled, "operation cancelled");
    vr_completion wc = ops_[index].wc;
    free_op(index);
    if (wc.status == -ESHUTDOWN)
        throw error(errc::shut_down, backend_name() + " stopped or went away before the operation completed");
    if (wc.status != 0) throw error(code_from_status(wc.status, wc.nak_reason), "RDMA operation failed");
    co_return wc;
}

}  // namespace vmrdma::detail
