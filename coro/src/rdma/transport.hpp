// transport: what carries a device's operations to a protocol engine. The
// API (rdma.cc) and device_core see only this interface; there are two
// implementations:
//   engine_transport  eth:IFNAME        the engine in this process, on a raw port
//   ring_transport    unix:PATH, xen:   the engine in a backend (vmrdmad or the
//                                        Xen backend), through a ring_link
// Every operation is described once, as proto/ring.h's vr_ring_req (what a
// frontend puts in the ring); the in-process transport hands it to the engine
// through proto/service.h's vr_svc_post, a backend does the same on its side.
// Completions come back through completion_sink, on the loop thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "vmrdma/rdma.hpp"

extern "C" {
#include "proto/engine.h"
#include "proto/ring.h"
}

namespace vmrdma::detail {

// device_core's side: where a transport delivers what the engine finished.
class completion_sink {
public:
    // One operation's end (wc.cookie is the request's cookie). CONNECT and
    // ACCEPT end with op VR_WC_CONNECT and the new connection in wc.conn.
    virtual void completed(const vr_completion& wc) = 0;
    // A connection the engine failed on its own (the peer went away).
    virtual void connection_failed(std::uint32_t conn) = 0;
    // The backend is gone: every operation still with it fails with `status`.
    virtual void fail_outstanding(int status) noexcept = 0;

protected:
    ~completion_sink() = default;
};

class transport {
public:
    virtual ~transport() = default;
    transport(const transport&) = delete;
    transport& operator=(const transport&) = delete;

    virtual mac_address mac() const noexcept = 0;
    virtual std::uint32_t mtu() const noexcept = 0;
    // Who runs the engine, for messages: "the engine", "vmrdmad", ...
    virtual std::string backend_name() const = 0;

    // Control path. Throw vmrdma::error with the reason.
    virtual void open_endpoint(std::uint16_t id, const endpoint_options& options) = 0;
    // Fails the endpoint's operations (their completions arrive) and
    // disconnects its connections.
    virtual void close_endpoint(std::uint16_t id) noexcept = 0;
    virtual void set_weight(std::uint16_t ep, std::uint32_t weight) = 0;
    // Returns the region's key; `access` already includes LOCAL_WRITE.
    virtual std::uint64_t register_memory(std::uint16_t ep, std::span<std::byte> memory,
                                          std::uint32_t access) = 0;
    virtual void deregister(std::uint64_t key) noexcept = 0;

    // Data path. Posts one request (cookie in req.cookie). Returns 0 (its
    // completion follows, possibly from inside this call), -EAGAIN (no room:
    // try again after a completion of the same room_of(req)), or the refusal.
    virtual int post(const vr_ring_req& req) noexcept = 0;
    // A request whose completion nobody awaits (DISCONNECT); never refused.
    // Also called from inside a CONNECT or ACCEPT completion.
    virtual void post_detached(const vr_ring_req& req) = 0;
    // Which pool a request waits for room in when post() says -EAGAIN; a
    // completion frees room in room_of() of the request it completes.
    virtual std::uint64_t room_of(const vr_ring_req& req) const noexcept = 0;
    // Its awaiter gave up on the request: end it early (with -ECANCELED) if
    // the transport can; else its completion comes when the engine is done.
    virtual void cancel(std::uint64_t cookie) noexcept = 0;
    // Transmit what was posted, at the end of this loop turn.
    virtual void want_flush() noexcept = 0;

    virtual counters device_stats() const = 0;
    virtual counters endpoint_stats(std::uint16_t ep) const = 0;

protected:
    transport() = default;
};

}  // namespace vmrdma::detail
