#include "xen_link.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "device_core.hpp"

extern "C" {
#include "proto/xen.h"
}

namespace vmrdma::detail {

namespace {
void close_fd(int& fd) noexcept {
    if (fd >= 0) ::close(std::exchange(fd, -1));
}
}  // namespace

xen_link::xen_link(std::string_view path, std::uint32_t ring_size) : path_(path) {
    if (path_.empty()) throw error(errc::invalid_argument, "xen: no device path (expected xen:/dev/vmrdma)");
    fd_ = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) {
        int e = errno;
        std::string why = "xen: cannot open " + path_ + ": " + std::strerror(e);
        if (e == ENOENT || e == ENODEV || e == ENXIO)
            why += " (is frontend_kmod loaded? are we a Xen guest with a vmrdma device attached?)";
        throw error(code_from_errno(-e), why);
    }
    try {
        rsp_efd_ = ::eventfd(0, EFD_CLOEXEC);
        if (rsp_efd_ < 0) throw error(code_from_errno(-errno), "xen: cannot create the response eventfd");
        auto reply = control(VR_CTL_HELLO, {ring_size, static_cast<std::uint64_t>(rsp_efd_)});
        auto size = static_cast<std::uint32_t>(reply.arg[0]);
        if (!vr_ring_size_ok(size)) throw error(errc::protocol_error, "xen: " + path_ + " chose a bad ring size");
        std::uint64_t map_len = reply.arg[3];
        if (map_len < vr_ring_bytes(size) || map_len > (std::uint64_t{1} << 30))
            throw error(errc::protocol_error, "xen: " + path_ + " offers a ring mapping of the wrong size");
        ring_len_ = static_cast<std::size_t>(map_len);
        void* p = mmap(nullptr, ring_len_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
        if (p == MAP_FAILED) throw error(code_from_errno(-errno), "xen: cannot map the shared ring of " + path_);
        ring_mem_ = p;
        attach(p, size, rsp_efd_, reply.arg[1], reply.arg[2]);
    } catch (...) {
        close_all();
        throw;
    }
}

void xen_link::close_all() noexcept {
    if (ring_mem_) munmap(std::exchange(ring_mem_, nullptr), ring_len_);
    close_fd(fd_);  // frontend_kmod releases everything of ours
    close_fd(rsp_efd_);
}

xen_link::~xen_link() { close_all(); }

vr_ctl_msg xen_link::control(std::uint16_t type, std::initializer_list<std::uint64_t> args) {
    vr_ctl_msg msg = make_ctl_msg(type, ++seq_, args);
    int rc;
    do rc = ::ioctl(fd_, VR_IOC_CTL, &msg);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        int e = errno;
        if (e == ENOTTY)
            throw error(errc::protocol_error, "xen: " + path_ + " is not a vmrdma device (VR_IOC_CTL unknown)");
        throw error(code_from_errno(-e), "xen: control request to " + path_ + " failed: " + std::strerror(e));
    }
    if (msg.magic != VR_CTL_MAGIC || msg.version != VR_CTL_VERSION || msg.type != type || msg.seq != seq_)
        throw error(errc::protocol_error, "xen: malformed reply from " + path_);
    if (msg.status != 0) {
        msg.text[sizeof msg.text - 1] = 0;
        throw error(code_from_status(msg.status), std::string("xen: ") + msg.text);
    }
    return msg;
}

std::uint64_t xen_link::register_memory(std::uint16_t ep, std::span<std::byte> memory, std::uint32_t access) {
    auto reply = control(VR_CTL_REG, {ep, reinterpret_cast<std::uintptr_t>(memory.data()), memory.size(), access});
    return reply.arg[0];
}

void xen_link::kick() noexcept { [[maybe_unused]] int rc = ::ioctl(fd_, VR_IOC_KICK); }

}  // namespace vmrdma::detail
