#include "fabric/wake_fd.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "vmrdma/error.hpp"

namespace vmrdma::fabric {

wake_fd::wake_fd(bool always_armed) : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)), exposed_(always_armed) {
    if (fd_ < 0) throw_errno(-errno, "eventfd failed");
}

wake_fd::~wake_fd() { ::close(fd_); }

void wake_fd::sync() noexcept {
    if (level_ && !written_ && armed()) {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
        written_ = true;
    } else if (!level_ && written_) {
        std::uint64_t v;
        [[maybe_unused]] auto n = ::read(fd_, &v, sizeof v);
        written_ = false;
    }
}

void wake_fd::set() noexcept {
    level_ = true;
    sync();
}

void wake_fd::clear() noexcept {
    level_ = false;
    sync();
}

void wake_fd::arm() noexcept {
    ++sleepers_;
    sync();
}

void wake_fd::disarm() noexcept {
    if (sleepers_ > 0) --sleepers_;
}

void wake_fd::expose() noexcept {
    exposed_ = true;
    sync();
}

}  // namespace vmrdma::fabric
