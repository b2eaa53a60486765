// unix_link: the frontend's half of the user-space split driver (the unix:
// transport, docs/split-driver.md): ring_link's data path over a ring memfd
// vmrdmad hands out, with the UNIX socket to vmrdmad as the control path
// (blocking request/reply; its hang-up means the daemon is gone) and an
// eventfd as the request doorbell.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string_view>

#include "ring_link.hpp"

namespace vmrdma::detail {

class unix_link final : public ring_link {
public:
    // Connects to the daemon at `path` and says hello. Throws vmrdma::error.
    explicit unix_link(std::string_view path, std::uint32_t ring_size = 256);
    ~unix_link() override;

    const char* transport() const noexcept override { return "unix:"; }
    const char* backend() const noexcept override { return "vmrdmad"; }
    const char* weight_admin() const noexcept override { return "vmrdmactl set-weight"; }
    int hangup_fd() const noexcept override { return sock_; }

    // Only memory inside a vmrdma::registrable_buffer: its memfd travels to
    // the daemon, which maps it.
    std::uint64_t register_memory(std::uint16_t ep, std::span<std::byte> memory, std::uint32_t access) override;
    // The daemon's NIC counters (ADMIN_LIST DEVICE): every frontend's traffic.
    std::optional<counters> device_counters() override;

protected:
    void kick() noexcept override;
    vr_ctl_msg control(std::uint16_t type, std::initializer_list<std::uint64_t> args) override;

private:
    vr_ctl_msg call(std::uint16_t type, std::initializer_list<std::uint64_t> args, int send_fd = -1,
                    int* recv_fds = nullptr, int recv_count = 0);
    void close_all() noexcept;

    int sock_ = -1;
    int ring_fd_ = -1, req_efd_ = -1, rsp_efd_ = -1;
    void* ring_mem_ = nullptr;
    std::size_t ring_len_ = 0;
    std::uint32_t seq_ = 0;
};

}  // namespace vmrdma::detail
