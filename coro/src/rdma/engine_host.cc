#include "engine_host.hpp"

#include <poll.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <string>
#include <string_view>
#include <utility>

#include "engine_status.hpp"
#include "vmrdma/error.hpp"

namespace vmrdma::detail {
namespace {

// The engine's clock: steady_clock (CLOCK_MONOTONIC), in nanoseconds.
std::uint64_t ns_of(std::chrono::steady_clock::time_point t) noexcept {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

std::uint64_t now_ns() noexcept { return ns_of(std::chrono::steady_clock::now()); }

}  // namespace

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
                            c.drop_bad_ack + c.drop_out_of_window + c.auth_failed + c.auth_replays;
    for (auto d : c.drop_parse) dropped += d;
    out.rx_dropped = dropped;
    for (auto n : c.naks_tx) out.naks_sent += n;
    for (auto n : c.naks_rx) out.naks_received += n;
    out.bundles_received = c.rx_bundles;
    out.cookies_refused = c.cookies_refused;
    out.challenges = c.challenges;
    out.connections_refused = c.conn_limit_refused + c.offenders_refused + c.auth_refused;
    out.out_of_window = c.drop_out_of_window;
    out.auth_failed = c.auth_failed;
    out.replays = c.auth_replays;
    out.offences = c.offences;
    return out;
}

engine_host::engine_host(event_loop& loop, engine_events& events, std::string_view ifname,
                         const device_options& o)
    : loop_(loop), events_(events), port_(std::make_unique<eth_port>(ifname, o.ethertype)) {
    // Before anything holds this object (a hook, the engine): a constructor
    // that throws runs no destructor.
    const receive_path path = receive_path_from_environment();
    port_->set_bundling(o.bundle_small_frames);
    host_ops_.xmit = &engine_host::on_xmit;
    host_ops_.complete = &engine_host::on_complete;
    host_ops_.random = &engine_host::on_random;
    host_ops_.accept = &engine_host::on_accept;

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
    cfg.peer_timeout_ns = o.peer_timeout_ns;
    cfg.keepalive_ns = o.keepalive_ns;
    cfg.rnr_timeout_ns = o.receiver_not_ready_timeout_ns;
    cfg.ackreq_delay_ns = o.ack_request_delay_ns;
    cfg.recovery = o.go_back_n ? VR_RECOVERY_GO_BACK_N : VR_RECOVERY_SELECTIVE;
    cfg.integrity = o.integrity == device_options::integrity_mode::link ? VR_INTEGRITY_LINK
                                                                        : VR_INTEGRITY_END_TO_END;
    if (o.auth_key) {
        cfg.auth = VR_AUTH_PSK;
        std::memcpy(cfg.auth_key, o.auth_key->data(), sizeof cfg.auth_key);
    }
    cfg.host = &host_ops_;
    cfg.mem = nullptr;  // plain pointers
    cfg.ctx = this;

    std::size_t bytes = vr_engine_mem_size(&cfg);
    if (bytes == 0) throw error(errc::invalid_argument, "device options rejected by the engine");
    // Not value-initialised: vr_engine_create clears what it uses.
    std::size_t words = (bytes + 7) / 8;
    engine_memory_.reset(new std::uint64_t[words]);
    int rc = vr_engine_create(&cfg, engine_memory_.get(), words * 8, &engine_);
    ::explicit_bzero(cfg.auth_key, sizeof cfg.auth_key);  // the engine keeps its own copy
    if (rc < 0) throw error(code_from_status(rc), "cannot create the protocol engine");

    hook_id_ = loop_.add_turn_hook([this] { return flush(); });
    // A loop that polls (receive_in_turns, or busy polling) never takes the
    // io_uring receive, whose completions a spin would enter the kernel for.
    // Only one polled by its application (receive_in_turns) never sleeps and
    // gets the small ring; a busy-polling loop still sleeps once its poll
    // window passes idle.
    const bool polled = o.receive_in_turns || loop.options().busy_poll.count() > 0;
    start_receiving(path, polled, o.receive_in_turns, o.window_frames ? o.window_frames : VR_DEFAULT_WINDOW);
}

engine_host::~engine_host() {
    loop_.remove_turn_hook(hook_id_);
    if (idle_hook_id_) loop_.remove_turn_hook(idle_hook_id_);
    receiver_.reset();
    if (poll_slot_ != UINT32_MAX) loop_.abandon(poll_slot_);
    for (auto s : timer_slots_) loop_.abandon(s);
    destroy();
}

void engine_host::destroy() noexcept {
    if (engine_) vr_engine_destroy(std::exchange(engine_, nullptr));
}

counters engine_host::device_counters() const {
    auto c = to_counters(*vr_engine_counters(engine_));
    c.bundles_sent = port_->bundles_sent();
    c.rx_ring_frames = port_->rx_ring_frames();
    return c;
}

counters engine_host::endpoint_counters(std::uint16_t ep) const {
    vr_counters c{};
    vr_ep_counters(engine_, ep, &c);
    return to_counters(c);
}

// How frames come in (docs/eth-transport.md, "Receive"); VMRDMA_ETH_RX
// chooses another way, to compare:
//  - by default, a mapped TPACKET_V2 ring that every turn of the loop reads
//    (a memory read), with a one-shot poll and the engine's timer armed
//    only as the loop is about to sleep;
//  - recvmmsg: the same turns, each a recvmmsg(2) call;
//  - uring: a multishot receive into a provided-buffer ring (Linux 5.19+,
//    about 8 MiB of MTU-sized buffers; poll + recvmmsg before it), not for
//    a polled loop (device_options::receive_in_turns, busy polling).
engine_host::receive_path engine_host::receive_path_from_environment() {
    const char* rx = std::getenv("VMRDMA_ETH_RX");
    const std::string_view how = rx ? rx : "ring";
    if (how == "ring") return receive_path::ring;
    if (how == "recvmmsg") return receive_path::recvmmsg;
    if (how == "uring") return receive_path::uring;
    throw error(errc::invalid_argument,
                "VMRDMA_ETH_RX is '" + std::string(how) + "': it must be ring (the default), recvmmsg or uring");
}

void engine_host::start_receiving(receive_path path, bool polled, bool never_sleeps, std::size_t window_frames) {
    receive_in_turns_ = polled || path != receive_path::uring;
    if (receive_in_turns_) {
        idle_hook_id_ = loop_.add_idle_hook([this] {  // a poll and a timer only for a loop about to sleep
            if (poll_slot_ == UINT32_MAX) arm_poll();
            arm_timer_if_needed();
        });
        // A loop that never sleeps drains the ring all the time: 2 MiB stays
        // in cache as its slots cycle (NetPIPE at 1 MiB over the provider,
        // one pair each: 8 MiB 17.6-17.8 Gbit/s, 2 MiB 18.9-19.7, 768 KiB
        // 19.0-19.3). A
        // loop that sleeps can be away for a scheduler's quantum while the
        // peer's window keeps coming: 8 MiB, as the provided buffers had
        // (2 MiB dropped 200-450 frames a second at 64 KiB-4 MiB), and at
        // least a connection's window of frames (at MTU 65535, 8 MiB is 112
        // frames: 300-650 were dropped a second).
        if (path != receive_path::recvmmsg)
            ring_stamps_ =
                never_sleeps ? port_->use_rx_ring(2u << 20, 64) : port_->use_rx_ring(8u << 20, window_frames);
        return;
    }
    std::size_t buffer = VR_ETH_HLEN + port_->mtu();
    unsigned count = 64;
    while (count < 4096 && std::size_t{count} * 2 * buffer <= (8u << 20)) count *= 2;
    try {
        receiver_ =
            std::make_unique<ring_receiver>(loop_, port_->fd(), buffer, count, &engine_host::on_frame, this);
    } catch (const error&) {
        arm_poll();
    }
}

void engine_host::on_frame(void* context, const std::byte* frame, std::uint32_t length) {
    auto* self = static_cast<engine_host*>(context);
    if (!self->engine_) return;
    // The turn's time, not a clock read per frame (a turn reaps up to 64
    // frames within microseconds; a clock read per frame was 3 % of
    // vmrdmad's CPU at 4 KiB messages).
    vr_engine_input(self->engine_, frame, length, self->engine_clock(ns_of(self->loop_.turn_time())));
    self->took_frames_ = true;
    self->flush_wanted_ = true;  // ACKs, responses and window openings
}

// --- engine callbacks ---

int engine_host::on_xmit(void* ctx, const vr_frame* frame) {
    auto* self = static_cast<engine_host*>(ctx);
    if (std::memcmp(frame->hdr, self->port_->mac().bytes.data(), 6) == 0) {
        self->loop_back(*frame);
        return 0;
    }
    if (!self->port_->queue(*frame)) {
        self->port_->flush();
        self->port_->queue(*frame);
    }
    return 0;
}

// A frame for this host itself (another endpoint of this engine: two
// frontends of one vmrdmad, or two endpoints of one process) would not come
// back from the wire (an interface does not hand a frame to its own
// sender): it is fed to the engine on the next flush, copied whole (the
// fragments are valid only during xmit), never from inside this call.
void engine_host::loop_back(const vr_frame& frame) {
    std::vector<std::byte> bytes(frame.len);
    std::memcpy(bytes.data(), frame.hdr, frame.hdr_len);
    std::size_t at = frame.hdr_len;
    for (std::uint32_t i = 0; i < frame.nfrags && at < bytes.size(); ++i) {
        const auto n = std::min<std::size_t>(frame.frag[i].len, bytes.size() - at);
        std::memcpy(bytes.data() + at, static_cast<const std::byte*>(frame.frag[i].mem) + frame.frag[i].off, n);
        at += n;
    }
    looped_.push_back(std::move(bytes));
    flush_wanted_ = true;
}

void engine_host::on_complete(void* ctx, const vr_completion* wc) {
    static_cast<engine_host*>(ctx)->events_.engine_completion(*wc);
}

int engine_host::on_accept(void* ctx, std::uint16_t ep, const std::uint8_t mac[6], std::uint16_t peer_ep) {
    return static_cast<engine_host*>(ctx)->events_.engine_accept(ep, mac, peer_ep);
}

std::uint32_t engine_host::on_random(void*) {
    std::uint32_t v = 0;
    while (getrandom(&v, sizeof v, 0) != sizeof v) {
    }
    return v;
}

// --- loop plumbing ---

// Transmits what the engine has ready, in batches of one sendmmsg each.
// Returns true when more remains, so the loop does not block this turn.
bool engine_host::flush() {
    constexpr int batches_per_turn = 16;
    bool more = false;
    if (!engine_) return false;  // destroyed early
    // A turn hook: the loop's turn_time() is read after the coroutines that
    // ran this turn (event_loop.hpp); a drain that took frames took time
    // (up to a full ring's copies and CRCs), so transmit reads the clock again.
    auto now = engine_clock(ns_of(loop_.turn_time()));
    if (receive_in_turns_) {
        if (drain(now)) now = engine_clock(now_ns());
        // The turns keep the engine's timers too (see arm_timer_if_needed).
        if (vr_engine_next_timeout(engine_) <= now) {
            vr_engine_on_timer(engine_, now);
            flush_wanted_ = true;
        }
    }
    if (!looped_.empty()) {
        auto frames = std::move(looped_);
        looped_.clear();
        for (const auto& f : frames) vr_engine_input(engine_, f.data(), static_cast<std::uint32_t>(f.size()), now);
        flush_wanted_ = true;
    }
    events_.engine_input_taken();
    if (flush_wanted_) {
        flush_wanted_ = false;
        const auto frames = static_cast<int>(port_->batch_frames());
        for (int i = 0; i < batches_per_turn; ++i) {
            int n = vr_engine_tx_poll(engine_, now, static_cast<std::uint32_t>(frames));
            port_->flush();
            if (n < frames) break;
            if (i == batches_per_turn - 1) more = flush_wanted_ = true;
        }
    }
    if (!receive_in_turns_) arm_timer_if_needed();  // else the idle hook arms it
    // More frames on their way: the loop's next wait may gather them
    // (loop_options::coalesce_wakeups). An io_uring receive wakes that wait
    // at each frame anyway, and gathers what came meanwhile: it gathers
    // while a message's rest is on its way. Read in turns, a wait can only
    // gather by sleeping (its poll is one-shot): from the ring only in a
    // stream (arrival_stream.hpp says why), mid-message or after a frame
    // of whole messages of 1 KiB and more, and never without the ring's
    // arrival stamps.
    const bool mid_message = vr_engine_rx_mid_message(engine_);
    const bool more_coming = receive_in_turns_
                                 ? ring_stamps_ && stream_.flowing() && (mid_message || stream_.large_whole_messages())
                                 : mid_message;
    if (std::exchange(took_frames_, false) && more_coming) loop_.expect_more();
    return more || !looped_.empty();  // answers to looped frames: another turn
}

// Multishot; with receive_in_turns one poll, armed as the loop is about to
// wait (its idle hook): the turns read the socket, and a completion per
// frame is work for the thread that submitted the poll, which for the
// libfabric provider is another thread woken per frame (docs/mpi.md).
void engine_host::arm_poll() {
    const bool once = receive_in_turns_;
    poll_slot_ = loop_.arm_callback(&engine_host::on_readable, this, [this, once](io_uring_sqe* sqe, op_slot&) {
        if (once)
            io_uring_prep_poll_add(sqe, port_->fd(), POLLIN);
        else
            io_uring_prep_poll_multishot(sqe, port_->fd(), POLLIN);
    });
}

// Every frame waiting on the socket into the engine; whether there was any.
bool engine_host::drain(std::uint64_t now) {
    bool any = false;
    port_->drain([this, now, &any](const std::byte* frame, std::uint32_t len, std::uint64_t arrival) {
        any = true;
        if (!engine_) return;
        const vr_counters& counters = *vr_engine_counters(engine_);
        const bool mid_before = vr_engine_rx_mid_message(engine_);
        const auto data_before = counters.rx_data_frames;
        vr_engine_input(engine_, frame, len, now);
        if (arrival)
            stream_.frame(arrival, mid_before, vr_engine_rx_mid_message(engine_),
                          static_cast<std::uint32_t>(counters.rx_data_frames - data_before), len);
    });
    if (any) {
        took_frames_ = true;
        flush_wanted_ = true;  // ACKs, responses and window openings
        loop_.note_work();     // a passive side (one-sided writes into it) resumes nothing, yet is busy
    }
    return any;
}

void engine_host::on_readable(event_loop& loop, op_slot& slot) {
    auto* self = static_cast<engine_host*>(slot.context);
    bool ended = !slot.busy;
    self->drain(self->engine_clock(ns_of(loop.turn_time())));
    self->flush_wanted_ = true;
    if (ended) {
        loop.release_slot(self->poll_slot_);
        self->poll_slot_ = UINT32_MAX;
        if (!self->receive_in_turns_) self->arm_poll();  // else the idle hook arms it
    }
}

// With receive_in_turns the loop's turns service the engine's timers, and
// the io_uring timer is armed only as the loop is about to sleep (its idle
// hook): a timer armed from the turns is a submission every few messages,
// which for a loop whose submitter is another thread (the libfabric
// provider's helper) is a wake-up of that thread, and a helper waiting for
// the device's lock while the application spins on it (docs/mpi.md).
void engine_host::arm_timer_if_needed() {
    std::uint64_t next = vr_engine_next_timeout(engine_);
    if (next == UINT64_MAX) return;
    if (next >= armed_deadline_) return;
    std::uint32_t index =
        loop_.arm_callback(&engine_host::on_timer, this, [next](io_uring_sqe* sqe, op_slot& s) {
            s.scratch = next;  // the deadline this timer stands for
            s.timespec.tv_sec = static_cast<std::int64_t>(next / 1'000'000'000);
            s.timespec.tv_nsec = static_cast<std::int64_t>(next % 1'000'000'000);
            io_uring_prep_timeout(sqe, &s.timespec, 0, IORING_TIMEOUT_ABS);
        });
    timer_slots_.push_back(index);
    armed_deadline_ = next;
}

void engine_host::on_timer(event_loop& loop, op_slot& slot) {
    auto* self = static_cast<engine_host*>(slot.context);
    std::uint64_t deadline = slot.scratch;
    for (auto it = self->timer_slots_.begin(); it != self->timer_slots_.end(); ++it) {
        if (&loop.slot(*it) == &slot) {
            loop.release_slot(*it);
            self->timer_slots_.erase(it);
            break;
        }
    }
    if (deadline == self->armed_deadline_) self->armed_deadline_ = UINT64_MAX;
    if (self->engine_) vr_engine_on_timer(self->engine_, self->engine_clock(now_ns()));
    self->flush_wanted_ = true;
}

}  // namespace vmrdma::detail
