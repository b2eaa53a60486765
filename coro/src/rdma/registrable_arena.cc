// registrable_arena: first fit over address-ordered free lists, one per chunk.
//
// Why first fit with coalescing: allocations here are RDMA buffers, few and
// mostly large (KiB to MiB), allocated at set-up and freed at tear-down, not a
// stream of tiny objects. For that load a per-chunk map of free ranges (offset
// -> length) is simple to get right: allocation walks it in address order and
// splits one range; deallocation finds the neighbours in O(log n) and merges,
// so freed space serves any later size, and a chunk whose allocations are all
// gone is one free range again. No headers are stored in the chunk (the
// metadata lives on the ordinary heap), so the daemon's mapping of a chunk
// contains nothing but user data. Size classes or a buddy system would be
// faster for many small objects but waste space at exactly the sizes RDMA
// buffers have (see the header for why std::pmr's pool resource was not used).
#include "vmrdma/registrable_arena.hpp"

#include <unistd.h>

#include <cassert>
#include <iterator>
#include <new>
#include <utility>

#include "vmrdma/error.hpp"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
// ASan does not watch mmap'd memory by itself: poison what is not handed out,
// so a use after deallocate() or past an allocation's end is reported.
#define VMRDMA_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define VMRDMA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define VMRDMA_POISON(p, n) ((void)(p), (void)(n))
#define VMRDMA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace vmrdma {

namespace {
constexpr std::size_t granule = 16;  // every size and offset is a multiple of this

std::size_t page_size() noexcept {
    static const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    return page;
}

// Rounds n up to a multiple of a (a power of two); false on overflow.
bool round_up(std::size_t n, std::size_t a, std::size_t& out) noexcept {
    if (n > SIZE_MAX - (a - 1)) return false;
    out = (n + a - 1) & ~(a - 1);
    return true;
}

std::size_t block_size(std::size_t bytes) noexcept {
    std::size_t size = 0;
    round_up(bytes == 0 ? 1 : bytes, granule, size);  // checked by do_allocate before any use
    return size;
}
}  // namespace

registrable_arena::registrable_arena(options opts) : opts_(opts), next_chunk_size_(0) {
    if (opts_.chunk_size == 0 || opts_.max_chunk_size < opts_.chunk_size)
        throw error(errc::invalid_argument, "registrable_arena: need 0 < chunk_size <= max_chunk_size");
    if (!round_up(opts_.chunk_size, page_size(), opts_.chunk_size) ||
        !round_up(opts_.max_chunk_size, page_size(), opts_.max_chunk_size))
        throw error(errc::invalid_argument, "registrable_arena: chunk size too large");
    next_chunk_size_ = opts_.chunk_size;
}

registrable_arena::~registrable_arena() {
    // Each chunk's registrable_buffer unmaps its memory and closes its memfd.
    for (auto it = chunks_.begin(); it != chunks_.end();) it = drop(it);
}

// Unpoisons before unmapping: a later mapping at this address is not ours.
std::map<std::uintptr_t, registrable_arena::chunk>::iterator registrable_arena::drop(
    std::map<std::uintptr_t, chunk>::iterator it) noexcept {
    VMRDMA_UNPOISON(it->second.buffer.data(), it->second.buffer.size());
    return chunks_.erase(it);
}

registrable_arena::chunk& registrable_arena::add_chunk(std::size_t size, bool dedicated) {
    registrable_buffer buffer(size);
    auto start = reinterpret_cast<std::uintptr_t>(buffer.data());
    auto [it, inserted] = chunks_.try_emplace(start);
    assert(inserted);
    chunk& c = it->second;
    c.buffer = std::move(buffer);
    c.dedicated = dedicated;
    try {
        c.free.emplace(0, size);
    } catch (...) {
        chunks_.erase(it);
        throw;
    }
    VMRDMA_POISON(c.buffer.data(), size);
    return c;
}

// First fit in one chunk: the lowest free range that holds `size` bytes at
// `alignment`. The padding before the aligned start and the tail after the
// block stay free.
void* registrable_arena::take(chunk& c, std::size_t size, std::size_t alignment) {
    auto base = reinterpret_cast<std::uintptr_t>(c.buffer.data());
    for (auto it = c.free.begin(); it != c.free.end(); ++it) {
        auto [offset, length] = *it;
        std::uintptr_t start = base + offset;
        std::uintptr_t aligned = (start + alignment - 1) & ~(std::uintptr_t{alignment} - 1);
        std::size_t pad = aligned - start;
        if (pad > length || length - pad < size) continue;
        std::size_t tail = length - pad - size;
        if (tail > 0) c.free.emplace_hint(std::next(it), offset + pad + size, tail);  // may throw: nothing changed yet
        if (pad > 0)
            it->second = pad;
        else
            c.free.erase(it);
        c.used += size;
        return reinterpret_cast<void*>(aligned);
    }
    return nullptr;
}

void* registrable_arena::do_allocate(std::size_t bytes, std::size_t alignment) {
    if (alignment < granule) alignment = granule;
    std::size_t size = 0;
    if (!round_up(bytes == 0 ? 1 : bytes, granule, size) || size > SIZE_MAX / 2) throw std::bad_alloc();
    // Worst-case padding in a shared chunk is alignment - granule (free
    // ranges start on granules); in a fresh mapping, alignment - page.
    if (alignment - granule > opts_.chunk_size || size > opts_.chunk_size - (alignment - granule)) {
        std::size_t pad = alignment > page_size() ? alignment - page_size() : 0;
        std::size_t own = 0;
        if (pad > SIZE_MAX / 2 || !round_up(size + pad, page_size(), own)) throw std::bad_alloc();
        chunk& c = add_chunk(own, true);
        void* p = take(c, size, alignment);  // cannot fail: the chunk was sized for it
        assert(p);
        in_use_ += size;
        VMRDMA_UNPOISON(p, bytes);
        return p;
    }
    for (auto& [start, c] : chunks_) {
        if (c.dedicated) continue;
        if (void* p = take(c, size, alignment)) {
            in_use_ += size;
            VMRDMA_UNPOISON(p, bytes);
            return p;
        }
    }
    chunk& c = add_chunk(next_chunk_size_, false);
    next_chunk_size_ = next_chunk_size_ > opts_.max_chunk_size / 2 ? opts_.max_chunk_size : next_chunk_size_ * 2;
    void* p = take(c, size, alignment);
    assert(p);
    in_use_ += size;
    VMRDMA_UNPOISON(p, bytes);
    return p;
}

void registrable_arena::do_deallocate(void* p, std::size_t bytes, std::size_t /*alignment*/) {
    auto addr = reinterpret_cast<std::uintptr_t>(p);
    auto it = chunks_.upper_bound(addr);
    assert(it != chunks_.begin());  // p came from this arena
    if (it == chunks_.begin()) return;
    --it;
    chunk& c = it->second;
    std::size_t offset = addr - it->first;
    std::size_t size = block_size(bytes);
    assert(offset + size <= c.buffer.size());
    assert(c.used >= size);
    in_use_ -= size;
    c.used -= size;
    if (c.dedicated) {
        drop(it);  // unmaps and closes the memfd
        return;
    }
    VMRDMA_POISON(p, size);
    // Coalesce with the free neighbours.
    auto next = c.free.lower_bound(offset);
    auto prev = next == c.free.begin() ? c.free.end() : std::prev(next);
    assert(next == c.free.end() || offset + size <= next->first);                  // not a double free
    assert(prev == c.free.end() || prev->first + prev->second <= offset);          // not a double free
    bool join_prev = prev != c.free.end() && prev->first + prev->second == offset;
    bool join_next = next != c.free.end() && offset + size == next->first;
    if (join_prev && join_next) {
        prev->second += size + next->second;
        c.free.erase(next);
    } else if (join_prev) {
        prev->second += size;
    } else if (join_next) {
        auto node = c.free.extract(next);  // re-key without allocating
        node.key() = offset;
        node.mapped() += size;
        c.free.insert(std::move(node));
    } else {
        try {
            c.free.emplace_hint(next, offset, size);
        } catch (const std::bad_alloc&) {
            // Out of heap for a map node: the range stays unusable until
            // the chunk is trimmed or the arena destroyed. Better than
            // throwing from a deallocation.
        }
    }
}

std::size_t registrable_arena::trim() noexcept {
    std::size_t n = 0;
    for (auto it = chunks_.begin(); it != chunks_.end();) {
        if (!it->second.dedicated && it->second.used == 0) {
            it = drop(it);
            ++n;
        } else {
            ++it;
        }
    }
    return n;
}

}  // namespace vmrdma
