// engine_host: one proto/ engine hosted on the event loop, on a raw
// AF_PACKET port. It feeds received frames and the time to the engine,
// flushes transmit batches once per loop turn, keeps the engine's timers
// (in its turns, with an io_uring timer armed at the next deadline only as
// the loop is about to sleep; VMRDMA_ETH_RX=uring: that timer always
// armed), and hands every engine event
// (completions, accepted and failed connections, the accept policy) to its
// owner. Two owners: engine_transport (eth:, the API in this process) and
// vmrdmad (the driver domain, which serves frontends through
// proto/frontend.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "arrival_stream.hpp"
#include "eth_port.hpp"
#include "ring_receiver.hpp"
#include "vmrdma/event_loop.hpp"
#include "vmrdma/rdma.hpp"

extern "C" {
#include "proto/engine.h"
}

namespace vmrdma::detail {

class engine_events {
public:
    // Every vr_completion, on the loop thread, from inside an engine call.
    virtual void engine_completion(const vr_completion& wc) = 0;
    // The engine's accept policy: 0 to accept, or a negative errno.
    virtual int engine_accept(std::uint16_t, const std::uint8_t*, std::uint16_t) { return 0; }
    // Once a turn, after the frames it took went into the engine and before
    // the engine transmits: this turn's completions so far are all known,
    // and what they should wake need not wait for the transmit.
    virtual void engine_input_taken() {}

protected:
    ~engine_events() = default;
};

class engine_host {
public:
    // Opens eth:IFNAME's port ("IFNAME" here) and creates the engine.
    engine_host(event_loop& loop, engine_events& events, std::string_view ifname, const device_options& options);
    // Every operation still with the engine completes with -ECANCELED.
    ~engine_host();
    engine_host(const engine_host&) = delete;
    engine_host& operator=(const engine_host&) = delete;

    vr_engine* engine() noexcept { return engine_; }
    const vr_engine* engine() const noexcept { return engine_; }
    const mac_address& mac() const noexcept { return port_->mac(); }
    std::uint32_t mtu() const noexcept { return port_->mtu(); }
    // Transmit what was posted, at the end of this loop turn.
    void want_flush() noexcept { flush_wanted_ = true; }
    // Ends the engine now (its operations complete with -ECANCELED); later
    // calls see no engine. For owners whose events must not outlive them.
    void destroy() noexcept;

    counters device_counters() const;
    counters endpoint_counters(std::uint16_t ep) const;

private:
    static int on_xmit(void* ctx, const vr_frame* frame);
    static void on_complete(void* ctx, const vr_completion* wc);
    static int on_accept(void* ctx, std::uint16_t ep, const std::uint8_t mac[6], std::uint16_t peer_ep);
    static std::uint32_t on_random(void* ctx);

    bool flush();
    void loop_back(const vr_frame& frame);
    // VMRDMA_ETH_RX (engine_host.cc says what each does); throws
    // errc::invalid_argument for anything else.
    enum class receive_path { ring, recvmmsg, uring };
    static receive_path receive_path_from_environment();
    void start_receiving(receive_path path, bool polled, bool never_sleeps, std::size_t window_frames);
    static void on_frame(void* context, const std::byte* frame, std::uint32_t length);
    void arm_poll();
    static void on_readable(event_loop& loop, op_slot& slot);
    bool drain(std::uint64_t now);
    void arm_timer_if_needed();
    static void on_timer(event_loop& loop, op_slot& slot);

    event_loop& loop_;
    engine_events& events_;
    std::unique_ptr<eth_port> port_;
    std::unique_ptr<std::uint64_t[]> engine_memory_;
    vr_engine* engine_ = nullptr;
    vr_host_ops host_ops_{};
    std::size_t hook_id_ = 0;
    std::unique_ptr<ring_receiver> receiver_;  // or, where the kernel lacks buffer rings:
    std::uint32_t poll_slot_ = UINT32_MAX;     // poll + recvmmsg
    std::size_t idle_hook_id_ = 0;             // receive_in_turns: arms the poll
    std::vector<std::uint32_t> timer_slots_;
    std::uint64_t armed_deadline_ = UINT64_MAX;
    // The engine's time never goes back: frames take the loop turn's time,
    // which can be older than a timer's or a flush's read of the clock in
    // the same turn, and the engine subtracts times as unsigned numbers.
    std::uint64_t engine_time_ = 0;
    std::uint64_t engine_clock(std::uint64_t t) noexcept {
        if (t > engine_time_) engine_time_ = t;
        return engine_time_;
    }
    bool flush_wanted_ = false;
    bool receive_in_turns_ = false;  // the turns read the socket (not VMRDMA_ETH_RX=uring)
    bool ring_stamps_ = false;       // frames come from the mapped ring, with arrival stamps
    arrival_stream stream_;
    bool took_frames_ = false;       // frames went into the engine since the last flush()
    std::vector<std::vector<std::byte>> looped_;  // frames for this host itself (loop_back)
};

// An engine's counters as the API reports them.
counters to_counters(const vr_counters& c);

}  // namespace vmrdma::detail
