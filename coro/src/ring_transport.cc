// device_core for the split-driver transports, unix: (vmrdmad) and xen:
// (frontend_kmod): the engine lives in the backend; this process posts
// requests into the shared ring, publishes them once per loop turn (one
// doorbell per batch, and only when the backend asked for one), and turns
// responses into the same completions the eth: transport produces.
#include <poll.h>
#include <unistd.h>

#include "device_core.hpp"
#include "ring_link.hpp"

extern "C" {
#include "proto/service.h"
}

namespace vmrdma::detail {

device_core::device_core(event_loop& loop, std::unique_ptr<ring_link> link)
    : loop_(loop), link_(std::move(link)) {
    hook_id_ = loop_.add_turn_hook([this] { return link_flush(); });
    arm_doorbell();
    if (link_->hangup_fd() >= 0) arm_hangup();
}

// unix: vmrdmad's end of the control socket closes when it stops, restarts
// or crashes: the responses it wrote are taken, and every operation still
// with it fails with -ESHUTDOWN (errc::shut_down), as do later ones. A new
// device::open() reconnects. (xen: has no such descriptor: frontend_kmod
// answers with -ESHUTDOWN itself when the backend goes.)
void device_core::arm_hangup() {
    hangup_slot_ = loop_.arm_callback(&device_core::on_hangup, this, [this](io_uring_sqe* sqe, op_slot&) {
        io_uring_prep_poll_add(sqe, link_->hangup_fd(), POLLRDHUP);
    });
}

void device_core::on_hangup(event_loop& loop, op_slot& slot) {
    auto* self = static_cast<device_core*>(slot.context);
    int result = slot.result;
    loop.release_slot(std::exchange(self->hangup_slot_, UINT32_MAX));
    if (result >= 0 && !(result & (POLLRDHUP | POLLHUP | POLLERR))) {
        self->arm_hangup();  // not an end: look again
        return;
    }
    self->drain_link();
    self->link_->mark_gone();
    self->fail_outstanding(-ESHUTDOWN);
}

void device_core::fail_outstanding(int status) noexcept {
    std::vector<bool> is_free(ops_.size(), false);
    for (auto i : free_ops_) is_free[i] = true;
    for (std::uint32_t i = 0; i < ops_.size(); ++i) {
        if (is_free[i] || ops_[i].done) continue;
        vr_completion wc{};
        wc.cookie = cookie_of(i, ops_[i].generation);
        wc.status = status;
        completed(wc);
    }
    wake_event_waiters();  // operations waiting for room in the ring try again, and fail
}

std::string device_core::backend_name() const { return link_ ? link_->backend() : "the driver domain"; }

mac_address device_core::mac() const noexcept { return link_ ? link_->mac() : port_->mac(); }
std::uint32_t device_core::mtu() const noexcept { return link_ ? link_->mtu() : port_->mtu(); }

void device_core::link_open_endpoint(std::uint16_t id, const endpoint_options& options) {
    link_->open_endpoint(id, options.weight, options.listen);
}

void device_core::link_close_endpoint(std::uint16_t id) noexcept { link_->close_endpoint(id); }

bool device_core::link_flush() {
    link_->publish();
    return false;
}

void device_core::arm_doorbell() {
    doorbell_slot_ = loop_.arm_callback(&device_core::on_doorbell, this, [this](io_uring_sqe* sqe, op_slot& s) {
        io_uring_prep_read(sqe, link_->response_doorbell(), &s.scratch, sizeof s.scratch, 0);
    });
}

void device_core::on_doorbell(event_loop& loop, op_slot& slot) {
    auto* self = static_cast<device_core*>(slot.context);
    int result = slot.result;
    loop.release_slot(std::exchange(self->doorbell_slot_, UINT32_MAX));
    self->drain_link();
    // An eventfd read fails only if the fd is gone: then so is the backend.
    if (result >= 0) self->arm_doorbell();
}

void device_core::drain_link() {
    auto* self = this;
    self->link_->drain([self](const vr_ring_rsp& rsp) {
        if (rsp.cookie == ~std::uint64_t{0}) return;  // a detached request (DISCONNECT)
        vr_completion wc{};
        wc.cookie = rsp.cookie;
        wc.status = rsp.status;
        wc.nak_reason = rsp.nak_reason;
        wc.conn = rsp.conn;
        wc.ep = rsp.ep;
        wc.bytes = rsp.bytes;
        wc.tag = rsp.tag;
        wc.value = rsp.value;
        // CONNECT and ACCEPT answer with a new connection; nothing else
        // that carries a cookie reaches here.
        wc.op = vr_svc_wc_of_ring_op(rsp.opcode);
        if (wc.op == 0) wc.op = VR_WC_CONNECT;
        self->completed(wc);
    });
    self->want_flush();
}

void device_core::destroy_link() noexcept {
    loop_.remove_turn_hook(hook_id_);
    if (doorbell_slot_ != UINT32_MAX) loop_.abandon(doorbell_slot_);
    if (hangup_slot_ != UINT32_MAX) loop_.abandon(hangup_slot_);
    // Like vr_engine_destroy: every operation still with the backend fails.
    fail_outstanding(-ECANCELED);
}

}  // namespace vmrdma::detail
