#include "ring_receiver.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <new>

#include "vmrdma/error.hpp"

namespace vmrdma::detail {

ring_receiver::ring_receiver(event_loop& loop, int fd, std::size_t buffer_size, unsigned count,
                             frame_handler on_frame, void* context)
    : loop_(loop), fd_(fd), buffer_size_(buffer_size), count_(count), on_frame_(on_frame), context_(context),
      group_(loop.allocate_buffer_group()) {
    ring_bytes_ = sizeof(io_uring_buf) * count_;
    void* ring = mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (ring == MAP_FAILED) throw_errno(-errno, "cannot map the receive buffer ring");
    ring_ = static_cast<io_uring_buf_ring*>(ring);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uintptr_t>(ring_);
    reg.ring_entries = count_;
    reg.bgid = static_cast<std::uint16_t>(group_);
    if (int rc = io_uring_register_buf_ring(loop_.native(), &reg, 0); rc < 0) {
        munmap(ring_, ring_bytes_);
        throw_errno(rc, "io_uring buffer rings are not available");
    }
    buffers_ = static_cast<std::byte*>(::operator new(buffer_size_ * count_, std::align_val_t{64}));
    io_uring_buf_ring_init(ring_);
    for (unsigned i = 0; i < count_; ++i)
        io_uring_buf_ring_add(ring_, buffers_ + i * buffer_size_, static_cast<unsigned>(buffer_size_),
                              static_cast<unsigned short>(i), io_uring_buf_ring_mask(count_), static_cast<int>(i));
    io_uring_buf_ring_advance(ring_, static_cast<int>(count_));
    arm();
}

ring_receiver::~ring_receiver() {
    if (slot_ != UINT32_MAX) loop_.abandon(slot_);
    io_uring_unregister_buf_ring(loop_.native(), group_);
    munmap(ring_, ring_bytes_);
    ::operator delete(buffers_, std::align_val_t{64});
}

void ring_receiver::arm() {
    slot_ = loop_.arm_callback(&ring_receiver::on_cqe, this, [this](io_uring_sqe* sqe, op_slot&) {
        io_uring_prep_recv_multishot(sqe, fd_, nullptr, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = static_cast<std::uint16_t>(group_);
    });
    ++rearms_;
}

void ring_receiver::give_back(std::uint16_t id) noexcept {
    io_uring_buf_ring_add(ring_, buffers_ + std::size_t{id} * buffer_size_, static_cast<unsigned>(buffer_size_), id,
                          io_uring_buf_ring_mask(count_), 0);
    io_uring_buf_ring_advance(ring_, 1);
}

void ring_receiver::on_cqe(event_loop& loop, op_slot& slot) {
    auto* self = static_cast<ring_receiver*>(slot.context);
    if (slot.cqe_flags & IORING_CQE_F_BUFFER) {
        auto id = static_cast<std::uint16_t>(slot.cqe_flags >> IORING_CQE_BUFFER_SHIFT);
        if (slot.result > 0) {
            ++self->frames_;
            self->on_frame_(self->context_, self->buffers_ + std::size_t{id} * self->buffer_size_,
                            static_cast<std::uint32_t>(slot.result));
        }
        self->give_back(id);  // the frame was consumed (placed or dropped) above
    }
    if (!slot.busy) {
        // The multishot ended (e.g. -ENOBUFS when every buffer was in use):
        // the buffers are back in the ring now, so start again.
        loop.release_slot(self->slot_);
        self->slot_ = UINT32_MAX;
        self->arm();
    }
}

}  // namespace vmrdma::detail
