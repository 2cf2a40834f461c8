// block: an immutable, compressed run of sealed buckets of one series in one
// tier (docs/storage-format.md, "Sealed bucket blocks").
//
// Buckets are appended in ascending start order to a bit stream:
//   - starts as delta-of-delta in units of the tier resolution (1 bit when
//     buckets are consecutive),
//   - a one-event bucket (count 1, sum = min = max = last, the sketch being
//     the value's bin) as its value and the offset of its timestamp only,
//   - other buckets: count (1 bit when equal to the previous one), sum, min,
//     max, last, the last timestamp's offset and the sketch bins (zero count,
//     then per sign the number of bins, the first index relative to the
//     previous bucket's, gaps and counts, all Elias-gamma coded),
//   - doubles either as decimals (the value is exactly n / 10^e, e < 8: n is
//     delta-coded against the previous decimal of the same field) or, when
//     not, XOR-compressed against the previous value of the field (Gorilla).
// Codec 2 codes the decimal deltas, the timestamp offsets (as deltas to the
// previous offset), the sketch gaps and bin counts with Rice codes whose
// parameter follows a running mean of the recent values' bit widths, and a
// sketch store's first and last bin against the bins of the bucket's min
// and max. Codec 3 (what is written) is codec 2 with restart points: the
// stream starts with one, and a bucket that begins `restart_bits` or more
// after the current one starts the next (its absolute start, then coded
// from a fresh state); each restart point holds the distance to the next,
// so a range query seeks to the last restart at or before its `from` and
// decodes only the buckets from there (docs/storage-format.md, 3.2).
// Codecs 1 (6-bit widths, fixed-width offsets, gamma gaps and counts, no
// bin hints) and 2 are still read, for snapshots written before them, and
// re-encoded with codec 3 when decoded.
// Decoding is exact for every double bit pattern (NaN, infinities, -0.0,
// denormals) and every count.
//
// The codec state after the last bucket (`block_state`) is what the next
// append continues from; the active block of a tier keeps it, finished
// blocks drop it. A `block_cursor` walks a block bucket by bucket without
// materialising the others. Pure values; not thread-safe.
#pragma once

#include "cqrs/bucket.hpp"
#include "cqrs/ddsketch.hpp"
#include "cqrs/detail/bits.hpp"
#include "cqrs/time.hpp"

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cairn::cqrs {

/// The block codec written (docs/storage-format.md, 3.2); 1 and 2 are still
/// read.
constexpr uint8_t block_codec = 3;
constexpr uint8_t block_codec_v1 = 1;
constexpr uint8_t block_codec_v2 = 2;

/// Codec 3: a bucket starting this many bits or more after the current
/// restart point starts a new one. A restart costs its 16-bit link, the
/// start and the fresh codec state (~100 bits for a bucket of many
/// events): 4096 gives a coarse tier's block of 60-event buckets a restart
/// every ~16 buckets and a fine tier's block of one-event buckets none.
constexpr uint32_t restart_bits = 4096;

/// Per-field state of the double coder.
struct double_state {
  uint64_t bits = 0;   ///< previous value's bit pattern
  int64_t n = 0;       ///< previous decimal mantissa
  uint8_t e = 0;       ///< previous decimal exponent
  uint8_t lead = 0;    ///< XOR window: leading zeros
  uint8_t len = 0;     ///< XOR window: meaningful bits (0 = no window yet)
  uint16_t w = 0;      ///< codec 2: 4 x running mean bit width of the deltas
  bool operator==(const double_state&) const = default;
};

/// Codec state between two buckets of a block.
struct block_state {
  millis prev_start = 0;
  int64_t prev_delta = 1;  ///< in resolution units
  uint64_t prev_count = 1;
  int64_t prev_offset = 0; ///< last_ts - start
  double_state sum, min, max, last;
  int32_t prev_first[2] = {0, 0};  ///< first bin index, positive/negative
  /// Codec 2: 4 x running mean bit width of the offset deltas, the bin gaps
  /// and the bin counts (per store) - what picks their Rice parameters.
  uint16_t offset_w = 0;
  uint16_t gap_w[2] = {0, 0};
  uint16_t count_w[2] = {0, 0};
  /// Codec 3: the same for the bit lengths of long stores (one context for
  /// both signs: the state stays 152 bytes, one per series and tier).
  uint16_t len_w = 0;
  /// Codec 3: bit position of the current restart point.
  uint32_t restart = 0;
  bool operator==(const block_state&) const = default;
};

/// Codec 3: a store of this many bins or more is a long one: self-contained,
/// its length first, its top bin first (docs/storage-format.md, 3.2).
constexpr uint64_t long_store_bins = 16;

namespace detail {

/// Where a long positive store was left undecoded (block_cursor, lazy).
struct lazy_store {
  uint64_t pos = 0;
  uint64_t bins = 0;
  int32_t prev_first = 0;
  int64_t hint_first = 0;
  int64_t hint_last = 0;
  uint64_t limit = 0;
};

} // namespace detail

/// A bucket to merge into a block (bucket_block::merge): it replaces the
/// bucket of the same start or is inserted.
struct bucket_change {
  millis start = 0;
  const bucket* b = nullptr;
};

/// The buckets merge() decodes, kept between calls so that their sketches'
/// storage is reused.
struct merge_scratch {
  std::vector<std::pair<millis, bucket>> suffix;
};

class bucket_block {
public:
  /// An empty block; the first append fixes its first start.
  bucket_block() = default;

  // -- writing ----------------------------------------------------------------

  /// Appends bucket `b` starting at `start` (> last_start(), aligned to
  /// `resolution`, b.count > 0); `st` is the state after the last bucket
  /// (or fresh for an empty block) and is advanced.
  void append(millis start, const bucket& b, millis resolution,
              const ddsketch_mapping& m, block_state& st);

  /// Merges `n` changes (ascending, distinct starts; each one's count > 0)
  /// into the block and sets `st` to the state after its last bucket.
  /// Only the buckets from the first change on are encoded again: the
  /// stream is cut before the first bucket at or after it, whose codec
  /// state comes from decoding the buckets since the last restart point
  /// before it (without their sketches). The result is bit for bit the
  /// block that appending every bucket afresh would give. Returns the
  /// number of changes inserted (not replacing a bucket).
  size_t merge(const bucket_change* changes, size_t n, millis resolution,
               const ddsketch_mapping& m, block_state& st,
               merge_scratch& scratch);

  /// Releases spare capacity (a finished block).
  void shrink() { bits_.shrink_to_fit(); }

  // -- properties -------------------------------------------------------------

  uint32_t size() const noexcept { return count_; }
  bool empty() const noexcept { return count_ == 0; }
  millis first_start() const noexcept { return first_start_; }
  millis last_start() const noexcept { return last_start_; }
  uint64_t bit_count() const noexcept { return nbits_; }
  /// A block stops taking appends well before its stream reaches the
  /// 2^32 - 1 bits it can hold.
  bool full() const noexcept { return nbits_ >= (uint32_t{1} << 30); }
  /// Heap bytes of the bit stream (capacity).
  size_t memory_usage() const noexcept { return bits_.capacity(); }

  // -- persistence ------------------------------------------------------------

  /// Appends the block as it is: varint count, svarint first start, svarint
  /// last start - first start, varint bit count, the stream bytes.
  void encode(std::string& out) const;

  /// Decodes an encoded block from `in` (advancing it) and checks it by
  /// decoding every bucket; `st` receives the state after the last one.
  /// A block of codec 1 or 2 is re-encoded with codec 3 (the same buckets).
  /// Returns false on malformed input.
  [[nodiscard]] bool decode(std::string_view& in, millis resolution,
                            const ddsketch_mapping& m, block_state& st,
                            uint8_t codec = block_codec);

  bool operator==(const bucket_block&) const = default;

private:
  friend class block_cursor;
  millis first_start_ = 0;
  millis last_start_ = 0;
  detail::byte_buffer bits_;
  uint32_t count_ = 0;
  uint32_t nbits_ = 0;
};

/// Walks the buckets of a block in order.
class block_cursor {
public:
  block_cursor(const bucket_block& blk, millis resolution,
               const ddsketch_mapping& m, uint8_t codec = block_codec);

  /// Decodes the next bucket into (start, b), reusing b's storage. Returns
  /// false at the end or on a malformed stream (then ok() is false). A
  /// bucket starting before `keep_from` is decoded for the codec state only:
  /// `start` is set, `b` is not (its sketch is left empty and its fields
  /// hold no meaning).
  /// `lazy` (codec 3): a long positive store (of a bucket without negative
  /// values) is left undecoded: then lazy() is true, b.sketch holds only the
  /// zero count, and the caller asks quantile() or calls materialize().
  /// `lazy` (any codec): a one-event bucket's sketch is left empty: then
  /// single() and lazy() are true, and its one value is b.last (a reader
  /// folds it into a sketch of its own without building this one).
  bool next(millis& start, bucket& b,
            millis keep_from = std::numeric_limits<millis>::min(),
            bool lazy = false);

  /// True if the last next() left b's positive store undecoded.
  bool lazy() const noexcept { return lazy_; }

  /// True if the last next() left a one-event bucket's sketch empty.
  bool single() const noexcept { return single_; }

  /// Decodes the store next() left undecoded into `b` (the bucket that
  /// next() filled); nothing if !lazy().
  void materialize(bucket& b);

  /// b.sketch.quantile(q) of the bucket next() filled, as if materialized:
  /// a high quantile reads a few bins from the top of the store only.
  double quantile(const bucket& b, double q) const;

  /// Before the first next(): moves to the last restart point whose bucket
  /// starts at or before `from` (codec 3; other codecs have none), so the
  /// buckets before it are not decoded at all. Buckets in [restart, from)
  /// still come out of next(); pass `from` as its keep_from to skip their
  /// sketches.
  void seek(millis from);

  bool ok() const noexcept { return ok_; }
  /// Bits consumed so far.
  uint64_t bit_pos() const noexcept { return pos_; }
  /// The state after the last bucket decoded.
  const block_state& state() const noexcept { return st_; }

private:
  const bucket_block& blk_;
  millis resolution_;
  const ddsketch_mapping& mapping_;
  block_state st_;
  uint64_t pos_ = 0;
  uint32_t index_ = 0;
  uint8_t codec_;
  bool ok_ = true;
  bool lazy_ = false;
  bool single_ = false;
  detail::lazy_store lazy_store_;
  bool seeked_ = false;      ///< seek() moved: the end is the stream's
  bool at_restart_ = false;  ///< seek() moved onto a restart point
  bool v1_ = false;
};

/// The state a fresh block starting at `first_start` begins with.
block_state initial_block_state(millis first_start, millis resolution);

} // namespace cairn::cqrs
