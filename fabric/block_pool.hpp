// A first-fit allocator of runs of fixed-size blocks inside one registered
// buffer: the staging memory a sender offers pieces from, and the landing
// memory a receiver reads them into. Offsets are bytes from the buffer's
// start. Not thread-safe (the device's lock serialises its users).
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

namespace vmrdma::fabric {

class block_pool {
public:
    block_pool(std::size_t blocks, std::size_t block_size) : used_(blocks, false), block_(block_size) {}

    std::size_t block_size() const noexcept { return block_; }
    std::size_t bytes() const noexcept { return used_.size() * block_; }

    // A run that holds `want` bytes (first fit). If `shrink`, and no run is
    // long enough, the longest free run instead (the caller takes less).
    // Returns (offset, bytes granted, at most want), or nullopt.
    std::optional<std::pair<std::size_t, std::size_t>> take(std::size_t want, bool shrink) {
        const std::size_t need = (want + block_ - 1) / block_;
        std::size_t best = 0, best_len = 0;
        for (std::size_t i = 0; i < used_.size();) {
            if (used_[i]) {
                ++i;
                continue;
            }
            std::size_t j = i;
            while (j < used_.size() && !used_[j] && j - i < need) ++j;
            if (j - i >= need) return grant(i, need, want);
            if (j - i > best_len) {
                best = i;
                best_len = j - i;
            }
            while (j < used_.size() && !used_[j]) ++j;
            i = j;
        }
        if (!shrink || best_len == 0) return std::nullopt;
        return grant(best, best_len, best_len * block_);
    }

    void give(std::size_t offset, std::size_t length) {
        const std::size_t first = offset / block_, n = (length + block_ - 1) / block_;
        std::fill(used_.begin() + static_cast<std::ptrdiff_t>(first),
                  used_.begin() + static_cast<std::ptrdiff_t>(first + n), false);
    }

    bool any_free() const { return std::find(used_.begin(), used_.end(), false) != used_.end(); }

private:
    std::pair<std::size_t, std::size_t> grant(std::size_t first, std::size_t n, std::size_t bytes) {
        std::fill(used_.begin() + static_cast<std::ptrdiff_t>(first),
                  used_.begin() + static_cast<std::ptrdiff_t>(first + n), true);
        return {first * block_, std::min(bytes, n * block_)};
    }

    std::vector<bool> used_;
    std::size_t block_;
};

}  // namespace vmrdma::fabric
