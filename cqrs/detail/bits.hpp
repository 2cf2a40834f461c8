// Bit-level writer and reader for the sealed bucket blocks (cqrs/block.hpp).
//
// Bits are written most significant first into bytes; a writer can be
// resumed on a buffer that ends in a partial byte (the block being filled).
// The reader never reads past `nbits` and reports it through `ok()`.
// Elias-gamma codes for small unsigned numbers (1 bit for 0) and Rice codes
// with an escape for the adaptive fields of block codec 2. Internal.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

namespace cairn::cqrs::detail {

/// A Rice quotient of this many ones escapes to an explicit bit width.
constexpr unsigned rice_escape = 16;

class bit_writer {
public:
  /// Appends to `buf`, whose first `nbits` bits are in use. The buffer
  /// grows by an eighth at a time, not by doubling: an active block keeps
  /// its slack for as long as it is written to.
  bit_writer(std::vector<uint8_t>& buf, uint64_t& nbits)
    : buf_(buf), nbits_(nbits) {}

  /// Writes the low `n` (<= 64) bits of `v`.
  void put(uint64_t v, unsigned n) {
    while (n > 0) {
      unsigned used = static_cast<unsigned>(nbits_ & 7);
      if (used == 0) {
        if (buf_.size() == buf_.capacity())
          buf_.reserve(buf_.size() + std::max<size_t>(16, buf_.size() / 8));
        buf_.push_back(0);
      }
      unsigned room = 8 - used;
      unsigned take = room < n ? room : n;
      auto chunk = static_cast<unsigned>((v >> (n - take)) & ((1u << take) - 1));
      buf_.back() = static_cast<uint8_t>(buf_.back() | (chunk << (room - take)));
      n -= take;
      nbits_ += take;
    }
  }

  void bit(bool b) { put(b ? 1 : 0, 1); }

  /// Elias gamma of x + 1: 2 * bit_width(x + 1) - 1 bits; every uint64_t.
  void gamma(uint64_t x) {
    uint64_t y = x + 1;
    unsigned n = y == 0 ? 65 : static_cast<unsigned>(std::bit_width(y));
    put(0, n - 1);
    put(1, 1);
    put(y, n - 1);  // y's low n - 1 bits (all 64 when x + 1 wrapped)
  }

  /// Rice code of z with parameter k (< 64): q = z >> k ones and a zero,
  /// then the k low bits of z. q >= rice_escape is written as rice_escape
  /// ones, 6 bits of bit_width(z) - 1 and the bits of z below its top bit.
  void rice(uint64_t z, unsigned k) {
    uint64_t q = z >> k;
    if (q < rice_escape) {
      put((uint64_t{1} << (q + 1)) - 2, static_cast<unsigned>(q) + 1);
      put(z, k);
      return;
    }
    auto w = static_cast<unsigned>(std::bit_width(z));
    put((uint64_t{1} << rice_escape) - 1, rice_escape);
    put(w - 1, 6);
    put(z, w - 1);
  }

private:
  std::vector<uint8_t>& buf_;
  uint64_t& nbits_;
};

class bit_reader {
public:
  bit_reader(const uint8_t* data, uint64_t nbits, uint64_t pos = 0)
    : data_(data), nbits_(nbits), pos_(pos) {}

  /// Reads `n` (<= 64) bits; 0 and !ok() past the end.
  uint64_t get(unsigned n) {
    if (pos_ > nbits_ || n > nbits_ - pos_) {
      ok_ = false;
      pos_ = nbits_;
      return 0;
    }
    uint64_t v = 0;
    while (n > 0) {
      unsigned used = static_cast<unsigned>(pos_ & 7);
      unsigned room = 8 - used;
      unsigned take = room < n ? room : n;
      unsigned byte = data_[pos_ >> 3];
      v = (v << take) | ((byte >> (room - take)) & ((1u << take) - 1));
      n -= take;
      pos_ += take;
    }
    return v;
  }

  bool bit() { return get(1) != 0; }

  uint64_t gamma() {
    unsigned zeros = 0;
    while (ok_ && !bit())
      if (++zeros > 64) {
        ok_ = false;
        return 0;
      }
    uint64_t low = get(zeros);
    uint64_t top = zeros == 64 ? 0 : uint64_t{1} << zeros;
    return (top | low) - 1;
  }

  /// Reads a Rice code written with parameter k (bit_writer::rice).
  uint64_t rice(unsigned k) {
    unsigned q = 0;
    while (q < rice_escape && bit())
      ++q;
    if (q < rice_escape)
      return (uint64_t{q} << k) | get(k);
    auto w = static_cast<unsigned>(get(6)) + 1;
    return (uint64_t{1} << (w - 1)) | get(w - 1);
  }

  /// Marks the stream malformed.
  void fail() noexcept {
    ok_ = false;
    pos_ = nbits_;
  }

  bool ok() const noexcept { return ok_; }
  uint64_t pos() const noexcept { return pos_; }
  bool at_end() const noexcept { return pos_ >= nbits_; }

private:
  const uint8_t* data_;
  uint64_t nbits_;
  uint64_t pos_;
  bool ok_ = true;
};

} // namespace cairn::cqrs::detail
