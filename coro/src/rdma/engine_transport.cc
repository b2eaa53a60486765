#include "engine_transport.hpp"

#include <poll.h>
#include <sys/random.h>
#include <time.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "engine_status.hpp"

extern "C" {
#include "proto/service.h"
}

namespace vmrdma::detail {
namespace {

std::uint64_t now_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

counters to_counters(const vr_counters& c) {
    counters out;
    out.tx_frames = c.tx_frames;
    out.tx_bytes = c.tx_bytes;
    out.rx_frames = c.rx_frames;
    out.rx_bytes = c.rx_bytes;
    out.retransmits = c.retransmits;
    out.timeouts = c.timeouts;
    out.duplicates = c.dups;
    std::uint64_t dropped = c.drop_not_for_us + c.drop_no_ep + c.drop_no_conn + c.drop_bad_state +
                            c.drop_bad_ack;
    for (auto d : c.drop_parse) dropped += d;
    out.rx_dropped = dropped;
    for (auto n : c.naks_tx) out.naks_sent += n;
    for (auto n : c.naks_rx) out.naks_received += n;
    out.bundles_received = c.rx_bundles;
    return out;
}

}  // namespace

engine_transport::engine_transport(event_loop& loop, completion_sink& sink, std::unique_ptr<eth_port> port,
                                   const device_options& o)
    : loop_(loop), sink_(sink), port_(std::move(port)) {
    port_->set_bundling(o.bundle_small_frames);
    host_ops_.xmit = &engine_transport::on_xmit;
    host_ops_.complete = &engine_transport::on_complete;
    host_ops_.random = &engine_transport::on_random;
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
    if (int rc = vr_engine_create(&cfg, engine_memory_.get(), words * 8, &engine_); rc < 0)
        throw error(code_from_status(rc), "cannot create the protocol engine");

    hook_id_ = loop_.add_turn_hook([this] { return flush(); });
    start_receiving();
}

engine_transport::~engine_transport() {
    loop_.remove_turn_hook(hook_id_);
    receiver_.reset();
    if (poll_slot_ != UINT32_MAX) loop_.abandon(poll_slot_);
    for (auto s : timer_slots_) loop_.abandon(s);
    // ACCEPTs no connection came for end like the engine's operations.
    for (auto& [ep, l] : listeners_)
        for (auto cookie : l.accepts) {
            vr_completion wc{};
            wc.cookie = cookie;
            wc.op = VR_WC_CONNECT;
            wc.ep = ep;
            wc.status = -ECANCELED;
            sink_.completed(wc);
        }
    listeners_.clear();
    // Every outstanding operation completes (with -ECANCELED) here.
    vr_engine_destroy(engine_);
}

// Receive through a provided-buffer ring if the kernel has them (5.19+),
// about 8 MiB of MTU-sized buffers; otherwise poll + recvmmsg.
void engine_transport::start_receiving() {
    // VMRDMA_ETH_RX=recvmmsg forces the fallback, to compare the two.
    if (const char* rx = std::getenv("VMRDMA_ETH_RX"); rx && std::string_view(rx) == "recvmmsg") {
        arm_poll();
        return;
    }
    std::size_t buffer = VR_ETH_HLEN + port_->mtu();
    unsigned count = 64;
    while (count < 4096 && std::size_t{count} * 2 * buffer <= (8u << 20)) count *= 2;
    try {
        receiver_ =
            std::make_unique<ring_receiver>(loop_, port_->fd(), buffer, count, &engine_transport::on_frame, this);
    } catch (const error&) {
        arm_poll();
    }
}

void engine_transport::on_frame(void* context, const std::byte* frame, std::uint32_t length) {
    auto* self = static_cast<engine_transport*>(context);
    vr_engine_input(self->engine_, frame, length, now_ns());
    self->flush_wanted_ = true;  // ACKs, responses and window openings
}

void engine_transport::open_endpoint(std::uint16_t id, const endpoint_options& options) {
    if (int rc = vr_ep_open(engine_, id, options.weight, options.listen); rc < 0) {
        if (rc == -EEXIST) throw error(errc::invalid_argument, "endpoint " + std::to_string(id) + " is already open");
        if (rc == -EBUSY)
            throw error(errc::resources_exhausted,
                        "endpoint " + std::to_string(id) + " is still closing (its DISCONNECTs are not out yet)");
        throw error(code_from_status(rc), "cannot open endpoint " + std::to_string(id));
    }
    if (options.listen) listeners_[id] = {};
}

void engine_transport::close_endpoint(std::uint16_t id) noexcept {
    vr_ep_close(engine_, id);  // fails its operations and disconnects its connections
    if (auto it = listeners_.find(id); it != listeners_.end()) {
        auto accepts = std::move(it->second.accepts);
        listeners_.erase(it);
        for (auto cookie : accepts) {
            vr_completion wc{};
            wc.cookie = cookie;
            wc.op = VR_WC_CONNECT;
            wc.ep = id;
            wc.status = -ECANCELED;
            sink_.completed(wc);
        }
    }
    flush_wanted_ = true;  // the DISCONNECTs
}

void engine_transport::set_weight(std::uint16_t ep, std::uint32_t weight) {
    if (int rc = vr_ep_set_weight(engine_, ep, weight); rc < 0)
        throw error(code_from_status(rc), "cannot set the weight (1.." + std::to_string(VR_WEIGHT_MAX) + ")");
}

std::uint32_t engine_transport::register_memory(std::uint16_t ep, std::span<std::byte> memory,
                                                std::uint32_t access) {
    std::uint32_t key = 0;
    if (int rc = vr_reg_mr(engine_, ep, memory.data(), memory.size(), access, &key); rc < 0)
        throw error(code_from_status(rc), "memory registration failed");
    return key;
}

void engine_transport::deregister(std::uint32_t key) noexcept {
    vr_dereg_mr(engine_, key);
    flush_wanted_ = true;
}

int engine_transport::post(const vr_ring_req& req) noexcept {
    if (req.opcode == VR_RING_ACCEPT) {
        auto it = listeners_.find(req.ep);
        if (it == listeners_.end()) return -EINVAL;  // not open, or not listening
        auto& l = it->second;
        if (!l.backlog.empty()) {
            auto arrival = l.backlog.front();
            l.backlog.pop_front();
            hand_over(req.ep, req.cookie, arrival);
        } else {
            l.accepts.push_back(req.cookie);
        }
        return 0;
    }
    std::uint32_t new_conn = 0;
    int rc = vr_svc_post(engine_, &req, req.conn, req.cookie, &new_conn);
    if (rc == 0) flush_wanted_ = true;
    return rc;
}

void engine_transport::post_detached(const vr_ring_req& req) {
    if (req.opcode != VR_RING_DISCONNECT) return;  // nothing else is posted detached
    disconnects_.push_back(req.conn);
    flush_wanted_ = true;
}

// The engine's pools: operations per connection, posted receives per endpoint.
std::uint64_t engine_transport::room_of(const vr_ring_req& req) const noexcept {
    if (req.opcode == VR_RING_RECV) return (std::uint64_t{1} << 32) | req.ep;
    return req.conn;
}

// Only a waiting ACCEPT can end early; the engine's operations are on the wire.
void engine_transport::cancel(std::uint64_t cookie) noexcept {
    for (auto& [ep, l] : listeners_)
        for (auto it = l.accepts.begin(); it != l.accepts.end(); ++it)
            if (*it == cookie) {
                l.accepts.erase(it);
                vr_completion wc{};
                wc.cookie = cookie;
                wc.op = VR_WC_CONNECT;
                wc.ep = ep;
                wc.status = -ECANCELED;
                sink_.completed(wc);
                return;
            }
}

counters engine_transport::device_stats() const {
    auto c = to_counters(*vr_engine_counters(engine_));
    c.bundles_sent = port_->bundles_sent();
    return c;
}

counters engine_transport::endpoint_stats(std::uint16_t ep) const {
    vr_counters c{};
    vr_ep_counters(engine_, ep, &c);
    return to_counters(c);
}

// --- engine callbacks ---

int engine_transport::on_xmit(void* ctx, const vr_frame* frame) {
    auto* self = static_cast<engine_transport*>(ctx);
    if (!self->port_->queue(*frame)) {
        self->port_->flush();
        self->port_->queue(*frame);
    }
    return 0;
}

void engine_transport::on_complete(void* ctx, const vr_completion* wc) {
    auto* self = static_cast<engine_transport*>(ctx);
    if (wc->op == VR_WC_ACCEPT)
        self->accepted(wc->ep, wc->conn);
    else if (wc->op == VR_WC_DISCONNECT)
        self->failed(wc->conn);
    else
        self->sink_.completed(*wc);
}

std::uint32_t engine_transport::on_random(void*) {
    std::uint32_t v = 0;
    while (getrandom(&v, sizeof v, 0) != sizeof v) {
    }
    return v;
}

// A listening endpoint's new connection: the oldest waiting ACCEPT takes it,
// else it waits for one.
void engine_transport::accepted(std::uint16_t ep, std::uint32_t conn) {
    auto& l = listeners_[ep];
    if (l.accepts.empty()) {
        l.backlog.push_back({conn, false});
        return;
    }
    auto cookie = l.accepts.front();
    l.accepts.pop_front();
    hand_over(ep, cookie, {conn, false});
}

void engine_transport::failed(std::uint32_t conn) {
    for (auto& [ep, l] : listeners_)
        for (auto& a : l.backlog)
            if (a.conn == conn) {
                a.failed = true;  // its ACCEPT gets it, already closed
                return;
            }
    sink_.connection_failed(conn);
}

void engine_transport::hand_over(std::uint16_t ep, std::uint64_t cookie, listener::arrival arrival) {
    vr_completion wc{};
    wc.cookie = cookie;
    wc.op = VR_WC_CONNECT;
    wc.ep = ep;
    wc.conn = arrival.conn;
    sink_.completed(wc);
    if (arrival.failed) sink_.connection_failed(arrival.conn);
}

// --- loop plumbing ---

// Transmits what the engine has ready, in batches of one sendmmsg each.
// Returns true when more remains, so the loop does not block this turn.
bool engine_transport::flush() {
    constexpr int batches_per_turn = 16;
    bool more = false;
    for (auto conn : std::exchange(disconnects_, {})) {
        vr_ring_req r{};
        r.opcode = VR_RING_DISCONNECT;
        std::uint32_t unused = 0;
        vr_svc_post(engine_, &r, conn, 0, &unused);
    }
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

void engine_transport::arm_poll() {
    poll_slot_ = loop_.arm_callback(&engine_transport::on_readable, this, [this](io_uring_sqe* sqe, op_slot&) {
        io_uring_prep_poll_multishot(sqe, port_->fd(), POLLIN);
    });
}

void engine_transport::on_readable(event_loop& loop, op_slot& slot) {
    auto* self = static_cast<engine_transport*>(slot.context);
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

void engine_transport::arm_timer_if_needed() {
    std::uint64_t next = vr_engine_next_timeout(engine_);
    if (next == UINT64_MAX || next >= armed_deadline_) return;
    std::uint32_t index =
        loop_.arm_callback(&engine_transport::on_timer, this, [next](io_uring_sqe* sqe, op_slot& s) {
            s.scratch = next;  // the deadline this timer stands for
            s.timespec.tv_sec = static_cast<std::int64_t>(next / 1'000'000'000);
            s.timespec.tv_nsec = static_cast<std::int64_t>(next % 1'000'000'000);
            io_uring_prep_timeout(sqe, &s.timespec, 0, IORING_TIMEOUT_ABS);
        });
    timer_slots_.push_back(index);
    armed_deadline_ = next;
}

void engine_transport::on_timer(event_loop& loop, op_slot& slot) {
    auto* self = static_cast<engine_transport*>(slot.context);
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

}  // namespace vmrdma::detail
