// bounce_pool: registered memory for sends and receives from ordinary
// memory (connection::send(span), endpoint::recv(span)). One per endpoint
// that uses them: `slots` slots of `slot_size` bytes in a registrable_buffer
// (page-backed, so it registers on every transport: in process, through
// vmrdmad, or pinned and granted by the Xen frontend), registered once for
// local writes. An operation holds a slot from copy-in to completion; when
// all are taken the next one waits for a release, oldest first.
#pragma once

#include <coroutine>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "transport.hpp"
#include "vmrdma/event_loop.hpp"
#include "vmrdma/registrable.hpp"

namespace vmrdma::detail {

class bounce_pool {
public:
    static constexpr std::size_t slot_size = 4096;  // the largest message a slot takes
    static constexpr std::size_t slots = 32;

    bounce_pool(detail::transport& t, event_loop& loop, std::uint16_t ep);
    ~bounce_pool();
    bounce_pool(const bounce_pool&) = delete;
    bounce_pool& operator=(const bounce_pool&) = delete;

    std::uint64_t key() const noexcept { return key_; }
    std::uint64_t offset(std::uint32_t slot) const noexcept { return std::uint64_t{slot} * slot_size; }
    std::span<std::byte> memory(std::uint32_t slot) const noexcept {
        return memory_.span().subspan(offset(slot), slot_size);
    }

    // The device is going away before the last operation let go of the
    // pool: its transport (and the registration) go with the device.
    void detach() noexcept { transport_ = nullptr; }

    // A free slot, waiting for one when all are taken.
    task<std::uint32_t> acquire();
    void release(std::uint32_t slot) noexcept;

private:
    detail::transport* transport_;
    event_loop& loop_;
    registrable_buffer memory_;
    std::uint64_t key_ = 0;
    std::vector<std::uint32_t> free_;
    std::deque<std::coroutine_handle<>> waiters_;
};

// The slot an operation holds, given back however the operation ends.
class bounce_slot {
public:
    bounce_slot(std::shared_ptr<bounce_pool> pool, std::uint32_t slot) : pool_(std::move(pool)), slot_(slot) {}
    ~bounce_slot() {
        if (pool_) pool_->release(slot_);
    }
    bounce_slot(const bounce_slot&) = delete;
    bounce_slot& operator=(const bounce_slot&) = delete;
    std::uint32_t index() const noexcept { return slot_; }

private:
    std::shared_ptr<bounce_pool> pool_;
    std::uint32_t slot_;
};

}  // namespace vmrdma::detail
