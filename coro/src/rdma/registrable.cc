#include "vmrdma/registrable.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <mutex>
#include <utility>

#include "vmrdma/error.hpp"

namespace vmrdma {

namespace {
struct live_buffer {
    std::uintptr_t end;
    int fd;
};
std::mutex registry_mutex;
std::map<std::uintptr_t, live_buffer>& registry() {
    static std::map<std::uintptr_t, live_buffer> buffers;  // by start address
    return buffers;
}
}  // namespace

registrable_buffer::registrable_buffer(std::size_t size) : size_(size) {
    auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    mapped_ = size == 0 ? page : (size + page - 1) / page * page;
    fd_ = memfd_create("vmrdma-registrable", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd_ < 0) throw error(code_from_errno(-errno), "memfd_create failed");
    auto fail = [this](const char* what) {
        int e = errno;
        reset();
        throw error(code_from_errno(-e), what);
    };
    if (ftruncate(fd_, static_cast<off_t>(mapped_)) < 0) fail("cannot size the memfd");
    if (fcntl(fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) < 0) fail("cannot seal the memfd");
    void* p = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) fail("cannot map the memfd");
    data_ = static_cast<std::byte*>(p);
    std::lock_guard lock(registry_mutex);
    auto start = reinterpret_cast<std::uintptr_t>(data_);
    registry()[start] = {start + mapped_, fd_};
}

registrable_buffer::registrable_buffer(registrable_buffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      mapped_(std::exchange(o.mapped_, 0)),
      fd_(std::exchange(o.fd_, -1)) {}

registrable_buffer& registrable_buffer::operator=(registrable_buffer&& o) noexcept {
    if (this != &o) {
        reset();
        data_ = std::exchange(o.data_, nullptr);
        size_ = std::exchange(o.size_, 0);
        mapped_ = std::exchange(o.mapped_, 0);
        fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
}

registrable_buffer::~registrable_buffer() { reset(); }

void registrable_buffer::reset() noexcept {
    if (data_) {
        {
            std::lock_guard lock(registry_mutex);
            registry().erase(reinterpret_cast<std::uintptr_t>(data_));
        }
        munmap(data_, mapped_);
        data_ = nullptr;
    }
    if (fd_ >= 0) close(std::exchange(fd_, -1));
    size_ = mapped_ = 0;
}

namespace detail {
std::optional<registrable_range> find_registrable(std::span<const std::byte> memory) {
    auto start = reinterpret_cast<std::uintptr_t>(memory.data());
    std::lock_guard lock(registry_mutex);
    auto& buffers = registry();
    auto it = buffers.upper_bound(start);
    if (it == buffers.begin()) return std::nullopt;
    --it;
    if (start < it->first || start + memory.size() > it->second.end || start + memory.size() < start)
        return std::nullopt;
    return registrable_range{it->second.fd, start - it->first};
}
}  // namespace detail

}  // namespace vmrdma
