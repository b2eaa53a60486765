// registrable_arena: alignment, reuse, sharing of memfds, large allocations,
// find_registrable over allocations, and that the destructor closes every fd.
// No daemon here: tests/split/split_ops_test.cc registers arena memory on a
// real unix: device.
#include "vmrdma/registrable_arena.hpp"

#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory_resource>
#include <set>
#include <vector>

#include "tests/support/fd_count.hpp"
#include "vmrdma/error.hpp"

using vmrdma::registrable_arena;
using vmrdma::detail::find_registrable;

namespace {
constexpr std::size_t MiB = std::size_t{1} << 20;

std::span<const std::byte> bytes(const void* p, std::size_t n) { return {static_cast<const std::byte*>(p), n}; }

bool aligned(const void* p, std::size_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }
}  // namespace

TEST_CASE("every alignment is honoured, in shared and in own chunks") {
    registrable_arena arena;
    std::vector<std::tuple<void*, std::size_t, std::size_t>> live;
    for (std::size_t align = 1; align <= 8 * MiB; align *= 2) {
        for (std::size_t size : {std::size_t{1}, std::size_t{24}, std::size_t{100}, std::size_t{4097}}) {
            void* p = arena.allocate(size, align);
            CHECK_MESSAGE(aligned(p, align), "size " << size << " align " << align);
            CHECK(aligned(p, 16));
            std::memset(p, 0xab, size);  // ASan: the whole block is ours
            live.emplace_back(p, size, align);
        }
    }
    // Up to 2 MiB alignment the blocks share chunks; at 4 and 8 MiB the
    // padding alone could exceed a 4 MiB chunk, so each gets its own.
    CHECK(arena.chunk_count() < live.size());
    for (auto [p, size, align] : live) arena.deallocate(p, size, align);
    CHECK(arena.bytes_in_use() == 0);
}

TEST_CASE("libstdc++'s pool misaligns allocate(24, 16); the arena does not") {
    registrable_arena arena;
    for (int i = 0; i < 64; ++i) CHECK(aligned(arena.allocate(24, 16), 16));
}

TEST_CASE("freed space is reused, and adjacent free ranges coalesce") {
    registrable_arena arena;
    void* a = arena.allocate(1000);
    void* b = arena.allocate(1000);
    void* c = arena.allocate(1000);
    arena.deallocate(b, 1000);
    void* b2 = arena.allocate(1000);
    CHECK(b2 == b);  // first fit: the hole left by b
    // Free a and b2: their ranges merge, so a block bigger than either fits
    // where a was.
    arena.deallocate(a, 1000);
    arena.deallocate(b2, 1000);
    void* big = arena.allocate(2000);
    CHECK(big == a);
    arena.deallocate(big, 2000);
    arena.deallocate(c, 1000);
    CHECK(arena.bytes_in_use() == 0);
    // Everything freed: the chunk is one range again, so a block of nearly
    // the whole chunk fits without a new chunk.
    CHECK(arena.chunk_count() == 1);
    void* whole = arena.allocate(4 * MiB - 4096);
    CHECK(whole == a);
    CHECK(arena.chunk_count() == 1);
    arena.deallocate(whole, 4 * MiB - 4096);
}

TEST_CASE("many small allocations share one memfd") {
    registrable_arena arena;
    std::pmr::vector<std::pmr::vector<std::byte>> buffers(&arena);
    for (int i = 0; i < 1000; ++i) buffers.emplace_back(100 + i);
    CHECK(arena.chunk_count() == 1);
    auto first = find_registrable(std::span<const std::byte>(buffers.front()));
    REQUIRE(first);
    std::set<int> fds;
    for (auto& v : buffers) {
        auto where = find_registrable(std::span<const std::byte>(v));
        REQUIRE(where);
        fds.insert(where->fd);
    }
    CHECK(fds.size() == 1);
}

TEST_CASE("chunks grow, and a large allocation gets its own chunk, unmapped when freed") {
    registrable_arena arena;
    // Fill more than the first 4 MiB chunk with 1 MiB blocks: the second
    // chunk is 8 MiB, so seven blocks need two chunks.
    std::vector<void*> blocks;
    for (int i = 0; i < 7; ++i) blocks.push_back(arena.allocate(MiB));
    CHECK(arena.chunk_count() == 2);
    auto in_first = find_registrable(bytes(blocks[0], MiB));
    auto in_last = find_registrable(bytes(blocks[6], MiB));
    REQUIRE(in_first);
    REQUIRE(in_last);
    CHECK(in_first->fd != in_last->fd);

    std::size_t large = 5 * MiB + 3;
    auto fds_before = vmrdma::testing::open_fd_count();
    void* p = arena.allocate(large);
    CHECK(arena.chunk_count() == 3);
    CHECK(vmrdma::testing::open_fd_count() == fds_before + 1);
    std::memset(p, 1, large);
    auto own = find_registrable(bytes(p, large));
    REQUIRE(own);
    CHECK(own->offset == 0);
    CHECK(own->fd != in_first->fd);
    CHECK(own->fd != in_last->fd);
    arena.deallocate(p, large);
    CHECK(arena.chunk_count() == 2);
    CHECK(vmrdma::testing::open_fd_count() == fds_before);
    CHECK_FALSE(find_registrable(bytes(p, 1)));  // its mapping is gone

    for (void* b : blocks) arena.deallocate(b, MiB);
    CHECK(arena.trim() == 2);
    CHECK(arena.chunk_count() == 0);
    CHECK_FALSE(find_registrable(bytes(blocks[0], 1)));
}

TEST_CASE("find_registrable sees interior spans of an allocation, with the right offset") {
    registrable_arena arena;
    std::pmr::vector<std::byte> pad(3000, &arena);  // so the next block is not at offset 0
    std::pmr::vector<std::byte> v(64 * 1024, &arena);
    auto whole = find_registrable(std::span<const std::byte>(v));
    REQUIRE(whole);
    auto inner = find_registrable(std::span<const std::byte>(v).subspan(1234, 5000));
    REQUIRE(inner);
    CHECK(inner->fd == whole->fd);
    CHECK(inner->offset == whole->offset + 1234);
    CHECK(whole->offset == static_cast<std::uint64_t>(v.data() - pad.data()));
    // The bytes at that offset in the memfd are the vector's.
    v[1234] = std::byte{0x5a};
    std::byte in_file{};
    REQUIRE(pread(inner->fd, &in_file, 1, static_cast<off_t>(inner->offset)) == 1);
    CHECK(in_file == std::byte{0x5a});
    // Ordinary memory is still not registrable.
    std::vector<std::byte> plain(64);
    CHECK_FALSE(find_registrable(std::span<const std::byte>(plain)));
}

TEST_CASE("the destructor closes every memfd and unmaps every chunk") {
    auto fds_before = vmrdma::testing::open_fd_count();
    const void* small = nullptr;
    const void* large = nullptr;
    {
        registrable_arena arena({.chunk_size = 64 * 1024, .max_chunk_size = 256 * 1024});
        std::vector<void*> held;
        for (int i = 0; i < 20; ++i) held.push_back(arena.allocate(30 * 1024));  // several growing chunks
        large = arena.allocate(MiB);
        small = held.front();
        CHECK(arena.chunk_count() >= 4);
        CHECK(vmrdma::testing::open_fd_count() == fds_before + static_cast<int>(arena.chunk_count()));
        // No deallocation: the destructor reclaims outstanding allocations too.
    }
    CHECK(vmrdma::testing::open_fd_count() == fds_before);
    CHECK_FALSE(find_registrable(bytes(small, 1)));
    CHECK_FALSE(find_registrable(bytes(large, 1)));
}

TEST_CASE("bad options and impossible sizes are refused") {
    CHECK_THROWS_AS(registrable_arena({.chunk_size = 0}), vmrdma::error);
    CHECK_THROWS_AS(registrable_arena({.chunk_size = 8 * MiB, .max_chunk_size = 4 * MiB}), vmrdma::error);
    registrable_arena arena;
    volatile std::size_t huge = SIZE_MAX - 8;  // volatile: GCC rejects the constant at compile time
    CHECK_THROWS_AS(static_cast<void>(arena.allocate(huge)), std::bad_alloc);
    CHECK(arena.chunk_count() == 0);
    // A zero-byte allocation is a distinct, deallocatable pointer.
    void* a = arena.allocate(0);
    void* b = arena.allocate(0);
    CHECK(a != b);
    arena.deallocate(a, 0);
    arena.deallocate(b, 0);
}

TEST_CASE("a randomised mix keeps allocations disjoint and in bounds") {
    registrable_arena arena({.chunk_size = 256 * 1024, .max_chunk_size = MiB});
    struct block {
        std::byte* p;
        std::size_t size, align;
        unsigned char fill;
    };
    std::vector<block> live;
    std::uint64_t state = 12345;
    auto rnd = [&] {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return static_cast<std::size_t>(state >> 33);
    };
    for (int step = 0; step < 4000; ++step) {
        if (live.empty() || rnd() % 3 != 0) {
            std::size_t size = rnd() % (rnd() % 4 == 0 ? 300 * 1024 : 4096);
            std::size_t align = std::size_t{1} << (rnd() % 13);
            auto* p = static_cast<std::byte*>(arena.allocate(size, align));
            REQUIRE(aligned(p, align));
            auto fill = static_cast<unsigned char>(step);
            std::memset(p, fill, size);
            REQUIRE(find_registrable(bytes(p, size == 0 ? 1 : size)));
            live.push_back({p, size, align, fill});
        } else {
            auto i = rnd() % live.size();
            auto b = live[i];
            // Nobody else wrote into this block while it was live.
            std::vector<std::byte> expect(b.size, std::byte{b.fill});
            REQUIRE(std::memcmp(b.p, expect.data(), b.size) == 0);
            arena.deallocate(b.p, b.size, b.align);
            live[i] = live.back();
            live.pop_back();
        }
    }
    for (auto& b : live) arena.deallocate(b.p, b.size, b.align);
    CHECK(arena.bytes_in_use() == 0);
    arena.trim();
    CHECK(arena.chunk_count() == 0);
}

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
TEST_CASE("under ASan, space not handed out is poisoned") {
    registrable_arena arena;
    auto* p = static_cast<std::byte*>(arena.allocate(100));
    CHECK_FALSE(__asan_region_is_poisoned(p, 100));
    CHECK(__asan_address_is_poisoned(p + 100));  // past the end
    arena.deallocate(p, 100);
    CHECK(__asan_address_is_poisoned(p));  // after deallocate
    void* large = arena.allocate(8 * MiB);
    arena.deallocate(large, 8 * MiB);  // its own chunk, unpoisoned before unmapping
    CHECK_FALSE(__asan_address_is_poisoned(large));
}
#endif
