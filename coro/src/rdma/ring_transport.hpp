// ring_transport (unix:PATH, xen:DEVICE): the engine lives in a backend
// (vmrdmad or the Xen backend); this process posts requests into the shared
// ring, publishes them once per loop turn (one doorbell per batch, and only
// when the backend asked for one), and turns responses into the completions
// the in-process engine would have produced.
#pragma once

#include <cstdint>
#include <memory>

#include "ring_link.hpp"
#include "transport.hpp"
#include "vmrdma/event_loop.hpp"

namespace vmrdma::detail {

class ring_transport final : public transport {
public:
    ring_transport(event_loop& loop, completion_sink& sink, std::unique_ptr<ring_link> link,
                   bool responses_in_turns = false);
    // Every operation still with the backend fails with -ECANCELED.
    ~ring_transport() override;

    mac_address mac() const noexcept override { return link_->mac(); }
    std::uint32_t mtu() const noexcept override { return link_->mtu(); }
    std::string backend_name() const override { return link_->backend(); }

    void open_endpoint(std::uint16_t id, const endpoint_options& options) override;
    void close_endpoint(std::uint16_t id) noexcept override;
    void set_weight(std::uint16_t ep, std::uint32_t weight) override;
    std::uint64_t register_memory(std::uint16_t ep, std::span<std::byte> memory, std::uint32_t access) override;
    void deregister(std::uint64_t key) noexcept override;

    int post(const vr_ring_req& req) noexcept override { return link_->post(req); }
    void post_detached(const vr_ring_req& req) override { link_->post_detached(req); }
    // One pool: the ring's requests.
    std::uint64_t room_of(const vr_ring_req&) const noexcept override { return 0; }
    // The ring has no way to take a request back: it ends when the backend answers.
    void cancel(std::uint64_t) noexcept override {}
    void want_flush() noexcept override {}  // every loop turn publishes

    counters device_stats() const override;
    counters endpoint_stats(std::uint16_t) const override { return {}; }

private:
    void arm_doorbell();
    static void on_doorbell(event_loop& loop, op_slot& slot);
    void drain();
    void arm_hangup();
    static void on_hangup(event_loop& loop, op_slot& slot);

    event_loop& loop_;
    completion_sink& sink_;
    std::unique_ptr<ring_link> link_;
    std::size_t hook_id_ = 0;
    std::size_t idle_hook_id_ = 0;        // responses in turns: arms the doorbell read
    bool responses_in_turns_ = false;
    bool doorbell_gone_ = false;          // its read failed: the backend is gone
    std::uint32_t doorbell_slot_ = UINT32_MAX;
    std::uint32_t hangup_slot_ = UINT32_MAX;
};

}  // namespace vmrdma::detail
