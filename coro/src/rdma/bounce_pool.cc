#include "bounce_pool.hpp"

extern "C" {
#include "proto/region.h"
}

namespace vmrdma::detail {

bounce_pool::bounce_pool(detail::transport& t, event_loop& loop, std::uint16_t ep)
    : transport_(&t), loop_(loop), memory_(slot_size * slots) {
    key_ = transport_->register_memory(ep, memory_.span(), VR_ACCESS_LOCAL_WRITE);
    for (std::uint32_t i = slots; i-- > 0;) free_.push_back(i);
}

bounce_pool::~bounce_pool() {
    if (transport_) transport_->deregister(key_);
}

task<std::uint32_t> bounce_pool::acquire() {
    while (free_.empty()) {
        struct wait {
            bounce_pool& pool;
            bool await_ready() const noexcept { return !pool.free_.empty(); }
            void await_suspend(std::coroutine_handle<> h) { pool.waiters_.push_back(h); }
            void await_resume() const noexcept {}
        };
        co_await wait{*this};
    }
    auto slot = free_.back();
    free_.pop_back();
    co_return slot;
}

void bounce_pool::release(std::uint32_t slot) noexcept {
    free_.push_back(slot);
    if (!waiters_.empty()) {
        loop_.make_ready(waiters_.front());
        waiters_.pop_front();
    }
}

}  // namespace vmrdma::detail
