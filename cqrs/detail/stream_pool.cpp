#include "cqrs/detail/stream_pool.hpp"

#include <sys/mman.h>

#include <bit>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <utility>

namespace cairn::cqrs::detail {

namespace {

constexpr size_t slab_bytes = size_t{1} << 16;
constexpr size_t slab_header = 704;  // the slab struct, below, rounded up
constexpr size_t small_max = 512;   // 16-byte steps up to here
constexpr size_t pool_max = 4096;   // 64-byte steps up to here; malloc above
constexpr size_t class_count = small_max / 16 + (pool_max - small_max) / 64;

size_t class_of(size_t n) noexcept {
  if (n <= small_max)
    return (n + 15) / 16 - 1;
  return small_max / 16 + (n - small_max + 63) / 64 - 1;
}

size_t class_size(size_t c) noexcept {
  if (c < small_max / 16)
    return (c + 1) * 16;
  return small_max + (c - small_max / 16 + 1) * 64;
}

constexpr size_t page_bytes = 4096;
constexpr size_t slab_pages = slab_bytes / page_bytes;
constexpr size_t max_slots = (slab_bytes - slab_header) / 16;
constexpr size_t map_words = (max_slots + 63) / 64;

/// A slab of one size class, aligned to slab_bytes; this header is its
/// first bytes, its slots follow. Free slots are bits of `free_map` (not
/// links in the slots: a released page must hold nothing the pool reads).
struct slab {
  slab* prev;
  slab* next;
  uint32_t cls;
  uint32_t live;         // slots in use
  uint32_t slots;        // slots per slab
  uint32_t size;         // slot size
  bool listed;           // in its class's list of slabs with a free slot
  uint16_t released;     // pages handed back by trim (bit per page)
  uint16_t page_live[slab_pages];  // live slots touching each page
  uint64_t free_map[map_words];    // bit set: slot free
};
constexpr size_t slab_header_bytes = (sizeof(slab) + 63) / 64 * 64;
static_assert(slab_header_bytes <= slab_header);

struct size_class {
  slab* head = nullptr;   // slabs with a free slot
  slab* spare = nullptr;  // one empty slab kept against alloc/free flapping
};

struct pool {
  std::mutex mtx;
  size_class classes[class_count];
  uint64_t slabs = 0;
  uint64_t large_bytes = 0;
  uint64_t used_bytes = 0;

  void link(size_class& sc, slab* s) noexcept {
    s->prev = nullptr;
    s->next = sc.head;
    if (sc.head)
      sc.head->prev = s;
    sc.head = s;
    s->listed = true;
  }

  void unlink(size_class& sc, slab* s) noexcept {
    if (s->prev)
      s->prev->next = s->next;
    else
      sc.head = s->next;
    if (s->next)
      s->next->prev = s->prev;
    s->prev = s->next = nullptr;
    s->listed = false;
  }

  static void reset(slab* s) noexcept {
    s->live = 0;
    std::memset(s->page_live, 0, sizeof(s->page_live));
    std::memset(s->free_map, 0, sizeof(s->free_map));
    for (uint32_t k = 0; k < s->slots; ++k)
      s->free_map[k / 64] |= uint64_t{1} << (k % 64);
  }

  slab* new_slab(size_t cls) {
    // Over-map by one slab and trim both ends to get the alignment.
    void* raw = ::mmap(nullptr, 2 * slab_bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
      throw std::bad_alloc{};
    auto addr = reinterpret_cast<uintptr_t>(raw);
    auto aligned = (addr + slab_bytes - 1) & ~(uintptr_t{slab_bytes} - 1);
    if (aligned > addr)
      ::munmap(raw, aligned - addr);
    auto tail = addr + 2 * slab_bytes - (aligned + slab_bytes);
    if (tail > 0)
      ::munmap(reinterpret_cast<void*>(aligned + slab_bytes), tail);
    auto* s = reinterpret_cast<slab*>(aligned);
    s->prev = s->next = nullptr;
    s->cls = static_cast<uint32_t>(cls);
    s->size = static_cast<uint32_t>(class_size(cls));
    s->slots = static_cast<uint32_t>((slab_bytes - slab_header) / s->size);
    s->listed = false;
    s->released = 0;
    reset(s);
    ++slabs;
    return s;
  }

  /// Pages [first, last] that slot k of s touches.
  static void pages_of(const slab* s, uint32_t k, size_t& first,
                       size_t& last) noexcept {
    size_t off = slab_header + size_t{k} * s->size;
    first = off / page_bytes;
    last = (off + s->size - 1) / page_bytes;
  }

  uint8_t* alloc_small(size_t cls) {
    auto& sc = classes[cls];
    auto* s = sc.head;
    if (!s) {
      if (sc.spare) {
        s = std::exchange(sc.spare, nullptr);
      } else {
        s = new_slab(cls);
      }
      link(sc, s);
    }
    // The lowest free slot: live streams gather at the front of a slab
    // and its tail pages stay free for trim.
    uint32_t k = 0;
    for (size_t w = 0; w < map_words; ++w)
      if (s->free_map[w] != 0) {
        k = static_cast<uint32_t>(w * 64 + std::countr_zero(s->free_map[w]));
        s->free_map[w] &= s->free_map[w] - 1;
        break;
      }
    size_t first = 0, last = 0;
    pages_of(s, k, first, last);
    for (size_t pg = first; pg <= last; ++pg) {
      ++s->page_live[pg];
      s->released &= static_cast<uint16_t>(~(1u << pg));
    }
    if (++s->live == s->slots)
      unlink(sc, s);
    used_bytes += s->size;
    return reinterpret_cast<uint8_t*>(s) + slab_header + size_t{k} * s->size;
  }

  void free_small(uint8_t* p) noexcept {
    auto* s = reinterpret_cast<slab*>(reinterpret_cast<uintptr_t>(p)
                                      & ~(uintptr_t{slab_bytes} - 1));
    auto& sc = classes[s->cls];
    used_bytes -= s->size;
    auto k = static_cast<uint32_t>(
      (static_cast<size_t>(p - reinterpret_cast<uint8_t*>(s)) - slab_header)
      / s->size);
    s->free_map[k / 64] |= uint64_t{1} << (k % 64);
    size_t first = 0, last = 0;
    pages_of(s, k, first, last);
    for (size_t pg = first; pg <= last; ++pg)
      --s->page_live[pg];
    if (!s->listed)
      link(sc, s);
    if (--s->live == 0) {
      // Empty: the slab goes back to the system (or becomes the spare).
      unlink(sc, s);
      if (!sc.spare) {
        sc.spare = s;
      } else {
        ::munmap(s, slab_bytes);
        --slabs;
      }
    }
  }

  static void trim(slab* s) noexcept {
    for (size_t pg = 1; pg < slab_pages; ++pg)  // page 0: the header
      if (s->page_live[pg] == 0 && !(s->released & (1u << pg))) {
        ::madvise(reinterpret_cast<uint8_t*>(s) + pg * page_bytes, page_bytes,
                  MADV_DONTNEED);
        s->released |= static_cast<uint16_t>(1u << pg);
      }
  }

  void trim() noexcept {
    for (auto& sc : classes) {
      for (slab* s = sc.head; s; s = s->next)
        trim(s);
      if (sc.spare)
        trim(sc.spare);
    }
  }
};

pool& the_pool() {
  static pool* p = new pool;  // never destroyed: blocks may outlive statics
  return *p;
}

} // namespace

size_t stream_capacity(size_t n) noexcept {
  return n > pool_max ? n : class_size(class_of(n));
}

uint8_t* stream_realloc(uint8_t* p, size_t old_cap, size_t n, size_t keep) {
  auto& pl = the_pool();
  bool old_large = old_cap > pool_max;
  if (n > pool_max && (old_large || !p)) {
    auto* q = static_cast<uint8_t*>(std::realloc(p, n));
    if (!q)
      throw std::bad_alloc{};
    std::lock_guard<std::mutex> guard{pl.mtx};
    pl.large_bytes += n;
    pl.large_bytes -= p ? old_cap : 0;
    pl.used_bytes += n;
    pl.used_bytes -= p ? old_cap : 0;
    return q;
  }
  if (p && !old_large && n <= pool_max && class_of(n) == class_of(old_cap))
    return p;
  uint8_t* q;
  if (n > pool_max) {
    q = static_cast<uint8_t*>(std::malloc(n));
    if (!q)
      throw std::bad_alloc{};
    std::lock_guard<std::mutex> guard{pl.mtx};
    pl.large_bytes += n;
    pl.used_bytes += n;
  } else {
    std::lock_guard<std::mutex> guard{pl.mtx};
    q = pl.alloc_small(class_of(n));
  }
  if (p) {
    auto k = keep < n ? keep : n;
    if (k > 0)
      std::memcpy(q, p, k);
    stream_free(p, old_cap);
  }
  return q;
}

void stream_free(uint8_t* p, size_t cap) noexcept {
  if (!p)
    return;
  auto& pl = the_pool();
  if (cap > pool_max) {
    std::free(p);
    std::lock_guard<std::mutex> guard{pl.mtx};
    pl.large_bytes -= cap;
    pl.used_bytes -= cap;
    return;
  }
  std::lock_guard<std::mutex> guard{pl.mtx};
  pl.free_small(p);
}

stream_pool_stats stream_pool_usage() noexcept {
  auto& pl = the_pool();
  std::lock_guard<std::mutex> guard{pl.mtx};
  return {pl.slabs * slab_bytes + pl.large_bytes, pl.used_bytes};
}

} // namespace cairn::cqrs::detail

namespace cairn::cqrs::detail {

void stream_pool_trim() noexcept {
  auto& pl = the_pool();
  std::lock_guard<std::mutex> guard{pl.mtx};
  pl.trim();
}

} // namespace cairn::cqrs::detail
