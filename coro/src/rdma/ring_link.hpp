// ring_link: a frontend's half of a split driver, whatever carries it. The
// data path is proto/ring.h's shared request/response rings plus a response
// doorbell (an eventfd the loop watches), and is the same for every
// transport: this class implements it once. What differs between transports
// is how the ring is obtained, the control path (endpoints, registration)
// and how the request doorbell is rung; subclasses provide those:
//   unix_link  (unix:PATH)   vmrdmad's control socket, eventfd doorbells
//   xen_link   (xen:DEVICE)  frontend_kmod's /dev/vmrdma: ioctls, mmap
// It does no I/O on the event loop itself: device_core watches the response
// doorbell through io_uring, calls publish() once per loop turn and drain()
// when the doorbell fires.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>

#include "vmrdma/rdma.hpp"

extern "C" {
#include "proto/control.h"
#include "proto/ring.h"
}

namespace vmrdma::detail {

class ring_link {
public:
    virtual ~ring_link() = default;
    ring_link(const ring_link&) = delete;
    ring_link& operator=(const ring_link&) = delete;

    // "unix:" or "xen:", for messages.
    virtual const char* transport() const noexcept = 0;
    // Who runs the engine, for messages: "vmrdmad", "the Xen backend".
    virtual const char* backend() const noexcept = 0;
    // How the driver domain's administrator sets an endpoint's weight.
    virtual const char* weight_admin() const noexcept = 0;

    const mac_address& mac() const noexcept { return mac_; }
    std::uint32_t mtu() const noexcept { return mtu_; }
    int response_doorbell() const noexcept { return rsp_efd_; }
    // A descriptor whose hang-up (POLLRDHUP) means the backend is gone, or
    // -1 when there is none (xen: the responses carry -ESHUTDOWN instead).
    virtual int hangup_fd() const noexcept { return -1; }
    // The backend is gone: every later post fails with -ESHUTDOWN.
    void mark_gone() noexcept;
    bool gone() const noexcept { return gone_; }

    // Control path (blocking). Throw vmrdma::error with the backend's reason.
    void open_endpoint(std::uint16_t id, std::uint32_t weight, bool listen);
    void close_endpoint(std::uint16_t id) noexcept;
    // Registers `memory` for endpoint `ep`; returns the key. The transport
    // decides which memory it can take (unix: only registrable_buffer).
    virtual std::uint64_t register_memory(std::uint16_t ep, std::span<std::byte> memory,
                                          std::uint32_t access) = 0;
    void deregister(std::uint64_t key) noexcept;
    // The backend's device counters, when the transport can ask for them.
    virtual std::optional<counters> device_counters() { return std::nullopt; }

    // Data path. post() returns -EAGAIN when size-1 requests are already
    // outstanding, -ESHUTDOWN when the backend is draining or gone;
    // post_detached() queues locally instead (for requests whose response
    // nobody awaits, such as DISCONNECT).
    int post(const vr_ring_req& req) noexcept;
    void post_detached(const vr_ring_req& req);
    // Makes posted requests visible and rings the request doorbell if the
    // backend asked for it (req_event).
    void publish() noexcept;
    // Hands every available response to `fn`; returns how many.
    std::size_t drain(const std::function<void(const vr_ring_rsp&)>& fn);
    std::uint32_t outstanding() const noexcept { return req_prod_pvt_ - rsp_cons_; }

protected:
    ring_link() = default;
    // Called by a subclass's constructor once it has the mapped shared area
    // (at least vr_ring_bytes(size) bytes, checked by the caller), the
    // response doorbell and HELLO's reply. Validates size; throws.
    void attach(void* shared, std::uint32_t size, int rsp_efd, std::uint64_t mac48, std::uint64_t mtu);
    // Rings the request doorbell.
    virtual void kick() noexcept = 0;
    // One control request and its reply (proto/control.h VR_CTL_*, the same
    // messages on every transport), without descriptors. Throws
    // vmrdma::error when it fails or the backend refuses.
    virtual vr_ctl_msg control(std::uint16_t type, std::initializer_list<std::uint64_t> args) = 0;

private:
    int rsp_efd_ = -1;  // owned by the subclass
    vr_ring_shared* shared_ = nullptr;
    vr_ring_req* reqs_ = nullptr;
    const vr_ring_rsp* rsps_ = nullptr;
    std::uint32_t size_ = 0;
    std::uint32_t req_prod_pvt_ = 0;
    std::uint32_t rsp_cons_ = 0;
    bool unpublished_ = false;
    bool gone_ = false;
    std::deque<vr_ring_req> detached_;
    mac_address mac_;
    std::uint32_t mtu_ = 0;
};

// Fills a control message's header and arguments (proto/control.h).
vr_ctl_msg make_ctl_msg(std::uint16_t type, std::uint32_t seq, std::initializer_list<std::uint64_t> args) noexcept;

}  // namespace vmrdma::detail
