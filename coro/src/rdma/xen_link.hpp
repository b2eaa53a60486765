// xen_link: the frontend's half of the Xen split driver from user space (the
// xen:DEVICE transport, docs/xen.md): ring_link's data path over the ring
// frontend_kmod maps into this process through its misc device
// (/dev/vmrdma), which forwards requests to the backend in the driver
// domain (backend_kmod, or vmrdmad --xen). Per proto/xen.h: control is ioctl(VR_IOC_CTL) with the reply in
// place, the request doorbell is ioctl(VR_IOC_KICK), and responses are
// announced on an eventfd handed in at HELLO. There is nothing to watch for
// hang-up: when the backend goes away, responses carry -ESHUTDOWN.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "ring_link.hpp"

namespace vmrdma::detail {

class xen_link final : public ring_link {
public:
    // Opens `path` (e.g. /dev/vmrdma) and says hello. Throws vmrdma::error.
    explicit xen_link(std::string_view path, std::uint32_t ring_size = 256);
    ~xen_link() override;

    const char* transport() const noexcept override { return "xen:"; }
    const char* backend() const noexcept override { return "the Xen backend"; }
    const char* weight_admin() const noexcept override { return "the weight node in the backend's xenstore directory"; }

    // Any memory: frontend_kmod pins and grants its pages.
    std::uint64_t register_memory(std::uint16_t ep, std::span<std::byte> memory, std::uint32_t access) override;

protected:
    void kick() noexcept override;
    // VR_IOC_CTL: the reply comes back in place.
    vr_ctl_msg control(std::uint16_t type, std::initializer_list<std::uint64_t> args) override;

private:
    void close_all() noexcept;

    std::string path_;
    int fd_ = -1;
    int rsp_efd_ = -1;
    void* ring_mem_ = nullptr;
    std::size_t ring_len_ = 0;
    std::uint32_t seq_ = 0;
};

}  // namespace vmrdma::detail
