#include "device_core.hpp"
#include "ring_link.hpp"

#include <poll.h>
#include <sys/random.h>
#include <time.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace vmrdma::detail {

device_core::device_core(event_loop& loop, std::unique_ptr<eth_port> port, const device_options& o)
    : loop_(loop), port_(std::move(port)) {
    port_->set_bundling(o.bundle_small_frames);
    host_ops_.xmit = &device_core::on_xmit;
    host_ops_.complete = &device_core::on_complete;
    host_ops_.random = &device_core::on_random;
    host_ops_.accept = nullptr;  // listening endpoints accept every peer

    vr_config cfg{};
    std::memcpy(cfg.mac, port_->mac().bytes.data(), 6);
    cfg.ethertype = o.ethertype;
    cfg.mtu = port_->mtu();
    cfg.max_endpoints = o.max_endpoints;
    cfg.max_conns = o.max_connections;
    cfg.max_regions = o.max_regions;
    cfg.max_ops = o.max_ops_per_connection;
    cfg.max_recvs = o.max_posted_recvs;
    cfg.unexp_depth = o.unexpected_messages;
    cfg.unexp_buf_size = o.unexpected_message_size;
    // The rest of the tuning is the engine's profile (VR_DEFAULT_* in
    // proto/engine.h); a 0 here takes it too.
    cfg.window = o.window_frames;
    cfg.rto_ns = o.rto_ns;
    cfg.retry_limit = o.retry_limit;
    cfg.host = &host_ops_;
    cfg.mem = nullptr;  // plain pointers
    cfg.ctx = this;

    std::size_t bytes = vr_engine_mem_size(&cfg);
    if (bytes == 0) throw error(errc::invalid_argument, "device options rejected by the engine");
    // Not value-initialised: vr_engine_create clears what it uses.
    std::size_t words = (bytes + 7) / 8;
    engine_memory_.reset(new std::uint64_t[words]);
    if (int rc = vr_engine_create(&cfg, engine_memory_.get(), words * 8, &engine_);
        rc < 0)
        throw error(code_from_status(rc), "cannot create the protocol engine");

    hook_id_ = loop_.add_turn_hook([this] { return flush(); });
    start_receiving();
}

// Receive through a provided-buffer ring if the kernel has them (5.19+),
// about 8 MiB of MTU-sized buffers; otherwise poll + recvmmsg.
void device_core::start_receiving() {
    // VMRDMA_ETH_RX=recvmmsg forces the fallback, to compare the two.
    if (const char* rx = std::getenv("VMRDMA_ETH_RX"); rx && std::string_view(rx) == "recvmmsg") {
        arm_poll();
        return;
    }
    std::size_t buffer = VR_ETH_HLEN + port_->mtu();
    unsigned count = 64;
    while (count < 4096 && std::size_t{count} * 2 * buffer <= (8u << 20)) count *= 2;
    try {
        receiver_ = std::make_unique<ring_receiver>(loop_, port_->fd(), buffer, count, &device_core::on_frame, this);
    } catch (const error&) {
        arm_poll();
    }
}

void device_core::on_frame(void* context, const std::byte* frame, std::uint32_t length) {
    auto* self = static_cast<device_core*>(context);
    vr_engine_input(self->engine_, frame, length, now_ns());
    self->flush_wanted_ = true;  // ACKs, responses and window openings
}

device_core::~device_core() {
    if (link_) {
        destroy_link();
        return;
    }
    loop_.remove_turn_hook(hook_id_);
    receiver_.reset();
    if (poll_slot_ != UINT32_MAX) loop_.abandon(poll_slot_);
    for (auto s : timer_slots_) loop_.abandon(s);
    // Every outstanding operation completes (with -ECANCELED) here; their
    // awaiters resume on the next turn and see the error.
    vr_engine_destroy(engine_);
}

void device_core::open_endpoint(std::uint16_t id, const endpoint_options& options) {
    if (link_) {
        link_open_endpoint(id, options);
        endpoints_[id] = {};
        return;
    }
    if (int rc = vr_ep_open(engine_, id, options.weight, options.listen); rc < 0) {
        if (rc == -EEXIST)
            throw error(errc::invalid_argument, "endpoint " + std::to_string(id) + " is already open");
        if (rc == -EBUSY)
            throw error(errc::resources_exhausted,
                        "endpoint " + std::to_string(id) + " is still closing (its DISCONNECTs are not out yet)");
        throw error(code_from_status(rc), "cannot open endpoint " + std::to_string(id));
    }
    endpoints_[id] = {};
}

void device_core::close_endpoint(std::uint16_t id) noexcept {
    if (link_)
        link_close_endpoint(id);  // vmrdmad fails its operations
    else
        vr_ep_close(engine_, id);  // fails its operations; their awaiters resume
    if (auto it = endpoints_.find(id); it != endpoints_.end()) {
        auto& ep = it->second;
        ep.closed = true;
        ep.accepted.clear();  // vr_ep_close disconnected them too
        if (ep.accept_waiter) loop_.make_ready(std::exchange(ep.accept_waiter, {}));
    }
    want_flush();  // the DISCONNECTs
}

std::uint32_t device_core::alloc_op(std::uint32_t conn) {
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
    return index;
}

void device_core::free_op(std::uint32_t index) noexcept {
    ++ops_[index].generation;
    free_ops_.push_back(index);
}

int device_core::on_xmit(void* ctx, const vr_frame* frame) {
    auto* self = static_cast<device_core*>(ctx);
    if (!self->port_->queue(*frame)) {
        self->port_->flush();
        self->port_->queue(*frame);
    }
    return 0;
}

void device_core::on_complete(void* ctx, const vr_completion* wc) {
    static_cast<device_core*>(ctx)->completed(*wc);
}

std::uint32_t device_core::on_random(void*) {
    std::uint32_t v = 0;
    while (getrandom(&v, sizeof v, 0) != sizeof v) {
    }
    return v;
}

void device_core::completed(const vr_completion& wc) {
    if (wc.op == VR_WC_ACCEPT) {
        auto& ep = endpoints_[wc.ep];
        connections_[wc.conn] = {};
        ep.accepted.push_back(wc.conn);
        if (ep.accept_waiter) loop_.make_ready(std::exchange(ep.accept_waiter, {}));
        return;
    }
    if (wc.op == VR_WC_DISCONNECT) {
        if (auto it = connections_.find(wc.conn); it != connections_.end()) it->second.closed = true;
        wake_event_waiters();
        return;
    }
    auto index = static_cast<std::uint32_t>(wc.cookie & 0xffffffffu);
    auto generation = static_cast<std::uint32_t>(wc.cookie >> 32);
    if (index >= ops_.size() || ops_[index].generation != generation) return;
    auto& op = ops_[index];
    if (op.done) return;
    op.wc = wc;
    op.done = true;
    if (auto it = connections_.find(op.conn); it != connections_.end() && it->second.outstanding > 0)
        --it->second.outstanding;
    if (wc.op == VR_WC_CONNECT && wc.status == 0) connections_[wc.conn] = {};
    if (op.abandoned)
        free_op(index);
    else if (op.waiter)
        loop_.make_ready(std::exchange(op.waiter, {}));
    wake_event_waiters();
}

void device_core::wake_event_waiters() {
    for (auto h : event_waiters_) loop_.make_ready(h);
    event_waiters_.clear();
}

task<std::uint32_t> device_core::next_accepted(std::uint16_t ep, std::stop_token stop) {
    auto it = endpoints_.find(ep);
    if (it == endpoints_.end()) throw error(errc::invalid_argument, "endpoint is not open");
    auto& state = it->second;
    while (state.accepted.empty()) {
        if (state.closed) throw error(errc::cancelled, "the endpoint was closed");
        if (stop.stop_requested()) throw error(errc::cancelled, "accept cancelled");
        if (state.accept_waiter) throw error(errc::invalid_argument, "another accept is already waiting");
        struct park {
            endpoint_state& st;
            event_loop& loop;
            std::coroutine_handle<> self;
            bool resumed = false;
            park(endpoint_state& s, event_loop& l) : st(s), loop(l) {}
            park(const park&) = delete;
            ~park() {
                if (!self || resumed) return;
                if (st.accept_waiter == self)
                    st.accept_waiter = {};
                else
                    loop.forget(self);
            }
            bool await_ready() noexcept { return false; }
            void await_suspend(std::coroutine_handle<> h) noexcept { st.accept_waiter = self = h; }
            void await_resume() noexcept { resumed = true; }
        };
        // A stop may be requested on any thread: wake the waiter from the
        // loop thread (a spurious wake-up just loops round).
        auto wake = [this, ep] {
            auto resume = [this, ep] {
                auto& st = endpoints_[ep];
                if (st.accept_waiter) loop_.make_ready(std::exchange(st.accept_waiter, {}));
            };
            if (loop_.on_loop_thread())
                resume();
            else
                loop_.post(resume);
        };
        std::stop_callback<decltype(wake)> on_stop(stop, wake);
        co_await park{state, loop_};
    }
    auto conn = state.accepted.front();
    state.accepted.pop_front();
    co_return conn;
}

task<void> device_core::drained(std::uint32_t conn) {
    for (;;) {
        auto it = connections_.find(conn);
        if (it == connections_.end() || it->second.outstanding == 0) co_return;
        co_await event_awaiter{event_waiters_};
    }
}

void device_core::forget_connection(std::uint32_t conn) noexcept { connections_.erase(conn); }

bool device_core::connection_open(std::uint32_t conn) const noexcept {
    auto it = connections_.find(conn);
    return it != connections_.end() && !it->second.closed;
}

// Transmits what the engine has ready, in batches of one sendmmsg each.
// Returns true when more remains, so the loop does not block this turn.
bool device_core::flush() {
    constexpr int batches_per_turn = 16;
    bool more = false;
    if (flush_wanted_) {
        flush_wanted_ = false;
        auto now = now_ns();
        const auto frames = static_cast<int>(port_->batch_frames());
        for (int i = 0; i < batches_per_turn; ++i) {
            int n = vr_engine_tx_poll(engine_, now, static_cast<std::uint32_t>(frames));
            port_->flush();
            if (n < frames) break;
            if (i == batches_per_turn - 1) more = flush_wanted_ = true;
        }
    }
    arm_timer_if_needed();
    return more;
}

void device_core::arm_poll() {
    poll_slot_ = loop_.arm_callback(&device_core::on_readable, this, [this](io_uring_sqe* sqe, op_slot&) {
        io_uring_prep_poll_multishot(sqe, port_->fd(), POLLIN);
    });
}

void device_core::on_readable(event_loop& loop, op_slot& slot) {
    auto* self = static_cast<device_core*>(slot.context);
    bool ended = !slot.busy;
    auto now = now_ns();
    self->port_->drain([self, now](const std::byte* frame, std::uint32_t len) {
        vr_engine_input(self->engine_, frame, len, now);
    });
    self->flush_wanted_ = true;  // ACKs, responses and window openings
    if (ended) {
        loop.release_slot(self->poll_slot_);
        self->poll_slot_ = UINT32_MAX;
        self->arm_poll();
    }
}

void device_core::arm_timer_if_needed() {
    std::uint64_t next = vr_engine_next_timeout(engine_);
    if (next == UINT64_MAX || next >= armed_deadline_) return;
    std::uint32_t index = loop_.arm_callback(&device_core::on_timer, this, [next](io_uring_sqe* sqe, op_slot& s) {
        s.scratch = next;  // the deadline this timer stands for
        s.timespec.tv_sec = static_cast<std::int64_t>(next / 1'000'000'000);
        s.timespec.tv_nsec = static_cast<std::int64_t>(next % 1'000'000'000);
        io_uring_prep_timeout(sqe, &s.timespec, 0, IORING_TIMEOUT_ABS);
    });
    timer_slots_.push_back(index);
    armed_deadline_ = next;
}

void device_core::on_timer(event_loop& loop, op_slot& slot) {
    auto* self = static_cast<device_core*>(slot.context);
    std::uint64_t deadline = slot.scratch;
    for (auto it = self->timer_slots_.begin(); it != self->timer_slots_.end(); ++it) {
        if (&loop.slot(*it) == &slot) {
            loop.release_slot(*it);
            self->timer_slots_.erase(it);
            break;
        }
    }
    if (deadline == self->armed_deadline_) self->armed_deadline_ = UINT64_MAX;
    vr_engine_on_timer(self->engine_, now_ns());
    self->flush_wanted_ = true;
}

std::uint64_t device_core::now_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// --- op_awaiter ---

void device_core::op_awaiter::await_suspend(std::coroutine_handle<> h) {
    core_.ops_[index_].waiter = handle_ = h;
    generation_ = core_.ops_[index_].generation;
    suspended_ = true;
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
    };
    if (self->core_.loop_.on_loop_thread())
        cancel();
    else
        self->core_.loop_.post(cancel);
}

bool device_core::op_awaiter::await_resume() noexcept {
    resumed_ = true;
    on_stop_.reset();
    return !core_.ops_[index_].abandoned;
}

device_core::op_awaiter::~op_awaiter() {
    on_stop_.reset();
    if (!suspended_ || resumed_) return;
    // The awaiting frame is being destroyed while suspended: it may already
    // sit in the ready queue, and the op may still be with the engine.
    core_.loop_.forget(handle_);
    auto& op = core_.ops_[index_];
    if (op.generation != generation_) return;  // completed after a cancel, freed
    if (op.done) {
        core_.free_op(index_);
    } else {
        op.abandoned = true;  // the engine's completion frees the slot
        op.waiter = {};
    }
}

}  // namespace vmrdma::detail
