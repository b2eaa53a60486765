#include "device_core.hpp"

#include <algorithm>
#include <cerrno>

namespace vmrdma::detail {

device_core::~device_core() {
    // Pools still held by unfinished operations must not reach the
    // transport after it is gone; the rest deregister now.
    for (auto& [ep, pool] : bounce_) pool->detach();
    bounce_.clear();
    // The transport ends what it still holds (with -ECANCELED) through this
    // core, so it goes first; the awaiters resume on the next turn and see
    // the error.
    transport_.reset();
}

std::uint32_t device_core::alloc_op(std::uint32_t conn, std::uint64_t room) {
    if (free_ops_.empty()) {
        ops_.emplace_back();
        free_ops_.push_back(static_cast<std::uint32_t>(ops_.size() - 1));
    }
    std::uint32_t index = free_ops_.back();
    free_ops_.pop_back();
    auto& op = ops_[index];
    op.waiter = {};
    op.done = false;
    op.abandoned = false;
    op.conn = conn;
    op.room = room;
    return index;
}

void device_core::free_op(std::uint32_t index) noexcept {
    ++ops_[index].generation;
    free_ops_.push_back(index);
}

namespace {
// What the application called, for error messages.
const char* operation_name(std::uint8_t opcode) noexcept {
    switch (opcode) {
    case VR_RING_WRITE: return "write";
    case VR_RING_READ: return "read";
    case VR_RING_SEND: return "send";
    case VR_RING_RECV: return "recv";
    case VR_RING_FADD: return "fetch_add";
    case VR_RING_CSWAP: return "compare_swap";
    case VR_RING_CONNECT: return "connect";
    case VR_RING_ACCEPT: return "accept";
    case VR_RING_DISCONNECT: return "disconnect";
    case VR_RING_CLOSED: return "closed";
    case VR_RING_ACCEPT_DATA: return "set_accept_data";
    case VR_RING_NAME: return "announce";
    case VR_RING_RESOLVE: return "resolve";
    case VR_RING_PD_ALLOC: return "allocate_protection_domain";
    case VR_RING_PD_FREE: return "free_protection_domain";
    case VR_RING_PD_BIND: return "bind";
    case VR_RING_AUTH_KEY: return "set_auth_key";
    case VR_RING_LISTEN: return "listen";
    default: return "operation";
    }
}
}  // namespace

void device_core::refused(std::uint8_t opcode, int rc) const {
    if (rc == -ESHUTDOWN)
        throw error(errc::shut_down, std::string(operation_name(opcode)) + ": " + transport_->backend_name() +
                                         " is shutting down or gone: open a new device to reconnect");
    throw error(code_from_status(rc), std::string(operation_name(opcode)) + " could not be posted");
}

task<vr_completion> device_core::perform(vr_ring_req req, std::stop_token stop) {
    const std::string name = operation_name(req.opcode);
    // what() is "<context>: <the code's message>", so the context never
    // repeats the message ("cancelled: operation cancelled").
    if (stop.stop_requested()) throw error(errc::cancelled, name + ": its stop token fired before it was posted");
    const std::uint64_t room = transport_->room_of(req);
    // Waiting for the end is not an operation on the connection: fences
    // (and the engine's per-connection pool) do not count it.
    const bool on_connection = req.opcode != VR_RING_CLOSED;
    const std::uint32_t index = alloc_op(on_connection ? req.conn : 0, room);
    auto conn = on_connection ? connections_.find(req.conn) : connections_.end();
    bool woken = false;
    for (;;) {
        req.cookie = cookie_of(index, ops_[index].generation);
        // Counted before the post: its completion may come from inside it.
        if (conn != connections_.end()) ++conn->second.outstanding;
        int rc = transport_->post(req);
        if (rc == 0) break;
        if (conn != connections_.end() && --conn->second.outstanding == 0) wake_fences(conn->second);
        if (rc == -EAGAIN && !stop.stop_requested()) {
            // The pool is full: a completion in it makes room, then try again.
            co_await room_awaiter{*this, room};
            woken = true;
            conn = on_connection ? connections_.find(req.conn) : connections_.end();  // it may be gone now
            continue;
        }
        free_op(index);
        if (woken) wake_room(room);  // the room this one was woken for is someone else's
        refused(req.opcode, rc);
    }
    bool completed;
    {
        op_awaiter wait{*this, index, stop};
        completed = co_await wait;
    }
    if (!completed) throw error(errc::cancelled, name + ": its stop token fired");
    vr_completion wc = ops_[index].wc;
    free_op(index);
    if (wc.status == -ESHUTDOWN)
        throw error(errc::shut_down,
                    name + ": " + transport_->backend_name() + " stopped or went away before it completed");
    if (wc.status == -ECANCELED) throw error(errc::cancelled, name + ": its endpoint or device was closed");
    if (wc.status != 0) throw error(code_from_status(wc.status, wc.nak_reason), "RDMA " + name + " failed");
    co_return wc;
}

void device_core::completed(const vr_completion& wc) {
    auto index = static_cast<std::uint32_t>(wc.cookie & 0xffffffffu);
    auto generation = static_cast<std::uint32_t>(wc.cookie >> 32);
    if (index >= ops_.size() || ops_[index].generation != generation) return;
    auto& op = ops_[index];
    if (op.done) return;
    op.wc = wc;
    op.done = true;
    if (auto it = connections_.find(op.conn); it != connections_.end() && it->second.outstanding > 0)
        if (--it->second.outstanding == 0) wake_fences(it->second);
    if (wc.op == VR_WC_CONNECT && wc.status == 0 && wc.conn) {
        if (op.abandoned) {
            // A CONNECT or ACCEPT whose awaiter left: nobody will own the
            // connection, so it is closed at once.
            vr_ring_req r{};
            r.opcode = VR_RING_DISCONNECT;
            r.cookie = ~std::uint64_t{0};
            r.conn = wc.conn;
            transport_->post_detached(r);
        } else {
            connections_.try_emplace(wc.conn);
        }
    }
    const auto room = op.room;
    if (op.abandoned)
        free_op(index);
    else if (op.waiter)
        loop_.make_ready(std::exchange(op.waiter, {}));
    wake_room(room);
}

std::shared_ptr<bounce_pool> device_core::bounce(std::uint16_t ep) {
    auto& pool = bounce_[ep];
    if (!pool) pool = std::make_shared<bounce_pool>(*transport_, loop_, ep);
    return pool;
}

void device_core::connection_failed(std::uint32_t conn) {
    if (auto it = connections_.find(conn); it != connections_.end()) {
        it->second.closed = true;
        wake_fences(it->second);  // they look again: its operations fail now
    }
}

void device_core::fail_outstanding(int status) noexcept {
    std::vector<bool> is_free(ops_.size(), false);
    for (auto i : free_ops_) is_free[i] = true;
    for (std::uint32_t i = 0; i < ops_.size(); ++i) {
        if (is_free[i] || ops_[i].done) continue;
        vr_completion wc{};
        wc.cookie = cookie_of(i, ops_[i].generation);
        wc.status = status;
        completed(wc);
    }
    // Everyone waiting for room tries again, and fails.
    for (auto& [room, waiters] : room_waiters_)
        for (auto h : std::exchange(waiters, {})) loop_.make_ready(h);
}

void device_core::wake_room(std::uint64_t room) noexcept {
    auto it = room_waiters_.find(room);
    if (it == room_waiters_.end()) return;
    auto h = it->second.front();
    it->second.pop_front();
    if (it->second.empty()) room_waiters_.erase(it);
    loop_.make_ready(h);
}

void device_core::wake_fences(connection_state& c) noexcept {
    for (auto h : std::exchange(c.fences, {})) loop_.make_ready(h);
}

task<void> device_core::drained(std::uint32_t conn) {
    // Suspends in the connection's fence list until its outstanding count
    // reaches 0 or it closes; a destroyed waiter takes itself out.
    struct fence {
        device_core& core;
        std::uint32_t conn;
        std::coroutine_handle<> self;
        bool resumed = false;
        fence(device_core& c, std::uint32_t id) : core(c), conn(id) {}
        fence(const fence&) = delete;
        ~fence() {
            if (!self || resumed) return;
            if (auto it = core.connections_.find(conn); it != core.connections_.end()) {
                auto& f = it->second.fences;
                if (auto pos = std::find(f.begin(), f.end(), self); pos != f.end()) {
                    f.erase(pos);
                    return;
                }
            }
            core.loop_.forget(self);  // already woken
        }
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) {
            self = h;
            core.connections_[conn].fences.push_back(h);
        }
        void await_resume() noexcept { resumed = true; }
    };
    for (;;) {
        auto it = connections_.find(conn);
        if (it == connections_.end() || it->second.outstanding == 0 || it->second.closed) co_return;
        co_await fence{*this, conn};
    }
}

void device_core::close_connection(std::uint32_t conn) noexcept {
    vr_ring_req r{};
    r.opcode = VR_RING_DISCONNECT;
    r.cookie = ~std::uint64_t{0};  // nobody awaits its completion
    r.conn = conn;
    try {
        transport_->post_detached(r);
    } catch (...) {
        // Out of memory queueing it: the backend's teardown disconnects it.
    }
    if (auto it = connections_.find(conn); it != connections_.end()) {
        wake_fences(it->second);
        connections_.erase(it);
    }
    transport_->want_flush();
}

bool device_core::connection_open(std::uint32_t conn) const noexcept {
    auto it = connections_.find(conn);
    return it != connections_.end() && !it->second.closed;
}

// --- op_awaiter ---

void device_core::op_awaiter::await_suspend(std::coroutine_handle<> h) {
    handle_ = h;
    suspended_ = true;
    if (core_.ops_[index_].done) {  // completed in its post, behind others ready (await_ready)
        core_.loop_.make_ready(h);
        return;
    }
    core_.ops_[index_].waiter = h;
    if (stop_.stop_possible()) on_stop_.emplace(stop_, canceller{this});
}

void device_core::op_awaiter::canceller::operator()() const noexcept {
    auto* self = this->self;
    auto cancel = [core = &self->core_, index = self->index_,
                   generation = self->core_.ops_[self->index_].generation] {
        auto& op = core->ops_[index];
        if (op.generation != generation || op.done || op.abandoned || !op.waiter) return;
        op.abandoned = true;
        core->loop_.make_ready(std::exchange(op.waiter, {}));
        core->transport_->cancel(cookie_of(index, generation));  // may complete (and free) it now
    };
    if (self->core_.loop_.on_loop_thread())
        cancel();
    else
        self->core_.loop_.post(cancel);
}

bool device_core::op_awaiter::await_resume() noexcept {
    resumed_ = true;
    on_stop_.reset();
    // A new generation: it was cancelled, completed and freed (maybe reused) meanwhile.
    const auto& op = core_.ops_[index_];
    return op.generation == generation_ && !op.abandoned;
}

device_core::op_awaiter::~op_awaiter() {
    on_stop_.reset();
    if (!suspended_ || resumed_) return;
    // The awaiting frame is being destroyed while suspended: it may already
    // sit in the ready queue, and the op may still be with the transport.
    core_.loop_.forget(handle_);
    auto& op = core_.ops_[index_];
    if (op.generation != generation_) return;  // completed after a cancel, freed
    if (op.done) {
        core_.free_op(index_);
    } else {
        op.abandoned = true;  // the completion frees the slot
        op.waiter = {};
    }
}

// --- room_awaiter ---

void device_core::room_awaiter::await_suspend(std::coroutine_handle<> h) {
    handle_ = h;
    core_.room_waiters_[room_].push_back(h);
}

device_core::room_awaiter::~room_awaiter() {
    if (!handle_ || resumed_) return;
    if (auto it = core_.room_waiters_.find(room_); it != core_.room_waiters_.end()) {
        auto& q = it->second;
        if (auto pos = std::find(q.begin(), q.end(), handle_); pos != q.end()) {
            q.erase(pos);
            if (q.empty()) core_.room_waiters_.erase(it);
            return;
        }
    }
    // Woken but destroyed before it ran: pass the room on.
    core_.loop_.forget(handle_);
    core_.wake_room(room_);
}

}  // namespace vmrdma::detail
