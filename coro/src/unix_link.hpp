// unix_link: the frontend's half of the user-space split driver (the unix:
// transport, docs/split-driver.md). It holds the UNIX socket to vmrdmad (the
// control path: blocking request/reply), the shared request/response rings
// (proto/ring.h) and the two doorbell eventfds. It does no I/O on the event
// loop itself: device_core watches the response doorbell through io_uring,
// calls publish() once per loop turn and drain() when the doorbell fires.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>

#include "vmrdma/rdma.hpp"

extern "C" {
#include "proto/ring.h"
}

namespace vmrdma::detail {

class unix_link {
public:
    // Connects to the daemon at `path` and says hello. Throws vmrdma::error.
    explicit unix_link(std::string_view path, std::uint32_t ring_size = 256);
    ~unix_link();
    unix_link(const unix_link&) = delete;
    unix_link& operator=(const unix_link&) = delete;

    const mac_address& mac() const noexcept { return mac_; }
    std::uint32_t mtu() const noexcept { return mtu_; }
    int response_doorbell() const noexcept { return rsp_efd_; }
    int control_socket() const noexcept { return sock_; }
    // vmrdmad closed the control socket (stopped, restarted or crashed):
    // every later post fails with -ESHUTDOWN.
    void mark_gone() noexcept;
    bool gone() const noexcept { return gone_; }

    // Control path (blocking). Throw vmrdma::error with the daemon's reason.
    void open_endpoint(std::uint16_t id, std::uint32_t weight, bool listen);
    void close_endpoint(std::uint16_t id) noexcept;
    std::uint32_t register_memory(std::uint16_t ep, int memfd, std::uint64_t offset,
                                  std::uint64_t length, std::uint32_t access);
    void deregister(std::uint32_t key) noexcept;

    // Data path. post() returns -EAGAIN when size-1 requests are already
    // outstanding, -ESHUTDOWN when vmrdmad is draining or gone;
    // post_detached() queues locally instead (for requests whose response
    // nobody awaits, such as DISCONNECT).
    int post(const vr_ring_req& req) noexcept;
    void post_detached(const vr_ring_req& req);
    // Makes posted requests visible and rings the doorbell if the daemon
    // asked for it.
    void publish() noexcept;
    // Hands every available response to `fn`; returns how many.
    std::size_t drain(const std::function<void(const vr_ring_rsp&)>& fn);
    std::uint32_t outstanding() const noexcept { return req_prod_pvt_ - rsp_cons_; }

private:
    vr_ctl_msg call(std::uint16_t type, std::initializer_list<std::uint64_t> args, int send_fd = -1,
                    int* recv_fds = nullptr, int recv_count = 0);

    int sock_ = -1;
    int ring_fd_ = -1, req_efd_ = -1, rsp_efd_ = -1;
    void* ring_mem_ = nullptr;
    std::size_t ring_len_ = 0;
    vr_ring_shared* shared_ = nullptr;
    vr_ring_req* reqs_ = nullptr;
    const vr_ring_rsp* rsps_ = nullptr;
    std::uint32_t size_ = 0;
    std::uint32_t req_prod_pvt_ = 0;
    std::uint32_t rsp_cons_ = 0;
    std::uint32_t seq_ = 0;
    bool unpublished_ = false;
    bool gone_ = false;
    std::deque<vr_ring_req> detached_;
    mac_address mac_;
    std::uint32_t mtu_ = 0;
};

}  // namespace vmrdma::detail
