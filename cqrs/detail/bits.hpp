// Bit-level writer and reader for the sealed bucket blocks (cqrs/block.hpp).
//
// Bits are written most significant first into bytes; a writer can be
// resumed on a buffer that ends in a partial byte (the block being filled).
// The reader never reads past `nbits` and reports it through `ok()`.
// Elias-gamma codes for small unsigned numbers (1 bit for 0) and Rice codes
// with an escape for the adaptive fields of block codec 2. Internal.
#pragma once

#include "cqrs/detail/stream_pool.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <utility>
#include <vector>

namespace cairn::cqrs::detail {

/// A Rice quotient of this many ones escapes to an explicit bit width.
constexpr unsigned rice_escape = 16;

/// The bytes of a block's stream in one allocation of the stream pool
/// (detail/stream_pool.hpp: slabs apart from the malloc heap): 16 bytes of
/// handle where std::vector needs 24 (a 1 s tier holds ~8 blocks per
/// series), grown within its size class in place. At most 2^32 - 1 bytes.
class byte_buffer {
public:
  byte_buffer() = default;
  byte_buffer(const byte_buffer& other) { assign(other.data_, other.size_); }
  byte_buffer(byte_buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)), cap_(std::exchange(other.cap_, 0)) {}
  byte_buffer& operator=(const byte_buffer& other) {
    if (this != &other)
      assign(other.data_, other.size_);
    return *this;
  }
  byte_buffer& operator=(byte_buffer&& other) noexcept {
    if (this != &other) {
      stream_free(data_, cap_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
      cap_ = std::exchange(other.cap_, 0);
    }
    return *this;
  }
  ~byte_buffer() { stream_free(data_, cap_); }

  uint8_t* data() noexcept { return data_; }
  const uint8_t* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  size_t capacity() const noexcept { return cap_; }
  uint8_t& back() noexcept { return data_[size_ - 1]; }

  void push_back(uint8_t b) {
    if (size_ == cap_)
      reserve(size_t{size_} + std::max<size_t>(16, size_ / 8));
    data_[size_++] = b;
  }

  /// Drops the bytes from `n` (<= size()) on; the capacity stays.
  void truncate(size_t n) noexcept {
    if (n < size_)
      size_ = static_cast<uint32_t>(n);
  }

  void reserve(size_t n) {
    if (n <= cap_)
      return;
    if (n > UINT32_MAX)
      throw std::length_error("block stream too large");
    resize_to(n);
  }

  void shrink_to_fit() {
    if (cap_ > size_)
      resize_to(size_);
  }

  void assign(const uint8_t* p, size_t n) {
    size_ = 0;
    reserve(n);
    if (n > 0)
      std::memcpy(data_, p, n);
    size_ = static_cast<uint32_t>(n);
    shrink_to_fit();
  }

  friend bool operator==(const byte_buffer& x, const byte_buffer& y) noexcept {
    return x.size_ == y.size_
           && (x.size_ == 0 || std::memcmp(x.data_, y.data_, x.size_) == 0);
  }

private:
  void resize_to(size_t n) {
    if (n == 0) {
      stream_free(data_, cap_);
      data_ = nullptr;
      cap_ = 0;
      return;
    }
    data_ = stream_realloc(data_, cap_, n, size_);
    cap_ = static_cast<uint32_t>(stream_capacity(n));
  }

  uint8_t* data_ = nullptr;
  uint32_t size_ = 0;
  uint32_t cap_ = 0;
};

class bit_writer {
public:
  /// Appends to `buf`, whose first `nbits` bits are in use. The buffer
  /// grows by an eighth at a time, not by doubling: an active block keeps
  /// its slack for as long as it is written to.
  bit_writer(byte_buffer& buf, uint64_t& nbits) : buf_(buf), nbits_(nbits) {}

  /// Writes the low `n` (<= 64) bits of `v`.
  void put(uint64_t v, unsigned n) {
    while (n > 0) {
      unsigned used = static_cast<unsigned>(nbits_ & 7);
      if (used == 0)
        buf_.push_back(0);
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
  byte_buffer& buf_;
  uint64_t& nbits_;
};

class bit_reader {
public:
  bit_reader(const uint8_t* data, uint64_t nbits, uint64_t pos = 0)
    : data_(data), nbits_(nbits), nbytes_((nbits + 7) / 8), pos_(pos) {}

  /// Reads `n` (<= 64) bits; 0 and !ok() past the end.
  uint64_t get(unsigned n) {
    if (pos_ > nbits_ || n > nbits_ - pos_) {
      ok_ = false;
      pos_ = nbits_;
      return 0;
    }
    if (n == 0)
      return 0;
    if (n <= 57) {
      uint64_t w = 0;
      if (window(w)) {
        pos_ += n;
        return w >> (64 - n);
      }
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

  bool bit() {
    if (pos_ >= nbits_) {
      ok_ = false;
      pos_ = nbits_;
      return false;
    }
    bool b = (data_[pos_ >> 3] >> (7 - (pos_ & 7))) & 1;
    ++pos_;
    return b;
  }

  uint64_t gamma() {
    unsigned zeros = 0;
    // The zero prefix at once when the next 57 bits hold it.
    uint64_t w = 0;
    if (window(w) && (w >> 7) != 0) {
      zeros = static_cast<unsigned>(std::countl_zero(w));
      if (zeros < nbits_ - pos_) {
        pos_ += zeros + 1;
      } else {
        zeros = 0;
        while (ok_ && !bit())
          if (++zeros > 64) {
            ok_ = false;
            return 0;
          }
      }
    } else {
      while (ok_ && !bit())
        if (++zeros > 64) {
          ok_ = false;
          return 0;
        }
    }
    uint64_t low = get(zeros);
    uint64_t top = zeros == 64 ? 0 : uint64_t{1} << zeros;
    return (top | low) - 1;
  }

  /// Reads a Rice code written with parameter k (bit_writer::rice).
  uint64_t rice(unsigned k) {
    unsigned q = 0;
    uint64_t w = 0;
    if (window(w)) {
      // The usual case in one load: q ones, the zero and k bits in the
      // window and in the stream.
      q = static_cast<unsigned>(std::countl_one(w));
      unsigned len = q + 1 + k;
      if (q < rice_escape && len <= 57 && len <= nbits_ - pos_) {
        pos_ += len;
        uint64_t low = k == 0 ? 0 : (w << (q + 1)) >> (64 - k);
        return (uint64_t{q} << k) | low;
      }
      // The ones prefix (at most rice_escape) at once.
      q = static_cast<unsigned>(std::countl_one(w));
      if (q > rice_escape)
        q = rice_escape;
      if (q + (q < rice_escape ? 1u : 0u) > nbits_ - pos_) {
        q = 0;
        while (q < rice_escape && bit())
          ++q;
      } else {
        pos_ += q + (q < rice_escape ? 1 : 0);
      }
    } else {
      while (q < rice_escape && bit())
        ++q;
    }
    if (q < rice_escape)
      return (uint64_t{q} << k) | get(k);
    auto width = static_cast<unsigned>(get(6)) + 1;
    return (uint64_t{1} << (width - 1)) | get(width - 1);
  }

  /// Marks the stream malformed.
  void fail() noexcept {
    ok_ = false;
    pos_ = nbits_;
  }

  bool ok() const noexcept { return ok_; }
  uint64_t pos() const noexcept { return pos_; }
  bool at_end() const noexcept { return pos_ >= nbits_; }
  /// Bits left before the end.
  uint64_t left() const noexcept { return nbits_ - pos_; }
  /// Moves to bit `pos` (<= the end, else !ok()).
  void skip_to(uint64_t pos) noexcept {
    if (pos > nbits_)
      fail();
    else
      pos_ = pos;
  }

private:
  /// The next 64 bits from pos_ (at least 57 of them valid), most
  /// significant first, if eight bytes from pos_'s byte lie in the stream;
  /// bits past nbits_ are the stream's padding or the next bytes.
  bool window(uint64_t& w) const noexcept {
    auto byte = pos_ >> 3;
    if (pos_ >= nbits_ || byte + 8 > nbytes_)
      return false;
    uint64_t x = 0;
    std::memcpy(&x, data_ + byte, 8);
    if constexpr (std::endian::native == std::endian::little)
      x = __builtin_bswap64(x);
    w = x << (pos_ & 7);
    return true;
  }

  const uint8_t* data_;
  uint64_t nbits_;
  uint64_t nbytes_;
  uint64_t pos_;
  bool ok_ = true;
};

} // namespace cairn::cqrs::detail
