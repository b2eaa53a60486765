// The bytes vmrdma-check moves: round r's pattern differs from byte to byte
// and from round to round, so stale or misplaced data cannot pass a compare.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vmrdma::check {

inline void fill(std::byte* p, std::size_t n, std::uint64_t round) {
    std::uint64_t x = 0x9e3779b97f4a7c15ull * (round + 1);
    for (std::size_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = static_cast<std::byte>(x);
    }
}

}  // namespace vmrdma::check
