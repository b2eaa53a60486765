// registrable_arena: a std::pmr::memory_resource whose every allocation is
// registrable memory (see registrable.hpp). It carves allocations out of a
// few large registrable_buffers ("chunks": sealed memfds mapped here), so a
// program with many buffers holds a handful of memfds instead of one each,
// and any span inside an allocation can be registered on a `unix:` device
// zero-copy (the daemon maps the chunk's memfd at the span's offset).
//
//   vmrdma::registrable_arena arena;
//   std::pmr::vector<std::byte> v(64 << 10, &arena);
//   auto mr = ep.register_memory(v, vmrdma::access::remote_write);
//
// Layout
//   - Chunks start at `options::chunk_size` (4 MiB) and double with each new
//     chunk up to `options::max_chunk_size` (64 MiB).
//   - An allocation that might not fit in `chunk_size` (its size plus the
//     worst-case alignment padding) gets a chunk of its own, sized to fit,
//     unmapped and its memfd closed as soon as it is deallocated.
//   - Shared chunks are kept until trim() or the arena's destruction; freed
//     space in them is reused (first fit, adjacent free ranges coalesce).
//   - Any alignment (a power of two, as std::pmr guarantees) is honoured.
//     Sizes are rounded up to 16 bytes. A fresh chunk is zero-filled; reused
//     space keeps whatever was last written to it.
//   - The destructor unmaps every chunk and closes every memfd, whether or not
//     allocations are outstanding (as std::pmr's pool resources do).
//   - Under AddressSanitizer the space not handed out is poisoned, so a use
//     after deallocate() or past an allocation's end is reported.
//
// Registration
//   - A region must be destroyed before the allocation it covers is
//     deallocated (api.md, Lifetimes). The daemon maps whole pages, so a
//     registered allocation may share a page with a neighbour; what a peer can
//     reach is still only the region's own bytes.
//   - detail::find_registrable() knows chunks, not allocations: a span in
//     freed space of a live chunk is still "registrable".
//
// Threads: not thread-safe. Use one arena per thread (or per event loop, which
// is the library's threading model), or guard every allocation and
// deallocation with your own lock.
//
// Why not std::pmr::unsynchronized_pool_resource over an upstream that hands
// out memfd chunks: its block sizes jump from 128 KiB to 1 MiB (RDMA buffers
// are typically in that range), a refill asks upstream for 16 blocks at once
// (a 140 KB allocation made libstdc++ 12 request 15 MiB aligned to 1 MiB), it
// never gives a pool's chunks back before release(), freed blocks serve only
// their own size class, and libstdc++ 12 returns 8-byte-aligned blocks for
// allocate(24, 16). See registrable_arena.cc for the free-list choice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory_resource>

#include "vmrdma/registrable.hpp"

namespace vmrdma {

class registrable_arena final : public std::pmr::memory_resource {
public:
    struct options {
        std::size_t chunk_size = std::size_t{4} << 20;       // first shared chunk; also the "own chunk" threshold
        std::size_t max_chunk_size = std::size_t{64} << 20;  // shared chunks stop doubling here
    };

    registrable_arena() : registrable_arena(options{}) {}
    // Maps nothing until the first allocation. Throws vmrdma::error
    // (invalid_argument) if chunk_size is 0 or max_chunk_size < chunk_size.
    explicit registrable_arena(options opts);
    // Containers hold a pointer to their resource: the arena never moves.
    registrable_arena(const registrable_arena&) = delete;
    registrable_arena& operator=(const registrable_arena&) = delete;
    ~registrable_arena() override;

    // Unmaps the shared chunks that hold no allocation; returns how many.
    std::size_t trim() noexcept;

    // allocate() throws vmrdma::error if a new chunk's memfd cannot be created
    // or mapped, std::bad_alloc if the size overflows.

    // Number of chunks (memfds) currently mapped, and bytes handed out.
    std::size_t chunk_count() const noexcept { return chunks_.size(); }
    std::size_t bytes_in_use() const noexcept { return in_use_; }

private:
    struct chunk {
        registrable_buffer buffer;
        bool dedicated = false;                  // one large allocation; unmapped when it is freed
        std::size_t used = 0;                    // bytes of live allocations
        std::map<std::size_t, std::size_t> free; // offset -> length; coalesced, so never adjacent
    };

    void* do_allocate(std::size_t bytes, std::size_t alignment) override;
    void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override;
    bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }

    static void* take(chunk& c, std::size_t size, std::size_t alignment);
    chunk& add_chunk(std::size_t size, bool dedicated);
    std::map<std::uintptr_t, chunk>::iterator drop(std::map<std::uintptr_t, chunk>::iterator it) noexcept;

    options opts_;
    std::size_t next_chunk_size_;
    std::size_t in_use_ = 0;
    std::map<std::uintptr_t, chunk> chunks_;  // by start address
};

}  // namespace vmrdma
