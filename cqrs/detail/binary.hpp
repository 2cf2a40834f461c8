// Little helpers for the binary encodings of cqrs/ (snapshots, sketches):
// LEB128 varints, zigzag for signed values, raw doubles, and a bounds-checked
// reader that never reads past its input. Internal; not a public API.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace cairn::cqrs::detail {

/// Longest varint of a uint64_t.
inline constexpr size_t max_varint64 = 10;

/// Writes `x` as a varint at `p` (room for max_varint64 bytes); returns the
/// end. For encoders that write into presized memory.
inline char* put_varint(char* p, uint64_t x) noexcept {
  while (x >= 0x80) {
    *p++ = static_cast<char>((x & 0x7f) | 0x80);
    x >>= 7;
  }
  *p++ = static_cast<char>(x);
  return p;
}

/// Decodes one varint from [p, end), advancing p. The one rule for every
/// decoder of cqrs/: at most 10 bytes, and the 10th may hold only the top
/// bit (longer or larger encodings are malformed). False on malformed or
/// truncated input.
inline bool get_varint(const char*& p, const char* end, uint64_t& x) noexcept {
  x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p == end)
      return false;
    auto byte = static_cast<uint8_t>(*p++);
    if (shift == 63 && byte > 1)
      return false;
    x |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0)
      return true;
  }
  return false;
}

inline void put_varint(std::string& out, uint64_t x) {
  while (x >= 0x80) {
    out.push_back(static_cast<char>((x & 0x7f) | 0x80));
    x >>= 7;
  }
  out.push_back(static_cast<char>(x));
}

inline uint64_t zigzag(int64_t x) noexcept {
  return (static_cast<uint64_t>(x) << 1) ^ static_cast<uint64_t>(x >> 63);
}

inline int64_t unzigzag(uint64_t x) noexcept {
  return static_cast<int64_t>(x >> 1) ^ -static_cast<int64_t>(x & 1);
}

inline void put_svarint(std::string& out, int64_t x) {
  put_varint(out, zigzag(x));
}

inline void put_double(std::string& out, double d) {
  auto bits = std::bit_cast<uint64_t>(d);
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>(bits >> (8 * i)));
}

/// Reads from a string_view, advancing it; every getter returns false instead
/// of reading past the end.
struct reader {
  std::string_view& in;

  bool varint(uint64_t& x) {
    const char* p = in.data();
    if (!get_varint(p, in.data() + in.size(), x))
      return false;
    in.remove_prefix(static_cast<size_t>(p - in.data()));
    return true;
  }

  bool svarint(int64_t& x) {
    uint64_t u = 0;
    if (!varint(u))
      return false;
    x = unzigzag(u);
    return true;
  }

  bool f64(double& d) {
    if (in.size() < 8)
      return false;
    uint64_t bits = 0;
    for (int i = 0; i < 8; ++i)
      bits |= static_cast<uint64_t>(static_cast<uint8_t>(in[i])) << (8 * i);
    in.remove_prefix(8);
    d = std::bit_cast<double>(bits);
    return true;
  }

  bool bytes(size_t n, std::string_view& out) {
    if (in.size() < n)
      return false;
    out = in.substr(0, n);
    in.remove_prefix(n);
    return true;
  }
};

} // namespace cairn::cqrs::detail
