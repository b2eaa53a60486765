// XXH64 (Yann Collet's xxHash, 64-bit variant), implemented from its public
// specification: a fast non-cryptographic hash. The data mover uses it for
// every chunk and, over the list of chunk hashes, for whole files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace datamover {

namespace detail {
constexpr std::uint64_t p1 = 11400714785074694791ull, p2 = 14029467366897019727ull,
                        p3 = 1609587929392839161ull, p4 = 9650029242287828579ull,
                        p5 = 2870177450012600261ull;
inline std::uint64_t rotl(std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline std::uint64_t read64(const unsigned char* p) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return v;  // little-endian hosts only (x86-64, aarch64)
}
inline std::uint32_t read32(const unsigned char* p) {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
inline std::uint64_t round(std::uint64_t acc, std::uint64_t input) {
    acc += input * p2;
    acc = rotl(acc, 31);
    return acc * p1;
}
inline std::uint64_t merge(std::uint64_t acc, std::uint64_t v) {
    acc ^= round(0, v);
    return acc * p1 + p4;
}
}  // namespace detail

inline std::uint64_t xxh64(const void* data, std::size_t len, std::uint64_t seed = 0) {
    using namespace detail;
    const auto* p = static_cast<const unsigned char*>(data);
    const unsigned char* end = p + len;
    std::uint64_t h;
    if (len >= 32) {
        std::uint64_t v1 = seed + p1 + p2, v2 = seed + p2, v3 = seed, v4 = seed - p1;
        const unsigned char* limit = end - 32;
        do {
            v1 = round(v1, read64(p));
            v2 = round(v2, read64(p + 8));
            v3 = round(v3, read64(p + 16));
            v4 = round(v4, read64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
        h = merge(h, v1);
        h = merge(h, v2);
        h = merge(h, v3);
        h = merge(h, v4);
    } else {
        h = seed + p5;
    }
    h += static_cast<std::uint64_t>(len);
    while (p + 8 <= end) {
        h ^= round(0, read64(p));
        h = rotl(h, 27) * p1 + p4;
        p += 8;
    }
    if (p + 4 <= end) {
        h ^= static_cast<std::uint64_t>(read32(p)) * p1;
        h = rotl(h, 23) * p2 + p3;
        p += 4;
    }
    while (p < end) {
        h ^= static_cast<std::uint64_t>(*p) * p5;
        h = rotl(h, 11) * p1;
        ++p;
    }
    h ^= h >> 33;
    h *= p2;
    h ^= h >> 29;
    h *= p3;
    h ^= h >> 32;
    return h;
}

// The hash of chunk `index` of a file: XXH64 of its bytes, seeded with the index.
inline std::uint64_t chunk_hash(std::span<const std::byte> bytes, std::uint64_t index) {
    return xxh64(bytes.data(), bytes.size(), index);
}

// The whole-file hash: XXH64 over the little-endian chunk hashes in order,
// seeded with the file size (so it also pins the length and chunking).
inline std::uint64_t file_hash(std::span<const std::uint64_t> chunk_hashes, std::uint64_t size) {
    return xxh64(chunk_hashes.data(), chunk_hashes.size() * 8, size);
}

}  // namespace datamover
