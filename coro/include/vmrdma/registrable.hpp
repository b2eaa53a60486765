// registrable_buffer: memory a driver domain can map. On a `unix:` device
// (the user-space split driver, docs/split-driver.md) registration is
// zero-copy: the daemon maps the frontend's pages, so only memory backed by a
// memfd can be registered. A registrable_buffer is one sealed memfd
// (F_SEAL_SHRINK: the daemon's mapping can never lose its pages) mapped into
// this process; register_memory() on any sub-span of it sends the memfd, the
// offset and the length. On `eth:` and `xen:` devices it is ordinary memory
// (any memory can be registered there).
//
//   vmrdma::registrable_buffer buf(1 << 20);
//   auto mr = ep.register_memory(buf.span(), vmrdma::access::remote_write);
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace vmrdma {

class registrable_buffer {
public:
    registrable_buffer() = default;
    // `size` bytes (rounded up to whole pages), zero-filled. Throws
    // vmrdma::error if the memfd cannot be created, sized, sealed or mapped.
    explicit registrable_buffer(std::size_t size);
    registrable_buffer(registrable_buffer&& other) noexcept;
    registrable_buffer& operator=(registrable_buffer&& other) noexcept;
    registrable_buffer(const registrable_buffer&) = delete;
    registrable_buffer& operator=(const registrable_buffer&) = delete;
    ~registrable_buffer();

    std::span<std::byte> span() const noexcept { return {data_, size_}; }
    std::byte* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    int fd() const noexcept { return fd_; }

private:
    void reset() noexcept;
    std::byte* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t mapped_ = 0;
    int fd_ = -1;
};

namespace detail {
struct registrable_range {
    int fd;
    std::uint64_t offset;  // of the span's first byte in the memfd
};
// The memfd behind `memory` if it lies inside one live registrable_buffer.
std::optional<registrable_range> find_registrable(std::span<const std::byte> memory);
}  // namespace detail

}  // namespace vmrdma
