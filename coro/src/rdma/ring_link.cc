#include "ring_link.hpp"

#include <bit>
#include <cerrno>
#include <string>

#include "vmrdma/error.hpp"

static_assert(std::endian::native == std::endian::little, "proto/ring.h is little-endian");

namespace vmrdma::detail {

vr_ctl_msg make_ctl_msg(std::uint16_t type, std::uint32_t seq, std::initializer_list<std::uint64_t> args) noexcept {
    vr_ctl_msg msg{};
    msg.magic = VR_CTL_MAGIC;
    msg.version = VR_CTL_VERSION;
    msg.type = type;
    msg.seq = seq;
    int i = 0;
    for (auto a : args)
        if (i < 6) msg.arg[i++] = a;
    return msg;
}

void ring_link::attach(void* shared, std::uint32_t size, int rsp_efd, std::uint64_t mac48, std::uint64_t mtu) {
    if (!vr_ring_size_ok(size))
        throw error(errc::protocol_error, std::string(backend()) + " chose a bad ring size");
    size_ = size;
    rsp_efd_ = rsp_efd;
    for (int i = 0; i < 6; ++i) mac_.bytes[i] = static_cast<std::uint8_t>(mac48 >> (8 * i));
    mtu_ = static_cast<std::uint32_t>(mtu);
    shared_ = static_cast<vr_ring_shared*>(shared);
    reqs_ = reinterpret_cast<vr_ring_req*>(static_cast<char*>(shared) + vr_ring_req_off());
    rsps_ = reinterpret_cast<const vr_ring_rsp*>(static_cast<char*>(shared) + vr_ring_rsp_off(size_));
    req_prod_pvt_ = VR_RING_READ(shared_->req_prod);
    rsp_cons_ = req_prod_pvt_;
}

void ring_link::mark_gone() noexcept {
    gone_ = true;
    detached_.clear();
}

int ring_link::post(const vr_ring_req& req) noexcept {
    if (gone_ || VR_RING_READ(shared_->state) == VR_RING_STATE_DRAINING) return -ESHUTDOWN;
    if (!detached_.empty() || req_prod_pvt_ - rsp_cons_ >= size_ - 1) return -EAGAIN;
    reqs_[req_prod_pvt_ & (size_ - 1)] = req;
    ++req_prod_pvt_;
    unpublished_ = true;
    return 0;
}

void ring_link::post_detached(const vr_ring_req& req) {
    if (gone_) return;
    detached_.push_back(req);
    publish();
}

void ring_link::publish() noexcept {
    while (!detached_.empty() && req_prod_pvt_ - rsp_cons_ < size_ - 1) {
        reqs_[req_prod_pvt_ & (size_ - 1)] = detached_.front();
        detached_.pop_front();
        ++req_prod_pvt_;
        unpublished_ = true;
    }
    if (!unpublished_ || gone_) return;
    unpublished_ = false;
    if (vr_ring_push(&shared_->req_prod, &shared_->req_event, req_prod_pvt_)) kick();
}

std::size_t ring_link::drain(const std::function<void(const vr_ring_rsp&)>& fn) {
    std::size_t count = 0;
    for (;;) {
        std::uint32_t prod = VR_RING_READ(shared_->rsp_prod);
        vr_ring_rmb();
        // Never more than we asked for, whatever the shared index says.
        if (prod - rsp_cons_ > req_prod_pvt_ - rsp_cons_) prod = req_prod_pvt_;
        while (rsp_cons_ != prod) {
            vr_ring_rsp rsp = rsps_[rsp_cons_ & (size_ - 1)];
            ++rsp_cons_;
            ++count;
            fn(rsp);
        }
        std::uint32_t again = vr_ring_final_check(&shared_->rsp_prod, &shared_->rsp_event, rsp_cons_);
        if (again == rsp_cons_ || again - rsp_cons_ > req_prod_pvt_ - rsp_cons_) break;
    }
    return count;
}

void ring_link::open_endpoint(std::uint16_t id, std::uint32_t weight, bool listen) {
    control(VR_CTL_OPEN_EP, {id, weight, listen ? 1u : 0u});
}

// Closing and deregistering cannot fail from the caller's point of view: a
// backend that refuses or is gone has nothing of ours left to keep.
void ring_link::close_endpoint(std::uint16_t id) noexcept {
    try {
        control(VR_CTL_CLOSE_EP, {id});
    } catch (const error&) {
    }
}

void ring_link::deregister(std::uint64_t key) noexcept {
    try {
        control(VR_CTL_DEREG, {key});
    } catch (const error&) {
    }
}

}  // namespace vmrdma::detail
