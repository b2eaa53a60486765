// engine_transport (eth:IFNAME): the API's transport over an engine hosted
// in this process (engine_host). Requests go to the engine through
// proto/service.h's vr_svc_post; a listening endpoint's new connections
// wait here for an ACCEPT request, oldest request first.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine_host.hpp"
#include "transport.hpp"

extern "C" {
#include "proto/service.h"
}

namespace vmrdma::detail {

class engine_transport final : public transport, private engine_events {
public:
    engine_transport(event_loop& loop, completion_sink& sink, std::string_view ifname,
                     const device_options& options);
    // Every operation still with the engine completes with -ECANCELED.
    ~engine_transport() override;

    mac_address mac() const noexcept override { return host_.mac(); }
    std::uint32_t mtu() const noexcept override { return host_.mtu(); }
    std::string backend_name() const override { return "the engine"; }

    void open_endpoint(std::uint16_t id, const endpoint_options& options) override;
    void close_endpoint(std::uint16_t id) noexcept override;
    void set_weight(std::uint16_t ep, std::uint32_t weight) override;
    std::uint64_t register_memory(std::uint16_t ep, std::span<std::byte> memory, std::uint32_t access) override;
    void deregister(std::uint64_t key) noexcept override;

    int post(const vr_ring_req& req) noexcept override;
    void post_detached(const vr_ring_req& req) override;
    std::uint64_t room_of(const vr_ring_req& req) const noexcept override;
    void cancel(std::uint64_t cookie) noexcept override;
    void want_flush() noexcept override { host_.want_flush(); }

    counters device_stats() const override { return host_.device_counters(); }
    counters endpoint_stats(std::uint16_t ep) const override { return host_.endpoint_counters(ep); }

private:
    struct listener {
        struct arrival {
            std::uint32_t conn;
            std::uint64_t peer;  // vr_peer_word, as the engine's ACCEPT gave it
            bool failed;         // the engine failed it before an ACCEPT took it
        };
        std::deque<vr_svc_pending> accepts;  // ACCEPT requests, oldest first
        std::deque<arrival> backlog;        // connections no ACCEPT has taken yet
    };

    void engine_completion(const vr_completion& wc) override;
    void accepted(std::uint16_t ep, std::uint32_t conn, std::uint64_t peer);
    void failed(std::uint32_t conn, int status);
    // CLOSED requests wait here per connection until it ends.
    void end_closed(std::uint32_t conn, int status, std::uint64_t why);
    void complete_closed(std::uint64_t cookie, std::uint32_t conn, int status, std::uint64_t why);
    void hand_over(const vr_svc_pending& accept, listener::arrival arrival);
    void end_accept(std::uint16_t ep, std::uint64_t cookie);

    completion_sink& sink_;
    std::unordered_map<std::uint16_t, listener> listeners_;
    std::unordered_map<std::uint32_t, std::vector<std::uint64_t>> closed_waiters_;  // conn -> cookies
    std::unordered_map<std::uint32_t, std::uint64_t> ended_;  // failed connections: why (positive errno)
    std::unordered_map<std::uint64_t, vr_svc_pending> connects_;  // CONNECTs with the engine, by cookie
    engine_host host_;  // last: destroyed first, its completions still find the above
};

}  // namespace vmrdma::detail
