#include "cqrs/detail/stream_pool.hpp"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <utility>

namespace cairn::cqrs::detail {

namespace {

constexpr size_t slab_bytes = size_t{1} << 16;
constexpr size_t slab_header = 64;
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

/// A slab of one size class, aligned to slab_bytes; this header is its
/// first bytes, its slots follow.
struct slab {
  slab* prev;
  slab* next;
  void* free_list;   // freed slots, linked through their first bytes
  uint32_t cls;
  uint32_t live;     // slots in use
  uint32_t bump;     // offset of the first never-used slot
  uint32_t slots;    // slots per slab
  bool listed;       // in its class's list of slabs with a free slot
};
static_assert(sizeof(slab) <= slab_header);

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
    s->free_list = nullptr;
    s->cls = static_cast<uint32_t>(cls);
    s->live = 0;
    s->bump = slab_header;
    s->slots = static_cast<uint32_t>((slab_bytes - slab_header) / class_size(cls));
    s->listed = false;
    ++slabs;
    return s;
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
    uint8_t* p;
    if (s->free_list) {
      p = static_cast<uint8_t*>(s->free_list);
      std::memcpy(&s->free_list, p, sizeof(void*));
    } else {
      p = reinterpret_cast<uint8_t*>(s) + s->bump;
      s->bump += static_cast<uint32_t>(class_size(cls));
    }
    if (++s->live == s->slots)
      unlink(sc, s);
    used_bytes += class_size(cls);
    return p;
  }

  void free_small(uint8_t* p) noexcept {
    auto* s = reinterpret_cast<slab*>(reinterpret_cast<uintptr_t>(p)
                                      & ~(uintptr_t{slab_bytes} - 1));
    auto& sc = classes[s->cls];
    used_bytes -= class_size(s->cls);
    std::memcpy(p, &s->free_list, sizeof(void*));
    s->free_list = p;
    if (!s->listed)
      link(sc, s);
    if (--s->live == 0) {
      // Empty: the slab goes back to the system (or becomes the spare).
      unlink(sc, s);
      s->free_list = nullptr;
      s->bump = slab_header;
      if (!sc.spare) {
        sc.spare = s;
      } else {
        ::munmap(s, slab_bytes);
        --slabs;
      }
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
