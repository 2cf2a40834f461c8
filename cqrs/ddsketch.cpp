#include "cqrs/ddsketch.hpp"

#include "cqrs/detail/binary.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace cairn::cqrs {

namespace {

/// The sparse form costs about this many bytes per bin (index + count).
constexpr int64_t sparse_bin_bytes = 16;

/// A dense store never spans more bins than this; beyond it the store goes
/// back to sparse. Also keeps garbage input from allocating.
constexpr int64_t max_dense_span = 1 << 16;

/// Bytes a dense count needs to hold `n`.
uint8_t width_for(uint64_t n) noexcept {
  return n <= 0xffu ? 1 : n <= 0xffffu ? 2 : n <= 0xffffffffu ? 4 : 8;
}

/// Dense is used when its array is no larger than the sparse pairs; once
/// dense, the store goes back to sparse only when the array would be twice
/// that (plus a little), so a store does not flip at the boundary.
bool dense_fits(int64_t span, uint8_t width, int64_t bins) noexcept {
  return span <= max_dense_span && span * width <= bins * sparse_bin_bytes;
}

bool dense_stays(int64_t span, uint8_t width, int64_t bins) noexcept {
  return span <= max_dense_span
         && span * width <= 2 * bins * sparse_bin_bytes + 64;
}

} // namespace

// -- mapping ------------------------------------------------------------------

ddsketch_mapping::ddsketch_mapping(double relative_accuracy)
  : accuracy_(relative_accuracy),
    gamma_((1 + relative_accuracy) / (1 - relative_accuracy)),
    inv_log_gamma_(1 / std::log(gamma_)) {
  // Keep the object usable even when misconfigured; config validation is the
  // caller's job.
  if (!(relative_accuracy > 0 && relative_accuracy < 1)) {
    accuracy_ = 0.01;
    gamma_ = 1.01 / 0.99;
    inv_log_gamma_ = 1 / std::log(gamma_);
  }
}

int32_t ddsketch_mapping::index(double v) const noexcept {
  return static_cast<int32_t>(std::ceil(std::log(v) * inv_log_gamma_));
}

double ddsketch_mapping::value(int32_t i) const noexcept {
  // Bin i holds (gamma^(i-1), gamma^i]; this point is within `accuracy_` of
  // both ends.
  return 2 * std::pow(gamma_, i) / (1 + gamma_);
}

// -- store --------------------------------------------------------------------

void ddsketch::store::dense_bins::assign(size_t n, uint8_t v) {
  if (n > cap_) {
    auto* fresh = new uint8_t[n];
    release();
    u_.ptr = fresh;
    cap_ = static_cast<uint32_t>(n);
  }
  size_ = static_cast<uint32_t>(n);
  if (n > 0)
    std::memset(data(), v, n);
}

void ddsketch::store::dense_bins::release() noexcept {
  if (heap())
    delete[] u_.ptr;
  cap_ = inline_bytes;
  size_ = 0;
}

void ddsketch::store::dense_bins::steal(dense_bins& o) noexcept {
  u_ = o.u_;
  size_ = o.size_;
  cap_ = o.cap_;
  o.cap_ = inline_bytes;
  o.size_ = 0;
}

static_assert(sizeof(ddsketch::store) <= 56,
              "a bucket holds two stores; keep them small");

void ddsketch::store::dense_bins::copy_from(const dense_bins& o) {
  assign(o.size_, 0);
  if (o.size_ > 0)
    std::memcpy(data(), o.data(), o.size_);
}

uint64_t ddsketch::store::at(uint32_t i) const noexcept {
  auto* p = std::get<0>(data_).data() + size_t{i} * width_;
  switch (width_) {
    case 1:
      return *p;
    case 2: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      return v;
    }
    case 4: {
      uint32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
    default: {
      uint64_t v;
      std::memcpy(&v, p, 8);
      return v;
    }
  }
}

void ddsketch::store::put(uint32_t i, uint64_t n) noexcept {
  auto* p = std::get<0>(data_).data() + size_t{i} * width_;
  switch (width_) {
    case 1:
      *p = static_cast<uint8_t>(n);
      break;
    case 2: {
      auto v = static_cast<uint16_t>(n);
      std::memcpy(p, &v, 2);
      break;
    }
    case 4: {
      auto v = static_cast<uint32_t>(n);
      std::memcpy(p, &v, 4);
      break;
    }
    default:
      std::memcpy(p, &n, 8);
  }
}

ddsketch::store::sparse_bins& ddsketch::store::sparse() {
  if (data_.index() != 1)
    data_.emplace<1>();
  return std::get<1>(data_);
}

const ddsketch::store::sparse_bins& ddsketch::store::sparse() const noexcept {
  static const sparse_bins none;
  auto* sp = std::get_if<1>(&data_);
  return sp ? *sp : none;
}

void ddsketch::store::relayout(int64_t lo, int64_t hi, uint8_t width) {
  dense_bins fresh(static_cast<size_t>(hi - lo) * width, 0);
  std::swap(fresh, dense());
  auto old_width = width_;
  auto old_offset = offset_;
  auto old_span = span_;
  width_ = width;
  offset_ = static_cast<int32_t>(lo);
  span_ = static_cast<uint32_t>(hi - lo);
  auto shift = static_cast<size_t>(old_offset - lo);
  if (old_width == width) {
    std::memcpy(dense().data() + shift * width, fresh.data(),
                size_t{old_span} * width);
    return;
  }
  for (uint32_t i = 0; i < old_span; ++i) {
    auto* p = fresh.data() + size_t{i} * old_width;
    uint64_t v = 0;
    std::memcpy(&v, p, old_width);  // little-endian: the low bytes
    if (v != 0)
      put(static_cast<uint32_t>(old_offset + static_cast<int64_t>(i) - lo), v);
  }
}

void ddsketch::store::prefetch(int32_t index) const noexcept {
  if (width_ != 0) {
    auto& d = dense();
    int64_t i = int64_t{index} - offset_;
    if (i >= 0 && i < int64_t{span_})
      __builtin_prefetch(d.data() + i * width_);
  } else if (auto* sp = std::get_if<sparse_bins>(&data_); sp && !sp->empty()) {
    // In-order and repeated values hit the back; the rest search from the
    // middle.
    __builtin_prefetch(&sp->back());
    __builtin_prefetch(sp->data() + sp->size() / 2);
  }
}

void ddsketch::store::add(int32_t index, uint64_t n) {
  if (n == 0)
    return;
  if (total_ == 0 && width_ == 0) {
    // The first bin: dense, one count wide.
    width_ = width_for(n);
    offset_ = index;
    span_ = 1;
    bins_ = 1;
    if (auto* d = std::get_if<0>(&data_))
      d->assign(width_, 0);
    else
      data_.emplace<0>(width_, uint8_t{0});
    put(0, n);
    total_ = n;
    return;
  }
  total_ += n;
  if (width_ != 0) {
    int64_t end = int64_t{offset_} + span_;
    if (index >= offset_ && index < end) {
      auto i = static_cast<uint32_t>(index - offset_);
      auto old = at(i);
      auto sum = old + n;  // bin counts never exceed the total (uint64)
      if (width_for(sum) > width_)
        relayout(offset_, end, width_for(sum));
      put(i, sum);
      bins_ += old == 0 ? 1 : 0;
      return;
    }
    // Outside: grow the array (with some room on the growing side, so a
    // rising or falling series of values does not copy it every time), or
    // go sparse if the array would be mostly empty.
    int64_t lo = std::min<int64_t>(offset_, index);
    int64_t hi = std::max<int64_t>(end, int64_t{index} + 1);
    auto width = std::max(width_, width_for(n));
    if (!dense_stays(hi - lo, width, int64_t{bins_} + 1)) {
      total_ -= n;
      make_sparse();
      add(index, n);
      return;
    }
    auto room = std::max<int64_t>((hi - lo) / 8, 4);
    if (index < offset_)
      lo = std::max<int64_t>(lo - room, std::numeric_limits<int32_t>::min());
    else
      hi = std::min<int64_t>(hi + room, int64_t{std::numeric_limits<int32_t>::max()} + 1);
    if (!dense_stays(hi - lo, width, int64_t{bins_} + 1)) {
      lo = std::min<int64_t>(offset_, index);
      hi = std::max<int64_t>(end, int64_t{index} + 1);
    }
    relayout(lo, hi, width);
    put(static_cast<uint32_t>(index - offset_), n);
    ++bins_;
    return;
  }
  // Sparse: in-order and repeated values hit the back or an existing bin.
  auto& sp = sparse();
  if (sp.empty() || sp.back().first < index) {
    if (sp.capacity() == 0)
      sp.reserve(2);
    sp.emplace_back(index, n);
  } else {
    auto it = std::lower_bound(sp.begin(), sp.end(), index,
                               [](auto& p, int32_t i) { return p.first < i; });
    if (it != sp.end() && it->first == index) {
      it->second += n;
      return;
    }
    sp.emplace(it, index, n);
  }
  maybe_dense();
}

void ddsketch::store::add_sorted(const std::pair<int32_t, uint64_t>* bins,
                                 size_t n) {
  if (n == 0)
    return;
  if (total_ != 0) {
    for (size_t k = 0; k < n; ++k)
      add(bins[k].first, bins[k].second);
    return;
  }
  uint64_t largest = 0, total = 0;
  for (size_t k = 0; k < n; ++k) {
    largest = std::max(largest, bins[k].second);
    total += bins[k].second;
  }
  int64_t span = int64_t{bins[n - 1].first} - bins[0].first + 1;
  auto width = width_for(largest);
  total_ = total;
  if (dense_fits(span, width, static_cast<int64_t>(n))) {
    width_ = width;
    offset_ = bins[0].first;
    span_ = static_cast<uint32_t>(span);
    bins_ = static_cast<uint32_t>(n);
    if (auto* d = std::get_if<0>(&data_))
      d->assign(size_t{span_} * width_, 0);
    else
      data_.emplace<0>(size_t{span_} * width_, uint8_t{0});
    for (size_t k = 0; k < n; ++k)
      put(static_cast<uint32_t>(bins[k].first - offset_), bins[k].second);
  } else {
    sparse().assign(bins, bins + n);
  }
}

void ddsketch::store::maybe_dense() {
  auto& sp = sparse();
  if (width_ != 0 || sp.empty())
    return;
  int64_t span = int64_t{sp.back().first} - sp.front().first + 1;
  uint64_t largest = 0;
  if (!dense_fits(span, 1, static_cast<int64_t>(sp.size())))
    return;  // not even one-byte counts would be smaller
  for (auto& bin : sp)
    largest = std::max(largest, bin.second);
  auto width = width_for(largest);
  if (dense_fits(span, width, static_cast<int64_t>(sp.size())))
    make_dense(width);
}

void ddsketch::store::clear() noexcept {
  // Keeps the capacity: decoders reuse one scratch sketch per bucket.
  if (auto* d = std::get_if<0>(&data_))
    d->clear();
  else
    std::get<1>(data_).clear();
  offset_ = 0;
  span_ = 0;
  width_ = 0;
  bins_ = 0;
  total_ = 0;
}

size_t ddsketch::store::bins() const noexcept {
  return width_ != 0 ? bins_ : sparse().size();
}

void ddsketch::store::make_dense(uint8_t width) {
  if (width_ != 0 || sparse().empty())
    return;
  auto sp = std::move(sparse());
  offset_ = sp.front().first;
  span_ = static_cast<uint32_t>(sp.back().first - offset_ + 1);
  width_ = width;
  bins_ = static_cast<uint32_t>(sp.size());
  data_.emplace<0>(size_t{span_} * width_, uint8_t{0});
  for (auto& [i, n] : sp)
    put(static_cast<uint32_t>(i - offset_), n);
}

void ddsketch::store::make_sparse() {
  if (width_ == 0)
    return;
  sparse_bins sp;
  sp.reserve(bins_);
  for (uint32_t i = 0; i < span_; ++i)
    if (auto n = at(i); n != 0)
      sp.emplace_back(offset_ + static_cast<int32_t>(i), n);
  data_.emplace<1>(std::move(sp));
  offset_ = 0;
  span_ = 0;
  width_ = 0;
  bins_ = 0;
}

void ddsketch::store::merge(const store& other) {
  if (other.empty())
    return;
  if (empty()) {
    *this = other;
    return;
  }
  if (width_ != 0 && other.width_ != 0) {
    // Two dense stores: one pass over the other's array, once this one
    // covers its range with wide enough counts.
    int64_t end = int64_t{offset_} + span_;
    int64_t oend = int64_t{other.offset_} + other.span_;
    int64_t lo = std::min<int64_t>(offset_, other.offset_);
    int64_t hi = std::max(end, oend);
    auto width = std::max(width_, other.width_);
    if (dense_stays(hi - lo, width, int64_t{bins_} + other.bins_)) {
      if (lo != offset_ || hi != end || width != width_)
        relayout(lo, hi, width);
      auto base = static_cast<uint32_t>(other.offset_ - offset_);
      for (uint32_t i = 0; i < other.span_; ++i) {
        auto n = other.at(i);
        if (n == 0)
          continue;
        auto old = at(base + i);
        auto sum = old + n;
        if (width_for(sum) > width_)
          relayout(offset_, int64_t{offset_} + span_, width_for(sum));
        put(base + i, sum);
        bins_ += old == 0 ? 1 : 0;
      }
      total_ += other.total_;
      return;
    }
  }
  if (width_ == 0 && other.width_ == 0 && !sparse().empty()
      && other.sparse().size() > 4) {
    // Two sparse stores: one linear merge instead of repeated inserts.
    auto& mine = sparse();
    auto& theirs = other.sparse();
    sparse_bins merged;
    merged.reserve(mine.size() + theirs.size());
    auto a = mine.begin();
    auto b = theirs.begin();
    while (a != mine.end() || b != theirs.end()) {
      if (b == theirs.end() || (a != mine.end() && a->first < b->first))
        merged.push_back(*a++);
      else if (a == mine.end() || b->first < a->first)
        merged.push_back(*b++);
      else {
        merged.emplace_back(a->first, a->second + b->second);
        ++a;
        ++b;
      }
    }
    mine = std::move(merged);
    total_ += other.total_;
    maybe_dense();
    return;
  }
  other.for_each([this](int32_t i, uint64_t n) { add(i, n); });
}

int32_t ddsketch::store::index_of_rank(uint64_t r) const noexcept {
  uint64_t seen = 0;
  if (width_ != 0) {
    // Dense: runs of empty bins (the tails of a bucket's spread, the room
    // left for growth) are skipped eight bytes at a time.
    const uint8_t* d = std::get<0>(data_).data();
    uint32_t per_word = 8 / width_;
    auto zero_word = [&](uint32_t first) {
      uint64_t w = 0;
      std::memcpy(&w, d + size_t{first} * width_, 8);
      return w == 0;
    };
    if (r < total_ / 2) {
      for (uint32_t i = 0; i < span_;) {
        if (i + per_word <= span_ && zero_word(i)) {
          i += per_word;
          continue;
        }
        seen += at(i);
        if (seen > r)
          return offset_ + static_cast<int32_t>(i);
        ++i;
      }
      return 0;
    }
    // From the top: the element of rank r is the (total - 1 - r)-th largest.
    auto from_top = total_ - 1 - r;
    for (uint32_t i = span_; i > 0;) {
      if (i >= per_word && zero_word(i - per_word)) {
        i -= per_word;
        continue;
      }
      --i;
      seen += at(i);
      if (seen > from_top)
        return offset_ + static_cast<int32_t>(i);
    }
    return 0;
  }
  auto& sp = sparse();
  if (r < total_ / 2) {
    for (auto& [i, n] : sp) {
      seen += n;
      if (seen > r)
        return i;
    }
    return 0;
  }
  auto from_top = total_ - 1 - r;
  for (auto it = sp.rbegin(); it != sp.rend(); ++it) {
    seen += it->second;
    if (seen > from_top)
      return it->first;
  }
  return 0;
}

size_t ddsketch::store::memory_usage() const noexcept {
  if (auto* sp = std::get_if<sparse_bins>(&data_))
    return sp->capacity() * sizeof((*sp)[0]);
  return dense().heap_bytes();
}

bool operator==(const ddsketch::store& x, const ddsketch::store& y) {
  if (x.total_ != y.total_)
    return false;
  if (x.width_ == 0 && y.width_ == 0)
    return x.sparse() == y.sparse();
  std::vector<std::pair<int32_t, uint64_t>> xs, ys;
  x.for_each([&](int32_t i, uint64_t n) { xs.emplace_back(i, n); });
  y.for_each([&](int32_t i, uint64_t n) { ys.emplace_back(i, n); });
  return xs == ys;
}

// -- sketch -------------------------------------------------------------------

ddsketch::ddsketch(const ddsketch& other)
  : count_(other.count_), zero_count_(other.zero_count_),
    positive_(other.positive_),
    negative_(other.negative_ ? std::make_unique<store>(*other.negative_)
                              : nullptr) {}

ddsketch& ddsketch::operator=(const ddsketch& other) {
  if (this == &other)
    return *this;
  count_ = other.count_;
  zero_count_ = other.zero_count_;
  positive_ = other.positive_;
  if (other.negative_)
    negative_store() = *other.negative_;
  else
    if (negative_)
    negative_->clear();
  return *this;
}

bool operator==(const ddsketch& x, const ddsketch& y) {
  return x.count_ == y.count_ && x.zero_count_ == y.zero_count_
         && x.positive_ == y.positive_ && x.negative() == y.negative();
}

const ddsketch::store& ddsketch::negative() const noexcept {
  static const store none;
  return negative_ ? *negative_ : none;
}

ddsketch::store& ddsketch::negative_store() {
  if (!negative_)
    negative_ = std::make_unique<store>();
  return *negative_;
}

void ddsketch::add(double v, const ddsketch_mapping& m) {
  auto a = std::fabs(v);
  bool zero = !(a >= ddsketch_mapping::min_indexable());
  add_indexed(zero ? 0 : m.index(a), v < 0, zero);
}

void ddsketch::add_indexed(int32_t index, bool negative, bool zero) {
  ++count_;
  if (zero)
    ++zero_count_;
  else if (negative)
    negative_store().add(index);
  else
    positive_.add(index);
}

void ddsketch::add_bins(bool negative,
                        const std::pair<int32_t, uint64_t>* bins, size_t n) {
  for (size_t k = 0; k < n; ++k)
    count_ += bins[k].second;
  (negative ? negative_store() : positive_).add_sorted(bins, n);
}

void ddsketch::add_bin(bool negative, int32_t index, uint64_t n) {
  count_ += n;
  (negative ? negative_store() : positive_).add(index, n);
}

void ddsketch::clear() noexcept {
  count_ = 0;
  zero_count_ = 0;
  positive_.clear();
  if (negative_)
    negative_->clear();
}

bool ddsketch::is_single(double v, const ddsketch_mapping& m) const noexcept {
  if (count_ != 1)
    return false;
  auto a = std::fabs(v);
  if (!(a >= ddsketch_mapping::min_indexable()))
    return zero_count_ == 1;
  auto& s = v < 0 ? negative() : positive_;
  if (s.total() != 1)
    return false;
  int32_t found = 0;
  s.for_each([&](int32_t i, uint64_t) { found = i; });
  return found == m.index(a);
}

void ddsketch::merge(const ddsketch& other) {
  count_ += other.count_;
  zero_count_ += other.zero_count_;
  positive_.merge(other.positive_);
  if (other.negative_ && !other.negative_->empty())
    negative_store().merge(*other.negative_);
}

double ddsketch::quantile(double q, const ddsketch_mapping& m) const {
  if (count_ == 0 || !(q >= 0 && q <= 1))
    return std::numeric_limits<double>::quiet_NaN();
  auto rank = static_cast<uint64_t>(std::floor(q * static_cast<double>(count_ - 1)));
  // Sorted order: negatives (largest magnitude first), zeros, positives.
  auto neg = negative().total();
  if (rank < neg)
    return -m.value(negative_->index_of_rank(neg - 1 - rank));
  rank -= neg;
  if (rank < zero_count_)
    return 0;
  rank -= zero_count_;
  return m.value(positive_.index_of_rank(rank));
}

size_t ddsketch::memory_usage() const noexcept {
  return positive_.memory_usage()
         + (negative_ ? sizeof(store) + negative_->memory_usage() : 0);
}

// Encoding: varint count, varint zero count, then per store (positive,
// negative) varint number of bins and per bin zigzag index delta + varint
// count. The dense/sparse form is not encoded; decode picks it again.
void ddsketch::encode(std::string& out) const {
  detail::put_varint(out, count_);
  detail::put_varint(out, zero_count_);
  for (auto* s : {&positive_, &negative()}) {
    size_t bins = 0;
    s->for_each([&](int32_t, uint64_t) { ++bins; });
    detail::put_varint(out, bins);
    int64_t prev = 0;
    s->for_each([&](int32_t i, uint64_t n) {
      detail::put_svarint(out, int64_t{i} - prev);
      detail::put_varint(out, n);
      prev = i;
    });
  }
}

bool ddsketch::decode(std::string_view& in) {
  detail::reader r{in};
  ddsketch result;
  if (!r.varint(result.count_) || !r.varint(result.zero_count_))
    return false;
  for (int sign = 0; sign < 2; ++sign) {
    uint64_t bins = 0;
    if (!r.varint(bins) || bins > in.size() / 2)
      return false;
    int64_t prev = 0;
    uint64_t seen = 0;
    thread_local std::vector<std::pair<int32_t, uint64_t>> scratch;
    scratch.clear();
    for (uint64_t b = 0; b < bins; ++b) {
      int64_t delta = 0;
      uint64_t n = 0;
      if (!r.svarint(delta) || !r.varint(n) || n == 0
          || delta > (int64_t{1} << 33) || delta < -(int64_t{1} << 33))
        return false;
      int64_t i = prev + delta;
      if ((b > 0 && delta <= 0) || i < std::numeric_limits<int32_t>::min()
          || i > std::numeric_limits<int32_t>::max()
          || n > result.count_ || seen > result.count_ - n)
        return false;
      scratch.emplace_back(static_cast<int32_t>(i), n);
      seen += n;
      prev = i;
    }
    if (!scratch.empty())
      (sign == 0 ? result.positive_ : result.negative_store())
        .add_sorted(scratch.data(), scratch.size());
  }
  if (result.zero_count_ > result.count_
      || result.positive_.total() + result.negative().total()
           != result.count_ - result.zero_count_)
    return false;
  *this = std::move(result);
  return true;
}

} // namespace cairn::cqrs
