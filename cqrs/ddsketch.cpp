#include "cqrs/ddsketch.hpp"

#include "cqrs/detail/binary.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace cairn::cqrs {

namespace {

/// A sparse store turns dense once it has more bins than this...
constexpr size_t max_sparse_bins = 48;

/// ...provided the dense array would not be much larger than the sparse one.
constexpr int64_t dense_span_factor = 8;

/// A dense store never spans more bins than this (512 KiB); beyond it the
/// store goes back to sparse. Also keeps garbage input from allocating.
constexpr int64_t max_dense_span = 1 << 16;

/// Largest count of a dense bin (dense bins are 32-bit: half the memory of
/// an open bucket's sketch).
constexpr uint64_t dense_max = 0xffffffffu;

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

void ddsketch::store::add(int32_t index, uint64_t n) {
  if (n == 0)
    return;
  total_ += n;
  if (dense_) {
    int64_t end = offset_ + static_cast<int64_t>(counts_.size());
    bool inside = index >= offset_ && index < end;
    if (inside && n <= dense_max && counts_[index - offset_] <= dense_max - n) {
      counts_[index - offset_] += static_cast<uint32_t>(n);
      return;
    }
    int64_t lo = std::min<int64_t>(offset_, index);
    int64_t hi = std::max<int64_t>(end, int64_t{index} + 1);
    if (inside || n > dense_max || hi - lo > max_dense_span) {
      // A bin count beyond 32 bits or a pathological spread: fall back to
      // the sparse form (64-bit counts).
      total_ -= n;
      make_sparse();
      add(index, n);
      return;
    }
    if (index < offset_)
      counts_.insert(counts_.begin(), static_cast<size_t>(offset_ - index), 0);
    else
      counts_.resize(static_cast<size_t>(hi - lo), 0);
    offset_ = static_cast<int32_t>(lo);
    counts_[index - offset_] = static_cast<uint32_t>(n);
    return;
  }
  // Sparse: in-order and repeated values hit the back or an existing bin.
  auto it = sparse_.end();
  if (sparse_.empty() || sparse_.back().first < index) {
    if (sparse_.capacity() == 0)
      sparse_.reserve(2);
    sparse_.emplace_back(index, n);
  } else {
    it = std::lower_bound(sparse_.begin(), sparse_.end(), index,
                          [](auto& p, int32_t i) { return p.first < i; });
    if (it->first == index) {
      it->second += n;
      return;
    }
    sparse_.emplace(it, index, n);
  }
  if (sparse_.size() > max_sparse_bins) {
    int64_t span = int64_t{sparse_.back().first} - sparse_.front().first + 1;
    if (span <= dense_span_factor * static_cast<int64_t>(sparse_.size()))
      make_dense();
  }
}

void ddsketch::store::clear() noexcept {
  if (dense_) {
    counts_.clear();
    counts_.shrink_to_fit();
    offset_ = 0;
    dense_ = false;
  }
  sparse_.clear();
  total_ = 0;
}

size_t ddsketch::store::bins() const noexcept {
  if (!dense_)
    return sparse_.size();
  size_t n = 0;
  for (auto c : counts_)
    n += c != 0 ? 1 : 0;
  return n;
}

void ddsketch::store::make_dense() {
  if (dense_ || sparse_.empty())
    return;
  for (auto& bin : sparse_)
    if (bin.second > dense_max)
      return;  // dense bins hold 32-bit counts
  offset_ = sparse_.front().first;
  counts_.assign(static_cast<size_t>(sparse_.back().first - offset_ + 1), 0);
  for (auto& [i, n] : sparse_)
    counts_[i - offset_] = static_cast<uint32_t>(n);
  sparse_.clear();
  sparse_.shrink_to_fit();
  dense_ = true;
}

void ddsketch::store::make_sparse() {
  if (!dense_)
    return;
  sparse_.clear();
  for (size_t i = 0; i < counts_.size(); ++i)
    if (counts_[i] != 0)
      sparse_.emplace_back(offset_ + static_cast<int32_t>(i), counts_[i]);
  counts_.clear();
  counts_.shrink_to_fit();
  offset_ = 0;
  dense_ = false;
}

void ddsketch::store::merge(const store& other) {
  if (other.empty())
    return;
  if (empty() && !dense_) {
    *this = other;
    return;
  }
  if (!dense_ && !other.dense_ && !sparse_.empty()
      && other.sparse_.size() > 4) {
    // Two sparse stores: one linear merge instead of repeated inserts (a
    // few bins, such as a 1 s bucket's, are inserted in place: no new
    // vector per merge).
    std::vector<std::pair<int32_t, uint64_t>> merged;
    merged.reserve(sparse_.size() + other.sparse_.size());
    auto a = sparse_.begin();
    auto b = other.sparse_.begin();
    while (a != sparse_.end() || b != other.sparse_.end()) {
      if (b == other.sparse_.end()
          || (a != sparse_.end() && a->first < b->first))
        merged.push_back(*a++);
      else if (a == sparse_.end() || b->first < a->first)
        merged.push_back(*b++);
      else {
        merged.emplace_back(a->first, a->second + b->second);
        ++a;
        ++b;
      }
    }
    sparse_ = std::move(merged);
    total_ += other.total_;
    if (sparse_.size() > max_sparse_bins) {
      int64_t span = int64_t{sparse_.back().first} - sparse_.front().first + 1;
      if (span <= dense_span_factor * static_cast<int64_t>(sparse_.size()))
        make_dense();
    }
    return;
  }
  other.for_each([this](int32_t i, uint64_t n) { add(i, n); });
}

int32_t ddsketch::store::index_of_rank(uint64_t r) const noexcept {
  uint64_t seen = 0;
  if (r < total_ / 2) {
    int32_t found = 0;
    bool done = false;
    for_each([&](int32_t i, uint64_t n) {
      if (done)
        return;
      seen += n;
      if (seen > r) {
        found = i;
        done = true;
      }
    });
    return found;
  }
  // From the top: the element of rank r is the (total - 1 - r)-th largest.
  auto from_top = total_ - 1 - r;
  if (dense_) {
    for (size_t i = counts_.size(); i-- > 0;) {
      seen += counts_[i];
      if (seen > from_top)
        return offset_ + static_cast<int32_t>(i);
    }
  } else {
    for (auto it = sparse_.rbegin(); it != sparse_.rend(); ++it) {
      seen += it->second;
      if (seen > from_top)
        return it->first;
    }
  }
  return 0;
}

size_t ddsketch::store::memory_usage() const noexcept {
  return sparse_.capacity() * sizeof(sparse_[0])
         + counts_.capacity() * sizeof(uint32_t);
}

bool operator==(const ddsketch::store& x, const ddsketch::store& y) {
  if (x.total_ != y.total_)
    return false;
  if (!x.dense_ && !y.dense_)
    return x.sparse_ == y.sparse_;
  std::vector<std::pair<int32_t, uint64_t>> xs, ys;
  x.for_each([&](int32_t i, uint64_t n) { xs.emplace_back(i, n); });
  y.for_each([&](int32_t i, uint64_t n) { ys.emplace_back(i, n); });
  return xs == ys;
}

// -- sketch -------------------------------------------------------------------

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
    negative_.add(index);
  else
    positive_.add(index);
}

void ddsketch::add_bin(bool negative, int32_t index, uint64_t n) {
  count_ += n;
  (negative ? negative_ : positive_).add(index, n);
}

void ddsketch::clear() noexcept {
  count_ = 0;
  zero_count_ = 0;
  positive_.clear();
  negative_.clear();
}

bool ddsketch::is_single(double v, const ddsketch_mapping& m) const noexcept {
  if (count_ != 1)
    return false;
  auto a = std::fabs(v);
  if (!(a >= ddsketch_mapping::min_indexable()))
    return zero_count_ == 1;
  auto& s = v < 0 ? negative_ : positive_;
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
  negative_.merge(other.negative_);
}

double ddsketch::quantile(double q, const ddsketch_mapping& m) const {
  if (count_ == 0 || !(q >= 0 && q <= 1))
    return std::numeric_limits<double>::quiet_NaN();
  auto rank = static_cast<uint64_t>(std::floor(q * static_cast<double>(count_ - 1)));
  // Sorted order: negatives (largest magnitude first), zeros, positives.
  auto neg = negative_.total();
  if (rank < neg)
    return -m.value(negative_.index_of_rank(neg - 1 - rank));
  rank -= neg;
  if (rank < zero_count_)
    return 0;
  rank -= zero_count_;
  return m.value(positive_.index_of_rank(rank));
}

size_t ddsketch::memory_usage() const noexcept {
  return positive_.memory_usage() + negative_.memory_usage();
}

// Encoding: varint count, varint zero count, then per store (positive,
// negative) varint number of bins and per bin zigzag index delta + varint
// count. The dense/sparse form is not encoded; decode picks it again.
void ddsketch::encode(std::string& out) const {
  detail::put_varint(out, count_);
  detail::put_varint(out, zero_count_);
  for (auto* s : {&positive_, &negative_}) {
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
  for (auto* s : {&result.positive_, &result.negative_}) {
    uint64_t bins = 0;
    if (!r.varint(bins) || bins > in.size() / 2)
      return false;
    int64_t prev = 0;
    for (uint64_t b = 0; b < bins; ++b) {
      int64_t delta = 0;
      uint64_t n = 0;
      if (!r.svarint(delta) || !r.varint(n) || n == 0
          || delta > (int64_t{1} << 33) || delta < -(int64_t{1} << 33))
        return false;
      int64_t i = prev + delta;
      if ((b > 0 && delta <= 0) || i < std::numeric_limits<int32_t>::min()
          || i > std::numeric_limits<int32_t>::max()
          || n > result.count_ || s->total() > result.count_ - n)
        return false;
      s->add(static_cast<int32_t>(i), n);
      prev = i;
    }
  }
  if (result.zero_count_ > result.count_
      || result.positive_.total() + result.negative_.total()
           != result.count_ - result.zero_count_)
    return false;
  *this = std::move(result);
  return true;
}

} // namespace cairn::cqrs
