// DDSketch: a mergeable quantile sketch with a relative-error guarantee.
//
// Values are mapped to logarithmic bins: index(v) = ceil(log_gamma(|v|)) with
// gamma = (1 + a) / (1 - a), where `a` is the relative accuracy. Any quantile
// returned lies within a relative error of `a` of the true quantile value
// (Masson, Rim, Lee: "DDSketch", VLDB 2019). Positive and negative values
// have separate stores; values with |v| < min_indexable go to a zero count.
// Two sketches with the same accuracy merge exactly (bin counts add).
//
// Stores are dense arrays of narrow counts (a byte per bin until a count
// passes 255) whenever that is smaller than the sparse form (sorted (index,
// count) pairs), which is kept for wide spreads: a one-event bucket costs a
// byte, an hour of one series' values a few hundred. Not thread-safe: owned by one partition actor at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace cairn::cqrs {

/// The mapping from values to bin indexes, shared by all sketches of one
/// accuracy. Cheap to copy.
class ddsketch_mapping {
public:
  /// `relative_accuracy` in (0, 1), e.g. 0.01 for 1 %.
  explicit ddsketch_mapping(double relative_accuracy = 0.01);

  double relative_accuracy() const noexcept { return accuracy_; }

  /// Bin index of a positive value `v` (v >= min_indexable()).
  int32_t index(double v) const noexcept;

  /// Representative value of bin `i`: within the relative accuracy of every
  /// value mapped to `i`.
  double value(int32_t i) const noexcept;

  /// Smallest magnitude that gets a bin; smaller magnitudes count as zero.
  static constexpr double min_indexable() noexcept { return 1e-9; }

private:
  double accuracy_;
  double gamma_;
  double inv_log_gamma_;
};

class ddsketch {
public:
  /// Adds `v` once. `m` must be the mapping used for every add and merge of
  /// this sketch. NaN and infinities must be filtered by the caller.
  void add(double v, const ddsketch_mapping& m);

  /// Adds a value whose bin is already known: `index` = m.index(|v|),
  /// `negative` = v < 0, `zero` = |v| < min_indexable. Lets the caller
  /// compute the logarithm once for several sketches.
  void add_indexed(int32_t index, bool negative, bool zero);

  /// Adds all counts of `other` (same mapping).
  void merge(const ddsketch& other);

  /// store::prefetch of the store add_indexed(index, negative, zero) would
  /// change.
  void prefetch(int32_t index, bool negative, bool zero) const noexcept {
    if (zero)
      return;
    if (!negative)
      positive_.prefetch(index);
    else if (negative_)
      negative_->prefetch(index);
  }

  /// Number of values added.
  uint64_t count() const noexcept { return count_; }

  /// Values counted as zero (|v| < min_indexable).
  uint64_t zero_count() const noexcept { return zero_count_; }

  /// Adds `n` values to bin `index` of the positive or negative store, or to
  /// the zero count (used by decoders that know the bins).
  void add_bin(bool negative, int32_t index, uint64_t n);
  /// Adds `n` bins (ascending, distinct indexes, counts > 0) to one store:
  /// built in one allocation when the store is empty (decoders).
  void add_bins(bool negative, const std::pair<int32_t, uint64_t>* bins,
                size_t n);
  void add_zero(uint64_t n) {
    count_ += n;
    zero_count_ += n;
  }

  /// Empties the sketch, keeping allocated capacity.
  void clear() noexcept;

  /// True if this sketch holds exactly one value and that value is `v`'s
  /// bin under `m` (what add(v, m) on an empty sketch gives).
  bool is_single(double v, const ddsketch_mapping& m) const noexcept;

  /// The q-quantile (q in [0,1]) by the lower rank definition: the value of
  /// rank floor(q * (count - 1)) in sorted order, within the relative
  /// accuracy. Returns NaN if the sketch is empty.
  double quantile(double q, const ddsketch_mapping& m) const;

  /// Approximate heap bytes held.
  size_t memory_usage() const noexcept;

  /// Appends a compact binary encoding to `out`.
  void encode(std::string& out) const;

  /// Decodes from `in` (advancing it). Returns false on malformed input.
  [[nodiscard]] bool decode(std::string_view& in);

  ddsketch() = default;
  ddsketch(const ddsketch& other);
  ddsketch& operator=(const ddsketch& other);
  ddsketch(ddsketch&&) noexcept = default;
  ddsketch& operator=(ddsketch&&) noexcept = default;

  friend bool operator==(const ddsketch& x, const ddsketch& y);

  /// Sparse-or-dense store of bin counts for one sign. Dense counts are
  /// 1, 2, 4 or 8 bytes wide, widened when a count outgrows them: a bucket's
  /// sketch costs about a byte per bin it spans.
  class store {
  public:
    void add(int32_t index, uint64_t n = 1);
    /// add() for ascending, distinct bins; one allocation if empty.
    void add_sorted(const std::pair<int32_t, uint64_t>* bins, size_t n);
    void clear() noexcept;
    /// Number of non-empty bins.
    size_t bins() const noexcept;
    /// Starts loading the memory add(index) will touch (a store of a cold
    /// bucket: its counts are a cache miss of their own).
    void prefetch(int32_t index) const noexcept;
    void merge(const store& other);
    bool empty() const noexcept { return total_ == 0; }
    uint64_t total() const noexcept { return total_; }
    /// Calls f(index, count) for each non-empty bin in ascending order.
    template <class F>
    void for_each(F&& f) const {
      if (width_ != 0) {
        for (uint32_t i = 0; i < span_; ++i)
          if (auto n = at(i); n != 0)
            f(static_cast<int32_t>(offset_ + static_cast<int32_t>(i)), n);
      } else if (auto* sp = std::get_if<sparse_bins>(&data_)) {
        for (auto& [i, n] : *sp)
          f(i, n);
      }
    }
    /// Index of the bin holding the element of rank `r` (0-based, ascending;
    /// r < total()). Walks from the nearer end: high quantiles cost a few
    /// bins, not the whole store.
    int32_t index_of_rank(uint64_t r) const noexcept;
    size_t memory_usage() const noexcept;
    friend bool operator==(const store& x, const store& y);

  private:
    using sparse_bins = std::vector<std::pair<int32_t, uint64_t>>;
    /// The dense form's counts: up to `inline_bytes` inside the store (a
    /// one-bin store, and any small span of narrow counts, allocates
    /// nothing: a bucket's first value costs no heap), beyond on the heap.
    /// The subset of std::vector<uint8_t> the store uses, in 16 bytes.
    class dense_bins {
    public:
      static constexpr uint32_t inline_bytes = 8;
      dense_bins() noexcept = default;
      dense_bins(size_t n, uint8_t v) { assign(n, v); }
      dense_bins(const dense_bins& o) { copy_from(o); }
      dense_bins(dense_bins&& o) noexcept { steal(o); }
      dense_bins& operator=(const dense_bins& o) {
        if (this != &o)
          copy_from(o);
        return *this;
      }
      dense_bins& operator=(dense_bins&& o) noexcept {
        if (this != &o) {
          release();
          steal(o);
        }
        return *this;
      }
      ~dense_bins() { release(); }
      uint8_t* data() noexcept { return heap() ? u_.ptr : u_.bytes; }
      const uint8_t* data() const noexcept {
        return heap() ? u_.ptr : u_.bytes;
      }
      size_t size() const noexcept { return size_; }
      bool empty() const noexcept { return size_ == 0; }
      /// Heap bytes held (0 while inline).
      size_t heap_bytes() const noexcept { return heap() ? cap_ : 0; }
      /// Keeps the capacity.
      void clear() noexcept { size_ = 0; }
      /// n bytes of v, reusing the capacity.
      void assign(size_t n, uint8_t v);

    private:
      bool heap() const noexcept { return cap_ > inline_bytes; }
      void release() noexcept;
      void steal(dense_bins& o) noexcept;
      void copy_from(const dense_bins& o);
      union {
        uint8_t* ptr;
        uint8_t bytes[inline_bytes];
      } u_{};
      uint32_t size_ = 0;
      uint32_t cap_ = inline_bytes;
    };
    /// The sparse bins (created on first use in the sparse form).
    sparse_bins& sparse();
    const sparse_bins& sparse() const noexcept;
    dense_bins& dense() { return std::get<0>(data_); }
    const dense_bins& dense() const { return std::get<0>(data_); }
    uint64_t at(uint32_t i) const noexcept;
    void put(uint32_t i, uint64_t n) noexcept;
    /// Re-lays the dense counts over [lo, hi) with `width` bytes each.
    void relayout(int64_t lo, int64_t hi, uint8_t width);
    void make_dense(uint8_t width);
    void make_sparse();
    /// Sparse -> dense when the array would be no larger.
    void maybe_dense();
    uint64_t total_ = 0;
    // dense form (width_ != 0): count of bin offset_ + i at byte i * width_
    int32_t offset_ = 0;
    uint32_t span_ = 0;
    uint32_t bins_ = 0;  ///< dense: non-zero counts
    uint8_t width_ = 0;
    // dense form: the counts; sparse form (width_ == 0): bins sorted by
    // index. One of the two, so a store is 56 bytes (checked in
    // ddsketch.cpp).
    std::variant<dense_bins, sparse_bins> data_;
  };

  const store& positive() const noexcept { return positive_; }
  /// The negative values' store (an empty one if there never were any).
  const store& negative() const noexcept;

private:
  uint64_t count_ = 0;
  uint64_t zero_count_ = 0;
  store positive_;
  /// Allocated on the first negative value: most series have none, and a
  /// bucket is smaller without an empty store in it.
  std::unique_ptr<store> negative_;

  store& negative_store();
};

} // namespace cairn::cqrs
