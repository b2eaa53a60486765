// engine_transport (eth:IFNAME): the protocol engine in this process, on a
// raw AF_PACKET port. It feeds received frames and the time to the engine,
// flushes transmit batches once per loop turn, keeps one io_uring timer
// armed at the engine's next deadline, and hands the engine's completions
// to device_core. Listening endpoints' new connections wait here for an
// ACCEPT request, oldest request first.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

#include "eth_port.hpp"
#include "ring_receiver.hpp"
#include "transport.hpp"
#include "vmrdma/event_loop.hpp"

namespace vmrdma::detail {

class engine_transport final : public transport {
public:
    engine_transport(event_loop& loop, completion_sink& sink, std::unique_ptr<eth_port> port,
                     const device_options& options);
    // Every operation still with the engine completes with -ECANCELED.
    ~engine_transport() override;

    mac_address mac() const noexcept override { return port_->mac(); }
    std::uint32_t mtu() const noexcept override { return port_->mtu(); }
    std::string backend_name() const override { return "the engine"; }

    void open_endpoint(std::uint16_t id, const endpoint_options& options) override;
    void close_endpoint(std::uint16_t id) noexcept override;
    void set_weight(std::uint16_t ep, std::uint32_t weight) override;
    std::uint32_t register_memory(std::uint16_t ep, std::span<std::byte> memory, std::uint32_t access) override;
    void deregister(std::uint32_t key) noexcept override;

    int post(const vr_ring_req& req) noexcept override;
    void post_detached(const vr_ring_req& req) override;
    std::uint64_t room_of(const vr_ring_req& req) const noexcept override;
    void cancel(std::uint64_t cookie) noexcept override;
    void want_flush() noexcept override { flush_wanted_ = true; }

    counters device_stats() const override;
    counters endpoint_stats(std::uint16_t ep) const override;

private:
    struct listener {
        struct arrival {
            std::uint32_t conn;
            bool failed;  // the engine failed it before an ACCEPT took it
        };
        std::deque<std::uint64_t> accepts;  // ACCEPT requests' cookies, oldest first
        std::deque<arrival> backlog;        // connections no ACCEPT has taken yet
    };

    // Engine callbacks.
    static int on_xmit(void* ctx, const vr_frame* frame);
    static void on_complete(void* ctx, const vr_completion* wc);
    static std::uint32_t on_random(void* ctx);
    void accepted(std::uint16_t ep, std::uint32_t conn);
    void failed(std::uint32_t conn);
    void hand_over(std::uint16_t ep, std::uint64_t cookie, listener::arrival arrival);

    // Loop plumbing.
    bool flush();
    void start_receiving();
    static void on_frame(void* context, const std::byte* frame, std::uint32_t length);
    void arm_poll();
    static void on_readable(event_loop& loop, op_slot& slot);
    void arm_timer_if_needed();
    static void on_timer(event_loop& loop, op_slot& slot);

    event_loop& loop_;
    completion_sink& sink_;
    std::unique_ptr<eth_port> port_;
    std::unique_ptr<std::uint64_t[]> engine_memory_;
    vr_engine* engine_ = nullptr;
    vr_host_ops host_ops_{};
    std::unordered_map<std::uint16_t, listener> listeners_;
    // DISCONNECTs posted detached, for the next flush: a completion (inside
    // the engine's own call) may post one.
    std::vector<std::uint32_t> disconnects_;
    std::size_t hook_id_ = 0;
    std::unique_ptr<ring_receiver> receiver_;  // or, where the kernel lacks buffer rings:
    std::uint32_t poll_slot_ = UINT32_MAX;     // poll + recvmmsg
    std::vector<std::uint32_t> timer_slots_;
    std::uint64_t armed_deadline_ = UINT64_MAX;
    bool flush_wanted_ = false;
};

}  // namespace vmrdma::detail
