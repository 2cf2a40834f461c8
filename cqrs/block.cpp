#include "cqrs/block.hpp"

#include "cqrs/detail/binary.hpp"
#include "cqrs/detail/bits.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

namespace cairn::cqrs {

namespace {

using detail::bit_reader;
using detail::bit_writer;

constexpr double pow10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7};
constexpr int64_t max_mantissa = int64_t{1} << 53;

unsigned offset_width(millis resolution) {
  return resolution <= 1 ? 0
                         : static_cast<unsigned>(std::bit_width(
                           static_cast<uint64_t>(resolution - 1)));
}

/// Codec 2's Rice parameter from a running mean bit width `w` (x4):
/// round(mean) - 1, at most 63.
unsigned rice_k(uint16_t w) noexcept {
  return w >= 5 ? (static_cast<unsigned>(w) + 3) / 4 - 1 : 0;
}

/// Folds z into the running mean (weight 1/4 for the newest value).
void adapt(uint16_t& w, uint64_t z) noexcept {
  w = static_cast<uint16_t>(w - w / 4 + std::bit_width(z));
}

/// Codec 3 codes a context's value with Elias gamma while its running mean
/// is still 0 (a fresh block or restart point: the first offset, decimal
/// delta or sketch gap of a context is often wide, and a Rice code of
/// parameter 0 would escape) and starts the mean at that value's width
/// (4 x bit_width), where codec 2 let it grow from 0 over several values;
/// then the Rice code of the mean.
void put_adaptive(bit_writer& w, uint64_t z, uint16_t& ctx) {
  if (ctx == 0) {
    w.gamma(z);
    ctx = static_cast<uint16_t>(4 * std::bit_width(z));
    return;
  }
  w.rice(z, rice_k(ctx));
  adapt(ctx, z);
}

/// Reads what put_adaptive wrote (codec 3, `gamma_fresh`) or the plain
/// Rice code of codec 2.
uint64_t get_adaptive(bit_reader& r, uint16_t& ctx, bool gamma_fresh) {
  if (gamma_fresh && ctx == 0) {
    auto z = r.gamma();
    ctx = static_cast<uint16_t>(4 * std::bit_width(z));
    return z;
  }
  auto z = r.rice(rice_k(ctx));
  adapt(ctx, z);
  return z;
}

/// n with n / 10^e == d bit for bit, trying e = hint first; false if none.
bool as_decimal(double d, uint8_t hint, int64_t& n, uint8_t& e) {
  if (!(std::fabs(d) < 1e15))
    return false;
  auto bits = std::bit_cast<uint64_t>(d);
  auto try_e = [&](uint8_t k) {
    auto x = std::llround(d * pow10[k]);
    if (x <= -max_mantissa || x >= max_mantissa)
      return false;
    if (std::bit_cast<uint64_t>(static_cast<double>(x) / pow10[k]) != bits)
      return false;
    n = x;
    e = k;
    return true;
  };
  if (try_e(hint))
    return true;
  for (uint8_t k = 0; k < 8; ++k)
    if (k != hint && try_e(k))
      return true;
  return false;
}

void put_double(bit_writer& w, double d, double_state& s) {
  int64_t n = 0;
  uint8_t e = 0;
  auto bits = std::bit_cast<uint64_t>(d);
  if (as_decimal(d, s.e, n, e)) {
    w.bit(true);
    if (e == s.e) {
      w.bit(false);
    } else {
      w.bit(true);
      w.put(e, 3);
    }
    auto z = detail::zigzag(static_cast<int64_t>(static_cast<uint64_t>(n)
                                                 - static_cast<uint64_t>(s.n)));
    put_adaptive(w, z, s.w);
    s.n = n;
    s.e = e;
    s.bits = bits;
    return;
  }
  w.bit(false);
  auto x = bits ^ s.bits;
  s.bits = bits;
  if (x == 0) {
    w.bit(false);
    return;
  }
  w.bit(true);
  auto lead = static_cast<uint8_t>(std::countl_zero(x));
  auto trail = static_cast<unsigned>(std::countr_zero(x));
  auto len = static_cast<uint8_t>(64 - lead - trail);
  if (s.len != 0 && lead >= s.lead && trail >= 64u - s.lead - s.len) {
    w.bit(false);
    w.put(x >> (64 - s.lead - s.len), s.len);
    return;
  }
  w.bit(true);
  w.put(lead, 6);
  w.put(len - 1u, 6);
  w.put(x >> trail, len);
  s.lead = lead;
  s.len = len;
}

double get_double(bit_reader& r, double_state& s, uint8_t codec) {
  bool v1 = codec == block_codec_v1;
  if (r.bit()) {
    if (r.bit())
      s.e = static_cast<uint8_t>(r.get(3));
    uint64_t z = 0;
    if (v1) {
      auto width = static_cast<unsigned>(r.get(6));
      if (width > 55) {
        r.fail();
        return 0;
      }
      if (width >= 1)
        z = (uint64_t{1} << (width - 1)) | (width > 1 ? r.get(width - 1) : 0);
    } else {
      z = get_adaptive(r, s.w, codec == block_codec);
      if (z >= uint64_t{1} << 55) {
        r.fail();
        return 0;
      }
    }
    s.n = static_cast<int64_t>(static_cast<uint64_t>(s.n)
                               + static_cast<uint64_t>(detail::unzigzag(z)));
    auto d = static_cast<double>(s.n) / pow10[s.e];
    s.bits = std::bit_cast<uint64_t>(d);
    return d;
  }
  if (r.bit()) {
    uint64_t x = 0;
    if (r.bit()) {
      s.lead = static_cast<uint8_t>(r.get(6));
      s.len = static_cast<uint8_t>(r.get(6) + 1);
      if (s.lead + s.len > 64) {
        r.fail();
        return 0;
      }
    } else if (s.len == 0) {
      r.fail();
      return 0;
    }
    x = r.get(s.len) << (64 - s.lead - s.len);
    s.bits ^= x;
  }
  return std::bit_cast<double>(s.bits);
}

/// Codec 2 predicts a store's first and last bin from the bucket's min and
/// max (the bins of its extreme values, for a bucket of plain events): the
/// index is then coded against the prediction, 1 bit when it holds. Any
/// other sketch is still coded exactly, only dearer. no_hint: none.
constexpr int64_t no_hint = std::numeric_limits<int64_t>::min();

struct store_hints {
  int64_t first = no_hint;
  int64_t last = no_hint;
};

int64_t bin_hint(double v, const ddsketch_mapping& m) {
  return std::isfinite(v) && v >= ddsketch_mapping::min_indexable()
           ? int64_t{m.index(v)}
           : no_hint;
}

using detail::lazy_store;

/// Hints for the positive [0] and negative [1] store of `b`.
void hints_of(const bucket& b, const ddsketch_mapping& m, store_hints h[2]) {
  h[0] = {b.min > 0 ? bin_hint(b.min, m) : no_hint,
          b.max > 0 ? bin_hint(b.max, m) : no_hint};
  h[1] = {b.max < 0 ? bin_hint(-b.max, m) : no_hint,
          b.min < 0 ? bin_hint(-b.min, m) : no_hint};
}

/// base + z as a bin index; false if outside int32.
bool offset_index(int64_t base, uint64_t z, int64_t& out) {
  auto d = detail::unzigzag(z);
  if ((d > 0 && base > std::numeric_limits<int32_t>::max() - d)
      || (d < 0 && base < std::numeric_limits<int32_t>::min() - d))
    return false;
  out = base + d;
  return out >= std::numeric_limits<int32_t>::min()
         && out <= std::numeric_limits<int32_t>::max();
}

void put_store(bit_writer& w, const ddsketch::store& s, int32_t& prev_first,
               uint16_t& gap_w, uint16_t& count_w, uint16_t& len_w,
               store_hints hint) {
  auto bins = s.bins();
  w.gamma(bins);
  if (bins >= long_store_bins) {
    // Codec 3, a long store: self-contained (fresh contexts), top bin
    // first, after its length in bits, so that a reader can skip it or
    // walk it from the top for a high quantile (docs/storage-format.md).
    thread_local std::vector<std::pair<int32_t, uint64_t>> all;
    all.clear();
    s.for_each([&](int32_t i, uint64_t n) { all.emplace_back(i, n); });
    detail::byte_buffer tmp;  // the store, to know its length first
    uint64_t tn = 0;
    bit_writer tw{tmp, tn};
    uint16_t g = 0, c = 0;
    int64_t prev = 0;
    for (size_t j = all.size(); j-- > 0;) {
      auto [i, n] = all[j];
      if (j + 1 == all.size())
        tw.gamma(detail::zigzag(int64_t{i} - (hint.last != no_hint
                                                  ? hint.last
                                                  : int64_t{prev_first})));
      else if (j == 0 && hint.first != no_hint)
        tw.gamma(detail::zigzag(int64_t{i} - hint.first));
      else
        put_adaptive(tw, static_cast<uint64_t>(prev - int64_t{i} - 1), g);
      put_adaptive(tw, n - 1, c);
      prev = i;
    }
    put_adaptive(w, tn, len_w);
    bit_reader copy{tmp.data(), tn};
    for (uint64_t left = tn; left > 0;) {
      auto n = static_cast<unsigned>(std::min<uint64_t>(left, 57));
      w.put(copy.get(n), n);
      left -= n;
    }
    return;
  }
  bool first = true;
  int32_t prev = 0;
  uint64_t k = 0;
  s.for_each([&](int32_t i, uint64_t n) {
    if (first) {
      w.gamma(detail::zigzag(int64_t{i} - (hint.first != no_hint
                                               ? hint.first
                                               : int64_t{prev_first})));
      prev_first = i;
      first = false;
    } else if (k + 1 == bins && hint.last != no_hint) {
      w.gamma(detail::zigzag(int64_t{i} - hint.last));
    } else {
      auto gap = static_cast<uint64_t>(int64_t{i} - prev - 1);
      put_adaptive(w, gap, gap_w);
    }
    put_adaptive(w, n - 1, count_w);
    prev = i;
    ++k;
  });
}

/// Walks the bins of a long store (codec 3) top first, calling f(index,
/// count) until it returns false; false if malformed (bins past `limit`
/// counts, indexes out of order or range).
template <class F>
bool walk_long_bins(bit_reader& r, const lazy_store& lz, F&& f) {
  uint64_t total = 0;
  uint16_t g = 0, c = 0;
  int64_t prev = 0;
  for (uint64_t j = lz.bins; j-- > 0;) {
    int64_t i = 0;
    if (j + 1 == lz.bins) {
      if (!offset_index(lz.hint_last != no_hint ? lz.hint_last
                                                : int64_t{lz.prev_first},
                        r.gamma(), i))
        return false;
    } else if (j == 0 && lz.hint_first != no_hint) {
      if (!offset_index(lz.hint_first, r.gamma(), i) || i >= prev)
        return false;
    } else {
      auto gap = get_adaptive(r, g, true);
      if (gap > uint64_t{1} << 32)
        return false;
      i = prev - 1 - static_cast<int64_t>(gap);
      if (i < std::numeric_limits<int32_t>::min())
        return false;
    }
    auto n = get_adaptive(r, c, true) + 1;
    if (!r.ok() || n == 0 || n > lz.limit - total)
      return false;
    total += n;
    prev = i;
    if (!f(static_cast<int32_t>(i), n))
      return true;
  }
  return r.ok();
}

/// Decodes a long store into `out` (ascending); `total` its count.
bool get_long_bins(bit_reader& r, const lazy_store& lz,
                   std::vector<std::pair<int32_t, uint64_t>>& out,
                   uint64_t& total) {
  out.clear();
  total = 0;
  if (!walk_long_bins(r, lz, [&](int32_t i, uint64_t n) {
        out.emplace_back(i, n);
        total += n;
        return true;
      }))
    return false;
  std::reverse(out.begin(), out.end());
  return true;
}

/// Decodes one store into `sk` (unless !keep: then only the codec state
/// advances); `total` receives its count.
/// A long store (codec 3) that is not needed (!keep) or left for the
/// caller (`lazy`: where it is goes there) is skipped: `skipped` is set and
/// `total` is not known.
bool get_store(bit_reader& r, ddsketch& sk, bool negative, int32_t& prev_first,
               uint64_t limit, uint8_t codec, uint16_t& gap_w, uint16_t& count_w,
               uint16_t& len_w, store_hints hint, bool keep, uint64_t& total,
               bool& skipped, lazy_store* lazy = nullptr) {
  bool v1 = codec == block_codec_v1;
  bool v3 = codec == block_codec;
  total = 0;
  auto bins = r.gamma();
  if (!r.ok() || bins > limit)
    return false;
  if (bins == 0)
    return true;
  // Decoded first, then handed over at once: the store allocates once.
  thread_local std::vector<std::pair<int32_t, uint64_t>> scratch;
  scratch.clear();
  if (v3 && bins >= long_store_bins) {
    auto len = get_adaptive(r, len_w, true);
    auto start = r.pos();
    if (!r.ok() || len > r.left()) {
      r.fail();
      return false;
    }
    lazy_store lz{start, bins, prev_first, hint.first, hint.last, limit};
    if (!keep || lazy) {
      // Not needed (a bucket before the range), or left for the caller:
      // its total is not known then, nor checked (decode() checks every
      // stream in full).
      if (lazy)
        *lazy = lz;
      r.skip_to(start + len);
      skipped = true;
      return true;
    }
    if (!get_long_bins(r, lz, scratch, total) || r.pos() != start + len)
      return false;
    sk.add_bins(negative, scratch.data(), scratch.size());
    return true;
  }
  int64_t prev = 0;
  for (uint64_t b = 0; b < bins; ++b) {
    int64_t i = 0;
    if (b == 0) {
      if (!offset_index(hint.first != no_hint ? hint.first
                                              : int64_t{prev_first},
                        r.gamma(), i))
        return false;
      prev_first = static_cast<int32_t>(i);
    } else if (b + 1 == bins && hint.last != no_hint) {
      if (!offset_index(hint.last, r.gamma(), i) || i <= prev)
        return false;
    } else {
      uint64_t gap = 0;
      if (v1) {
        gap = r.gamma();
      } else {
        gap = get_adaptive(r, gap_w, v3);
      }
      if (gap > uint64_t{1} << 32)
        return false;
      i = prev + 1 + static_cast<int64_t>(gap);
      if (i > std::numeric_limits<int32_t>::max())
        return false;
    }
    uint64_t n = 0;
    if (v1) {
      n = r.gamma() + 1;
    } else {
      n = get_adaptive(r, count_w, v3) + 1;
    }
    if (!r.ok() || n == 0 || n > limit - total)
      return false;
    total += n;
    if (keep)
      scratch.emplace_back(static_cast<int32_t>(i), n);
    prev = i;
  }
  if (!r.ok())
    return false;
  if (keep)
    sk.add_bins(negative, scratch.data(), scratch.size());
  return true;
}

bool is_single(const bucket& b, const ddsketch_mapping& m) {
  auto v = std::bit_cast<uint64_t>(b.last);
  return b.count == 1 && std::bit_cast<uint64_t>(b.sum) == v
         && std::bit_cast<uint64_t>(b.min) == v
         && std::bit_cast<uint64_t>(b.max) == v && b.sketch.is_single(b.last, m);
}

/// Codec 2: the delta to the previous offset, Rice coded.
void put_offset(bit_writer& w, int64_t off, block_state& st) {
  auto z = detail::zigzag(static_cast<int64_t>(
    static_cast<uint64_t>(off) - static_cast<uint64_t>(st.prev_offset)));
  put_adaptive(w, z, st.offset_w);
  st.prev_offset = off;
}

int64_t get_offset(bit_reader& r, block_state& st, bool gamma_fresh) {
  auto z = get_adaptive(r, st.offset_w, gamma_fresh);
  st.prev_offset = static_cast<int64_t>(
    static_cast<uint64_t>(st.prev_offset)
    + static_cast<uint64_t>(detail::unzigzag(z)));
  return st.prev_offset;
}

/// Codec 1: 0 same | 1 1 <w bits> | 1 0 <64 bits>.
int64_t get_offset_v1(bit_reader& r, millis resolution, block_state& st) {
  if (r.bit()) {
    if (r.bit())
      st.prev_offset = static_cast<int64_t>(r.get(offset_width(resolution)));
    else
      st.prev_offset = static_cast<int64_t>(r.get(64));
  }
  return st.prev_offset;
}

/// Codec 3: the width of a restart point's link to the next one.
constexpr unsigned link_bits = 16;

/// Writes `v` into the `n` zero bits at bit `pos` of `data` (a link
/// written as zeros when its restart point was, set when the next one is).
void patch_bits(uint8_t* data, uint64_t pos, uint64_t v, unsigned n) {
  for (unsigned k = 0; k < n; ++k, ++pos)
    if ((v >> (n - 1 - k)) & 1)
      data[pos >> 3] = static_cast<uint8_t>(data[pos >> 3]
                                            | (0x80u >> (pos & 7)));
}

/// Clears the `n` bits at bit `pos` of `data`.
void clear_bits(uint8_t* data, uint64_t pos, unsigned n) {
  for (unsigned k = 0; k < n; ++k, ++pos)
    data[pos >> 3] = static_cast<uint8_t>(data[pos >> 3] & ~(0x80u >> (pos & 7)));
}

} // namespace

block_state initial_block_state(millis first_start, millis resolution) {
  block_state st;
  st.prev_start = first_start - resolution;
  st.prev_delta = 1;
  return st;
}

// -- writing ------------------------------------------------------------------

void bucket_block::append(millis start, const bucket& b, millis resolution,
                          const ddsketch_mapping& m, block_state& st) {
  if (count_ == 0) {
    first_start_ = start;
    st = initial_block_state(start, resolution);
  }
  uint64_t nbits = nbits_;
  bit_writer w{bits_, nbits};
  // Restart points (codec 3): the stream starts with one; a bucket far
  // enough from the current one starts the next, linked from it, with its
  // start in resolutions from the first and a fresh codec state.
  if (count_ == 0) {
    w.put(0, link_bits);
  } else if (nbits - st.restart >= restart_bits) {
    auto dist = nbits - st.restart;
    if (dist < (uint64_t{1} << link_bits))  // else 0: not linked
      patch_bits(bits_.data(), st.restart, dist, link_bits);
    st = initial_block_state(start, resolution);
    st.restart = static_cast<uint32_t>(nbits);
    w.put(0, link_bits);
    w.gamma(static_cast<uint64_t>((start - first_start_) / resolution));
  }
  // Start: delta-of-delta in resolution units.
  auto delta = (start - st.prev_start) / resolution;
  auto dod = delta - st.prev_delta;
  if (dod == 0) {
    w.bit(false);
  } else {
    w.bit(true);
    w.gamma(detail::zigzag(dod));
  }
  st.prev_start = start;
  st.prev_delta = delta;
  auto off = static_cast<int64_t>(static_cast<uint64_t>(b.last_ts)
                                  - static_cast<uint64_t>(start));
  if (is_single(b, m)) {
    w.bit(false);
    put_double(w, b.last, st.last);
    st.sum = st.min = st.max = st.last;
    put_offset(w, off, st);
  } else {
    w.bit(true);
    if (b.count == st.prev_count) {
      w.bit(false);
    } else {
      w.bit(true);
      w.gamma(detail::zigzag(static_cast<int64_t>(b.count - st.prev_count)));
      st.prev_count = b.count;
    }
    put_double(w, b.sum, st.sum);
    put_double(w, b.min, st.min);
    put_double(w, b.max, st.max);
    put_double(w, b.last, st.last);
    put_offset(w, off, st);
    w.gamma(b.sketch.zero_count());
    store_hints h[2];
    hints_of(b, m, h);
    put_store(w, b.sketch.positive(), st.prev_first[0], st.gap_w[0],
              st.count_w[0], st.len_w, h[0]);
    put_store(w, b.sketch.negative(), st.prev_first[1], st.gap_w[1],
              st.count_w[1], st.len_w, h[1]);
  }
  if (nbits > UINT32_MAX)
    throw std::length_error("block stream too large");
  nbits_ = static_cast<uint32_t>(nbits);
  last_start_ = start;
  ++count_;
}

size_t bucket_block::merge(const bucket_change* changes, size_t n,
                           millis resolution, const ddsketch_mapping& m,
                           block_state& st, merge_scratch& scratch) {
  auto& suffix = scratch.suffix;
  millis first = n > 0 ? changes[0].start : std::numeric_limits<millis>::max();
  // Decode from the last restart point before the bucket of `first` (not
  // onto it: the cut needs the state after the bucket before) and keep the
  // buckets from `first` on; the cut is where the first of them begins.
  block_cursor cur{*this, resolution, m};
  if (first != std::numeric_limits<millis>::min())
    cur.seek(first - 1);
  size_t kept = 0;
  uint64_t cut = nbits_;
  block_state cut_state;
  bool cut_found = false;
  for (;;) {
    uint64_t pos = cur.bit_pos();
    block_state before = cur.state();
    if (kept == suffix.size())
      suffix.emplace_back();
    auto& [t, b] = suffix[kept];
    if (!cur.next(t, b, first))
      break;
    if (t < first)
      continue;
    if (!cut_found) {
      cut_found = true;
      cut = pos;
      cut_state = before;
    }
    ++kept;
  }
  if (!cur.ok())
    throw std::logic_error("bucket_block::merge: malformed block");
  if (!cut_found)
    cut_state = cur.state();
  // Cut: the bytes after it go, the bits after it in its byte are cleared,
  // and the restart point before it links nothing (the next one was after
  // the cut; append links it again if one comes).
  count_ -= static_cast<uint32_t>(kept);
  nbits_ = static_cast<uint32_t>(cut);
  bits_.truncate((cut + 7) / 8);
  if (cut & 7)
    bits_.back() = static_cast<uint8_t>(bits_.back() & (0xFF00u >> (cut & 7)));
  if (count_ > 0) {
    last_start_ = cut_state.prev_start;
    clear_bits(bits_.data(), cut_state.restart, link_bits);
  }
  st = cut_state;
  size_t inserted = 0;
  size_t i = 0;
  size_t k = 0;
  while (i < kept || k < n) {
    if (k == n || (i < kept && suffix[i].first < changes[k].start)) {
      append(suffix[i].first, suffix[i].second, resolution, m, st);
      ++i;
      continue;
    }
    if (i < kept && suffix[i].first == changes[k].start)
      ++i;
    else
      ++inserted;
    append(changes[k].start, *changes[k].b, resolution, m, st);
    ++k;
  }
  return inserted;
}

// -- cursor -------------------------------------------------------------------

block_cursor::block_cursor(const bucket_block& blk, millis resolution,
                           const ddsketch_mapping& m, uint8_t codec)
  : blk_(blk), resolution_(resolution), mapping_(m),
    st_(initial_block_state(blk.first_start_, resolution)), codec_(codec),
    v1_(codec == block_codec_v1) {}

void block_cursor::seek(millis from) {
  if (codec_ != block_codec || index_ != 0 || blk_.count_ == 0
      || from <= blk_.first_start_)
    return;
  // Follow the links while the next restart's bucket starts <= from.
  bit_reader r{blk_.bits_.data(), blk_.nbits_, 0};
  uint64_t at = 0;
  for (;;) {
    auto link = r.get(link_bits);
    if (!r.ok() || link == 0)
      break;
    auto next = at + link;
    bit_reader peek{blk_.bits_.data(), blk_.nbits_, next + link_bits};
    auto units = peek.gamma();
    if (!peek.ok() || units > (uint64_t{1} << 40))
      break;
    auto s = blk_.first_start_ + static_cast<millis>(units) * resolution_;
    if (s > from)
      break;
    at = next;
    r = bit_reader{blk_.bits_.data(), blk_.nbits_, at};
  }
  if (at == 0)
    return;
  // Position on the restart point: next() reads its link and start.
  pos_ = at;
  index_ = 1;  // any bucket but the first
  seeked_ = true;
  at_restart_ = true;
}

bool block_cursor::next(millis& start, bucket& b, millis keep_from,
                        bool lazy) {
  lazy_ = false;
  single_ = false;
  if (!ok_ || pos_ >= blk_.nbits_ || (!seeked_ && index_ >= blk_.count_))
    return false;
  bit_reader r{blk_.bits_.data(), blk_.nbits_, pos_};
  if (codec_ == block_codec) {
    if (index_ == 0) {
      r.get(link_bits);
    } else if (at_restart_ || pos_ - st_.restart >= restart_bits) {
      r.get(link_bits);
      auto units = r.gamma();
      if (!r.ok() || units > (uint64_t{1} << 40)) {
        ok_ = false;
        return false;
      }
      auto s = blk_.first_start_ + static_cast<millis>(units) * resolution_;
      if (s <= st_.prev_start && !at_restart_) {
        ok_ = false;
        return false;
      }
      st_ = initial_block_state(s, resolution_);
      st_.restart = static_cast<uint32_t>(pos_);
      at_restart_ = false;
    }
  }
  int64_t delta = st_.prev_delta;
  if (r.bit()) {
    auto dod = detail::unzigzag(r.gamma());
    delta = static_cast<int64_t>(static_cast<uint64_t>(delta)
                                 + static_cast<uint64_t>(dod));
  }
  if (delta <= 0 || delta > (int64_t{1} << 40)) {
    ok_ = false;
    return false;
  }
  start = st_.prev_start + delta * resolution_;
  st_.prev_start = start;
  st_.prev_delta = delta;
  bool keep = start >= keep_from;
  b.sketch.clear();
  if (!r.bit()) {
    auto v = get_double(r, st_.last, codec_);
    // From one copy: a chain of copies through each other stalls on
    // store forwarding (the state's fields were just written).
    const auto last = st_.last;
    st_.sum = last;
    st_.min = last;
    st_.max = last;
    auto off = v1_ ? get_offset_v1(r, resolution_, st_)
                   : get_offset(r, st_, codec_ == block_codec);
    b.count = 1;
    b.sum = b.min = b.max = b.last = v;
    b.last_ts = static_cast<millis>(static_cast<uint64_t>(start)
                                    + static_cast<uint64_t>(off));
    if (keep && lazy)
      lazy_ = single_ = true;
    else if (keep)
      b.sketch.add(v, mapping_);
  } else {
    if (r.bit())
      st_.prev_count += static_cast<uint64_t>(detail::unzigzag(r.gamma()));
    b.count = st_.prev_count;
    b.sum = get_double(r, st_.sum, codec_);
    b.min = get_double(r, st_.min, codec_);
    b.max = get_double(r, st_.max, codec_);
    b.last = get_double(r, st_.last, codec_);
    auto off = v1_ ? get_offset_v1(r, resolution_, st_)
                   : get_offset(r, st_, codec_ == block_codec);
    b.last_ts = static_cast<millis>(static_cast<uint64_t>(start)
                                    + static_cast<uint64_t>(off));
    auto zeros = r.gamma();
    if (!r.ok() || b.count == 0 || zeros > b.count) {
      ok_ = false;
      return false;
    }
    if (keep)
      b.sketch.add_zero(zeros);
    store_hints h[2];
    if (!v1_)
      hints_of(b, mapping_, h);
    uint64_t pos_total = 0, neg_total = 0;
    bool pos_skipped = false, neg_skipped = false;
    lazy_store lz;
    if (!get_store(r, b.sketch, false, st_.prev_first[0], b.count - zeros,
                   codec_, st_.gap_w[0], st_.count_w[0], st_.len_w, h[0],
                   keep, pos_total, pos_skipped, lazy && keep ? &lz : nullptr)
        || !get_store(r, b.sketch, true, st_.prev_first[1],
                      b.count - zeros - (pos_skipped ? 0 : pos_total), codec_,
                      st_.gap_w[1], st_.count_w[1], st_.len_w, h[1], keep,
                      neg_total, neg_skipped)
        || (!pos_skipped && !neg_skipped
            && zeros + pos_total + neg_total != b.count)) {
      ok_ = false;
      return false;
    }
    if (keep && pos_skipped) {
      // Left undecoded for quantile(); with negative values in the bucket
      // the ranks need both stores: decoded now.
      lazy_store_ = lz;
      lazy_ = true;
      if (!b.sketch.negative().empty())
        materialize(b);
    }
  }
  if (!r.ok()) {
    ok_ = false;
    return false;
  }
  pos_ = r.pos();
  ++index_;
  return true;
}

void block_cursor::materialize(bucket& b) {
  if (!lazy_)
    return;
  lazy_ = false;
  if (single_) {
    single_ = false;
    b.sketch.add(b.last, mapping_);
    return;
  }
  thread_local std::vector<std::pair<int32_t, uint64_t>> bins;
  bit_reader r{blk_.bits_.data(), blk_.nbits_, lazy_store_.pos};
  uint64_t total = 0;
  if (!get_long_bins(r, lazy_store_, bins, total)) {
    ok_ = false;
    return;
  }
  b.sketch.add_bins(false, bins.data(), bins.size());
}

double block_cursor::quantile(const bucket& b, double q) const {
  if (!lazy_) {
    return b.sketch.quantile(q, mapping_);
  }
  if (single_) {
    ddsketch one;
    one.add(b.last, mapping_);
    return one.quantile(q, mapping_);
  }
  // ddsketch::quantile over the zero count and the positive store (the
  // negative one is empty here), the store walked from its top.
  auto count = b.count;
  if (count == 0 || !(q >= 0 && q <= 1))
    return std::numeric_limits<double>::quiet_NaN();
  auto rank = static_cast<uint64_t>(std::floor(q * static_cast<double>(count - 1)));
  auto zeros = b.sketch.zero_count();
  if (rank < zeros)
    return 0;
  rank -= zeros;
  auto from_top = count - zeros - 1 - rank;
  bit_reader r{blk_.bits_.data(), blk_.nbits_, lazy_store_.pos};
  uint64_t seen = 0;
  int32_t at = 0;
  (void) walk_long_bins(r, lazy_store_, [&](int32_t i, uint64_t n) {
    seen += n;
    at = i;
    return seen <= from_top;
  });
  return mapping_.value(at);
}

// -- persistence --------------------------------------------------------------

void bucket_block::encode(std::string& out) const {
  detail::put_varint(out, count_);
  detail::put_svarint(out, first_start_);
  detail::put_svarint(out, static_cast<int64_t>(
                             static_cast<uint64_t>(last_start_)
                             - static_cast<uint64_t>(first_start_)));
  detail::put_varint(out, nbits_);
  out.append(reinterpret_cast<const char*>(bits_.data()), (nbits_ + 7) / 8);
}

bool bucket_block::decode(std::string_view& in, millis resolution,
                          const ddsketch_mapping& m, block_state& st,
                          uint8_t codec) {
  if (codec != block_codec && codec != block_codec_v2
      && codec != block_codec_v1)
    return false;
  detail::reader r{in};
  uint64_t count = 0, nbits = 0;
  int64_t first = 0, span = 0;
  std::string_view bytes;
  if (!r.varint(count) || count == 0 || count > in.size() * 8
      || !r.svarint(first) || !r.svarint(span) || !r.varint(nbits)
      || nbits > in.size() * 8 || nbits > UINT32_MAX
      || !r.bytes((nbits + 7) / 8, bytes)
      || align_down(first, resolution) != first)
    return false;
  bucket_block blk;
  blk.count_ = static_cast<uint32_t>(count);
  blk.first_start_ = first;
  blk.last_start_ = static_cast<millis>(static_cast<uint64_t>(first)
                                        + static_cast<uint64_t>(span));
  blk.nbits_ = static_cast<uint32_t>(nbits);
  blk.bits_.assign(reinterpret_cast<const uint8_t*>(bytes.data()),
                   bytes.size());
  // Check every bucket (starts ascending and aligned, counts consistent),
  // that the stream ends where the block says and (codec 3) that every
  // restart point links the next one, as seek() trusts.
  block_cursor cur{blk, resolution, m, codec};
  millis start = 0;
  bucket b;
  uint32_t n = 0;
  // Codecs 1 and 2 are re-encoded as they are read.
  bucket_block fresh;
  block_state fresh_st;
  uint64_t restart = 0;
  while (cur.next(start, b)) {
    if (codec != block_codec)
      fresh.append(start, b, resolution, m, fresh_st);
    if (codec == block_codec && cur.state().restart != restart) {
      auto dist = cur.state().restart - restart;
      bit_reader link{blk.bits_.data(), blk.nbits_, restart};
      if (link.get(link_bits) != (dist < (uint64_t{1} << link_bits) ? dist : 0))
        return false;
      restart = cur.state().restart;
    }
    ++n;
  }
  if (codec == block_codec && n > 0) {
    bit_reader link{blk.bits_.data(), blk.nbits_, restart};
    if (link.get(link_bits) != 0)
      return false;
  }
  if (!cur.ok() || n != count || start != blk.last_start_
      || cur.bit_pos() != nbits)
    return false;
  if (codec != block_codec) {
    fresh.shrink();
    st = fresh_st;
    *this = std::move(fresh);
    return true;
  }
  st = cur.state();
  *this = std::move(blk);
  return true;
}

} // namespace cairn::cqrs
