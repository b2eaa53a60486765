// The administration side of vmrdmad's control protocol (VR_CTL_ADMIN_*,
// proto/control.h): what vmrdmactl and the tests use. One blocking
// request/reply at a time on a SOCK_SEQPACKET connection to the daemon's
// socket; no HELLO, so the connection is not a frontend with a ring.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" {
#include "proto/control.h"
}

namespace vmrdmad {

// A refused request: `status` is the daemon's negative errno, what() its reason.
class admin_error : public std::runtime_error {
public:
    admin_error(int status, const std::string& what) : std::runtime_error(what), status(status) {}
    int status;
};

class admin_client {
public:
    explicit admin_client(const std::string& socket_path);  // throws admin_error
    ~admin_client();
    admin_client(const admin_client&) = delete;
    admin_client& operator=(const admin_client&) = delete;

    std::vector<vr_admin_frontend> frontends();
    std::vector<vr_admin_endpoint> endpoints();
    std::vector<vr_admin_conn> connections();
    vr_admin_device device();
    std::vector<vr_admin_uid> uids();
    // enum vr_admin_set; -EPERM unless root or the daemon's uid.
    void set(std::uint32_t frontend, std::uint32_t what, std::uint64_t value);

private:
    vr_ctl_msg call(std::uint16_t type, std::uint64_t a0, std::uint64_t a1 = 0, std::uint64_t a2 = 0);
    template <typename T>
    std::vector<T> list(std::uint32_t what);

    int sock_ = -1;
    std::uint32_t seq_ = 0;
};

}  // namespace vmrdmad
