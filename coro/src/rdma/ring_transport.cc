#include "ring_transport.hpp"

#include <poll.h>

#include <cerrno>

extern "C" {
#include "proto/service.h"
}

namespace vmrdma::detail {

ring_transport::ring_transport(event_loop& loop, completion_sink& sink, std::unique_ptr<ring_link> link,
                               bool responses_in_turns)
    : loop_(loop), sink_(sink), link_(std::move(link)), responses_in_turns_(responses_in_turns) {
    hook_id_ = loop_.add_turn_hook([this, responses_in_turns] {
        link_->publish();
        // device_options::receive_in_turns: responses already in the ring
        // are taken now, before the doorbell's completion reports them.
        if (responses_in_turns) drain();
        return false;
    });
    // With responses taken in the turns the doorbell's read is armed only as
    // the loop is about to sleep: a completion per response is work for the
    // thread that submitted the read, which for the libfabric provider is
    // another thread, woken per response (as eth:'s socket poll, docs/mpi.md).
    if (responses_in_turns)
        idle_hook_id_ = loop_.add_idle_hook([this] {
            if (doorbell_slot_ == UINT32_MAX && !doorbell_gone_) arm_doorbell();
        });
    else
        arm_doorbell();
    if (link_->hangup_fd() >= 0) arm_hangup();
    // The engine is in another process (vmrdmad, the backend), which a
    // busy-polling loop must not keep from a core it shares.
    loop_.add_core_sharer();
}

ring_transport::~ring_transport() {
    loop_.remove_core_sharer();
    loop_.remove_turn_hook(hook_id_);
    if (idle_hook_id_) loop_.remove_turn_hook(idle_hook_id_);
    if (doorbell_slot_ != UINT32_MAX) loop_.abandon(doorbell_slot_);
    if (hangup_slot_ != UINT32_MAX) loop_.abandon(hangup_slot_);
    // Like the engine's destruction: every operation still with the backend fails.
    sink_.fail_outstanding(-ECANCELED);
}

void ring_transport::open_endpoint(std::uint16_t id, const endpoint_options& options) {
    link_->open_endpoint(id, options.weight, options.listen);
}

// The backend fails the endpoint's operations and disconnects its connections.
void ring_transport::close_endpoint(std::uint16_t id) noexcept { link_->close_endpoint(id); }

void ring_transport::set_weight(std::uint16_t, std::uint32_t) {
    throw error(errc::invalid_argument, std::string("on a ") + link_->transport() +
                                            " device the weight is the driver domain's to set (" +
                                            link_->weight_admin() + ")");
}

std::uint64_t ring_transport::register_memory(std::uint16_t ep, std::span<std::byte> memory,
                                              std::uint32_t access) {
    return link_->register_memory(ep, memory, access);
}

void ring_transport::deregister(std::uint64_t key) noexcept { link_->deregister(key); }

// The backend's device counters where the transport can ask for them
// (unix:), else zeros (xen:).
counters ring_transport::device_stats() const {
    auto c = link_->device_counters();
    return c ? *c : counters{};
}

// unix: vmrdmad's end of the control socket closes when it stops, restarts
// or crashes: the responses it wrote are taken, and every operation still
// with it fails with -ESHUTDOWN (errc::shut_down), as do later ones. A new
// device::open() reconnects. (xen: has no such descriptor: frontend_kmod
// answers with -ESHUTDOWN itself when the backend goes.)
void ring_transport::arm_hangup() {
    hangup_slot_ = loop_.arm_callback(&ring_transport::on_hangup, this, [this](io_uring_sqe* sqe, op_slot&) {
        io_uring_prep_poll_add(sqe, link_->hangup_fd(), POLLRDHUP);
    });
}

void ring_transport::on_hangup(event_loop& loop, op_slot& slot) {
    auto* self = static_cast<ring_transport*>(slot.context);
    int result = slot.result;
    loop.release_slot(std::exchange(self->hangup_slot_, UINT32_MAX));
    if (result >= 0 && !(result & (POLLRDHUP | POLLHUP | POLLERR))) {
        self->arm_hangup();  // not an end: look again
        return;
    }
    self->drain();
    self->link_->mark_gone();
    self->sink_.fail_outstanding(-ESHUTDOWN);
}

void ring_transport::arm_doorbell() {
    doorbell_slot_ = loop_.arm_callback(&ring_transport::on_doorbell, this, [this](io_uring_sqe* sqe, op_slot& s) {
        io_uring_prep_read(sqe, link_->response_doorbell(), &s.scratch, sizeof s.scratch, 0);
    });
}

void ring_transport::on_doorbell(event_loop& loop, op_slot& slot) {
    auto* self = static_cast<ring_transport*>(slot.context);
    int result = slot.result;
    loop.release_slot(std::exchange(self->doorbell_slot_, UINT32_MAX));
    self->drain();
    // An eventfd read fails only if the fd is gone: then so is the backend.
    if (result < 0)
        self->doorbell_gone_ = true;
    else if (!self->responses_in_turns_)
        self->arm_doorbell();  // else the idle hook arms it
}

void ring_transport::drain() {
    link_->drain([this](const vr_ring_rsp& rsp) {
        if (rsp.cookie == ~std::uint64_t{0}) return;  // a detached request (DISCONNECT)
        vr_completion wc{};
        vr_svc_wc_of_rsp(&rsp, &wc);
        sink_.completed(wc);
    });
}

}  // namespace vmrdma::detail
