// ring_receiver: receives datagrams from one socket with a multishot
// IORING_OP_RECV that picks buffers from a provided-buffer ring: the kernel
// copies each frame into a free buffer and posts a CQE, with no system call
// per frame or per batch, and each frame is visible as soon as it arrives.
// docs/eth-transport.md has the measurements that chose it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vmrdma/event_loop.hpp"

namespace vmrdma::detail {

class ring_receiver {
public:
    using frame_handler = void (*)(void* context, const std::byte* frame, std::uint32_t length);

    // Registers `count` (a power of two) buffers of `buffer_size` bytes with
    // the loop's ring and starts receiving. Throws vmrdma::error when the
    // kernel lacks buffer rings (supported() says so beforehand).
    ring_receiver(event_loop& loop, int fd, std::size_t buffer_size, unsigned count, frame_handler on_frame,
                  void* context);
    ~ring_receiver();
    ring_receiver(const ring_receiver&) = delete;
    ring_receiver& operator=(const ring_receiver&) = delete;

    std::uint64_t frames() const noexcept { return frames_; }
    std::uint64_t rearms() const noexcept { return rearms_; }

private:
    void arm();
    void give_back(std::uint16_t id) noexcept;
    static void on_cqe(event_loop& loop, op_slot& slot);

    event_loop& loop_;
    int fd_;
    std::size_t buffer_size_;
    unsigned count_;
    frame_handler on_frame_;
    void* context_;
    int group_;
    io_uring_buf_ring* ring_ = nullptr;
    std::size_t ring_bytes_ = 0;
    std::byte* buffers_ = nullptr;
    std::uint32_t slot_ = UINT32_MAX;
    std::uint64_t frames_ = 0, rearms_ = 0;
};

}  // namespace vmrdma::detail
