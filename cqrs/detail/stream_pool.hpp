// stream_pool: the allocator of sealed block streams (detail::byte_buffer).
//
// Why not malloc: a node's sealed blocks are most of its heap and live for
// minutes to days, while the ingest path allocates and frees small buffers
// (open buckets' sketch bins, batches, messages) millions of times a second
// between them. In one malloc heap the long-lived streams pin the pages the
// short-lived churn freed: the store alone, filled with 10,000 series x 1 h,
// had 99 MB resident for 74 MB in use (docs/benchmarks.md, "Memory, fifth
// pass"). Streams here come from 64 KiB slabs of their own, one size
// class per slab (16-byte steps up to 512 bytes, 64-byte steps up to 4 KiB);
// a slab whose slots are all free goes back to the system at once, and
// stream_pool_trim hands back every page of a slab without a live slot
// (the slabs' bookkeeping is in their headers, never in free slots, so a
// released page holds nothing the pool reads). Larger streams use malloc.
//
// Thread-safe (one mutex): stores of different partitions allocate from
// any scheduler thread. Only allocate/reallocate/release take it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cairn::cqrs::detail {

/// The usable size of the slot a request of `n` bytes gets (n > 0).
size_t stream_capacity(size_t n) noexcept;

/// Returns a block of at least n bytes (its capacity: stream_capacity(n)),
/// keeping the first `keep` bytes of `p` (p: a block of this pool or null;
/// released unless returned). Throws std::bad_alloc.
uint8_t* stream_realloc(uint8_t* p, size_t old_cap, size_t n, size_t keep);

/// Releases a block of this pool (null: nothing) of capacity `cap`.
void stream_free(uint8_t* p, size_t cap) noexcept;

/// Bytes the pool holds from the system (slabs and large blocks) and bytes
/// in use by live blocks, for stats.
struct stream_pool_stats {
  uint64_t system_bytes = 0;
  uint64_t used_bytes = 0;
};
stream_pool_stats stream_pool_usage() noexcept;

/// Returns the pages of the pool's slabs that hold no live stream to the
/// system (madvise DONTNEED; they come back zeroed when a slot in them is
/// used again). The owner calls it now and then, as malloc_trim.
void stream_pool_trim() noexcept;


} // namespace cairn::cqrs::detail
