#include "cqrs/journal_record.hpp"

#include "cqrs/detail/binary.hpp"
#include "cqrs/series_key.hpp"

#include <boost/crc.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#  define CAIRN_HAVE_SSE42_CRC 1
#  include <nmmintrin.h>
#endif

namespace cairn::cqrs {

// -- byte helpers (pointer based: the encoder writes into presized memory) --

namespace {

using detail::max_varint64;
using detail::put_varint;
using detail::unzigzag;
using detail::zigzag;

inline char* put_bytes(char* p, std::string_view bytes) noexcept {
  if (!bytes.empty())
    std::memcpy(p, bytes.data(), bytes.size());
  return p + bytes.size();
}

inline char* put_fixed32(char* p, uint32_t x) noexcept {
  for (int i = 0; i < 4; ++i)
    *p++ = static_cast<char>(x >> (8 * i));
  return p;
}

inline char* put_fixed64(char* p, uint64_t x) noexcept {
  for (int i = 0; i < 8; ++i)
    *p++ = static_cast<char>(x >> (8 * i));
  return p;
}

inline uint32_t get_fixed32(const char* p) noexcept {
  uint32_t x = 0;
  for (int i = 3; i >= 0; --i)
    x = (x << 8) | static_cast<uint8_t>(p[i]);
  return x;
}

inline uint64_t get_fixed64(const char* p) noexcept {
  uint64_t x = 0;
  for (int i = 7; i >= 0; --i)
    x = (x << 8) | static_cast<uint8_t>(p[i]);
  return x;
}

/// Bounds-checked cursor over a byte range.
class cursor {
public:
  explicit cursor(std::string_view in) noexcept : in_(in) {}

  size_t remaining() const noexcept { return in_.size() - pos_; }
  size_t position() const noexcept { return pos_; }
  void seek(size_t pos) noexcept { pos_ = pos; }
  void skip(size_t n) noexcept { pos_ += n; }

  bool varint(uint64_t& x) noexcept {
    const char* p = in_.data() + pos_;
    if (!detail::get_varint(p, in_.data() + in_.size(), x))
      return false;
    pos_ = static_cast<size_t>(p - in_.data());
    return true;
  }

  /// Precondition: n <= remaining().
  std::string_view bytes(size_t n) noexcept {
    auto result = in_.substr(pos_, n);
    pos_ += n;
    return result;
  }

  /// Precondition: remaining() >= 8.
  uint64_t fixed64() noexcept {
    auto x = get_fixed64(in_.data() + pos_);
    pos_ += 8;
    return x;
  }

private:
  std::string_view in_;
  size_t pos_ = 0;
};

} // namespace

// -- CRC-32C ------------------------------------------------------------------

namespace {

uint32_t crc32c_portable(std::string_view data, uint32_t crc) noexcept {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> c{
    crc ^ 0xFFFFFFFFu};
  c.process_bytes(data.data(), data.size());
  return c.checksum();
}

#ifdef CAIRN_HAVE_SSE42_CRC
__attribute__((target("sse4.2"))) uint32_t
crc32c_sse42(std::string_view data, uint32_t crc) noexcept {
  uint64_t state = crc ^ 0xFFFFFFFFu;
  auto* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    state = _mm_crc32_u64(state, word);
    p += 8;
    n -= 8;
  }
  auto state32 = static_cast<uint32_t>(state);
  while (n > 0) {
    state32 = _mm_crc32_u8(state32, *p++);
    --n;
  }
  return state32 ^ 0xFFFFFFFFu;
}

bool cpu_has_sse42() noexcept {
  static const bool result = __builtin_cpu_supports("sse4.2");
  return result;
}
#endif

} // namespace

uint32_t crc32c(std::string_view data, uint32_t crc) noexcept {
#ifdef CAIRN_HAVE_SSE42_CRC
  if (cpu_has_sse42())
    return crc32c_sse42(data, crc);
#endif
  return crc32c_portable(data, crc);
}

// -- decode_result ------------------------------------------------------------

std::string_view to_string(decode_result r) noexcept {
  switch (r) {
    case decode_result::ok:
      return "ok";
    case decode_result::bad_checksum:
      return "bad_checksum";
    case decode_result::bad_version:
      return "bad_version";
    case decode_result::truncated:
      return "truncated";
    case decode_result::malformed:
      return "malformed";
  }
  return "unknown";
}

// -- encoding -----------------------------------------------------------------

namespace {

/// Header: version byte + u32 LE body length; trailer: u32 LE CRC-32C.
constexpr size_t header_size = 5;
constexpr size_t trailer_size = 4;

/// Per-thread scratch space of the encoder (reused: no allocation per call
/// once it has grown to the largest batch seen).
struct encoder_scratch {
  std::vector<uint32_t> slots;           ///< open addressing: series index + 1
  std::vector<uint32_t> series_of_event; ///< series index of each event
  std::vector<uint32_t> series_first;    ///< first event of each series
};

encoder_scratch& scratch() {
  thread_local encoder_scratch result;
  return result;
}

size_t table_size_for(size_t n) {
  size_t size = 16;
  while (size < 2 * n)
    size <<= 1;
  return size;
}

/// Checks version, length and checksum of the record in `in`; on ok, `body`
/// is the checksummed body.
decode_result open_envelope(std::string_view in, uint8_t version,
                            std::string_view& body) {
  if (in.size() < header_size)
    return decode_result::truncated;
  if (static_cast<uint8_t>(in[0]) != version)
    return decode_result::bad_version;
  uint64_t body_size = get_fixed32(in.data() + 1);
  if (in.size() < header_size + body_size + trailer_size)
    return decode_result::truncated;
  auto checked = in.substr(0, header_size + body_size);
  auto stored_crc = get_fixed32(in.data() + header_size + body_size);
  if (crc32c(checked) != stored_crc)
    return decode_result::bad_checksum;
  if (in.size() != header_size + body_size + trailer_size)
    return decode_result::malformed;
  body = checked.substr(header_size);
  return decode_result::ok;
}

/// Writes header and CRC trailer around the body that starts at
/// `base + header_size` and ends at `end`, then trims `out` (in which the
/// record starts at `start`).
void close_envelope(uint8_t version, std::string& out, size_t start,
                    char* base, char* end) {
  auto body_size = static_cast<size_t>(end - base) - header_size;
  base[0] = static_cast<char>(version);
  put_fixed32(base + 1, static_cast<uint32_t>(body_size));
  auto crc = crc32c(std::string_view{base, header_size + body_size});
  end = put_fixed32(end, crc);
  out.resize(start + static_cast<size_t>(end - base));
}

/// Grows `out` by `max_size` bytes for a record that starts at `start`
/// (the old size); returns the record's first byte. The caller writes the
/// body after `header_size` bytes and closes it with `close_envelope`.
char* open_record(std::string& out, size_t max_size, size_t& start) {
  start = out.size();
  out.resize(start + max_size);
  return out.data() + start;
}

/// Accepted-at time and idempotency key: the start of every body.
char* write_prologue(char* p, millis accepted_at,
                     std::string_view idempotency_key) noexcept {
  p = put_varint(p, zigzag(accepted_at));
  p = put_varint(p, idempotency_key.size());
  return put_bytes(p, idempotency_key);
}

/// Reads what `write_prologue` wrote.
bool read_prologue(cursor& r, journal_record& out) {
  uint64_t accepted = 0;
  uint64_t len = 0;
  if (!r.varint(accepted) || !r.varint(len) || len > r.remaining())
    return false;
  out.accepted_at = unzigzag(accepted);
  out.idempotency_key.assign(r.bytes(len));
  return true;
}

} // namespace

void encode_record(millis accepted_at, std::string_view idempotency_key,
                   const event_batch& events, std::string& out) {
  const auto n = events.entries.size();
  // Deduplicate series keys (first-appearance order) through a hash table
  // keyed by the precomputed series hash; keys are compared on collision.
  auto& s = scratch();
  s.series_of_event.resize(n);
  s.series_first.clear();
  auto mask = table_size_for(n) - 1;
  s.slots.assign(mask + 1, 0);
  size_t series_bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    const auto& e = events.entries[i];
    auto key = events.key(e);
    auto slot = static_cast<size_t>(e.hash) & mask;
    for (;;) {
      auto idx = s.slots[slot];
      if (idx == 0) {
        s.slots[slot] = static_cast<uint32_t>(s.series_first.size() + 1);
        s.series_of_event[i] = static_cast<uint32_t>(s.series_first.size());
        s.series_first.push_back(static_cast<uint32_t>(i));
        series_bytes += key.size();
        break;
      }
      const auto& first = events.entries[s.series_first[idx - 1]];
      if (first.hash == e.hash && events.key(first) == key) {
        s.series_of_event[i] = idx - 1;
        break;
      }
      slot = (slot + 1) & mask;
    }
  }
  // Worst-case size, written through a raw pointer, then trimmed.
  const auto num_series = s.series_first.size();
  size_t max_size = header_size + max_varint64 + max_varint64
                    + idempotency_key.size() + max_varint64
                    + num_series * max_varint64 + series_bytes + max_varint64
                    + n * (max_varint64 + 16) + trailer_size;
  size_t start = 0;
  char* base = open_record(out, max_size, start);
  char* p = write_prologue(base + header_size, accepted_at, idempotency_key);
  p = put_varint(p, num_series);
  for (auto first : s.series_first) {
    auto key = events.key(events.entries[first]);
    p = put_varint(p, key.size());
    p = put_bytes(p, key);
  }
  p = put_varint(p, n);
  for (size_t i = 0; i < n; ++i) {
    const auto& e = events.entries[i];
    p = put_varint(p, s.series_of_event[i]);
    p = put_fixed64(p, static_cast<uint64_t>(e.ts));
    uint64_t bits;
    std::memcpy(&bits, &e.value, 8);
    p = put_fixed64(p, bits);
  }
  close_envelope(journal_record_version, out, start, base, p);
}

void encode_record(const journal_record& rec, std::string& out) {
  encode_record(rec.accepted_at, rec.idempotency_key, rec.events, out);
}

// -- decoding -----------------------------------------------------------------

decode_result decode_record(std::string_view in, journal_record& out) {
  std::string_view body;
  if (auto r = open_envelope(in, journal_record_version, body);
      r != decode_result::ok)
    return r;
  // The body passed its checksum: from here on, inconsistencies are bugs.
  cursor r{body};
  if (!read_prologue(r, out))
    return decode_result::malformed;
  uint64_t len = 0;
  uint64_t num_series = 0;
  if (!r.varint(num_series) || num_series > r.remaining())
    return decode_result::malformed;
  auto& batch = out.events;
  batch.clear();
  // Series table: offsets into batch.keys, each distinct key stored once.
  thread_local std::vector<event_entry> series;
  series.clear();
  series.reserve(num_series);
  auto table_start = r.position();
  for (uint64_t i = 0; i < num_series; ++i) {
    if (!r.varint(len) || len > r.remaining())
      return decode_result::malformed;
    r.skip(len);
  }
  batch.keys.reserve(r.position() - table_start);
  r.seek(table_start);
  for (uint64_t i = 0; i < num_series; ++i) {
    (void) r.varint(len);
    auto key = r.bytes(len);
    event_entry e;
    e.hash = series_hash(key);
    e.key_offset = static_cast<uint32_t>(batch.keys.size());
    e.key_length = static_cast<uint32_t>(key.size());
    batch.keys.append(key);
    series.push_back(e);
  }
  uint64_t n = 0;
  if (!r.varint(n) || n > r.remaining() / 17)
    return decode_result::malformed;
  batch.entries.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t idx = 0;
    if (!r.varint(idx) || idx >= num_series || r.remaining() < 16)
      return decode_result::malformed;
    auto& e = batch.entries[i];
    e = series[idx];
    e.ts = static_cast<millis>(r.fixed64());
    auto bits = r.fixed64();
    std::memcpy(&e.value, &bits, 8);
  }
  if (r.remaining() != 0)
    return decode_result::malformed;
  return decode_result::ok;
}

// -- version 2: series dictionary ---------------------------------------------

uint32_t series_dictionary::intern(uint64_t hash, std::string_view key,
                                   bool& added) {
  if (2 * (hashes_.size() + 1) > slots_.size())
    rehash(std::max<size_t>(64, 2 * slots_.size()));
  auto mask = slots_.size() - 1;
  for (auto slot = static_cast<size_t>(hash) & mask;; slot = (slot + 1) & mask) {
    auto idx = slots_[slot];
    if (idx == 0) {
      auto id = add(hash, key);
      slots_[slot] = id + 1;
      added = true;
      return id;
    }
    if (hashes_[idx - 1] == hash && this->key(idx - 1) == key)
      return idx - 1;
  }
}

uint32_t series_dictionary::add(uint64_t hash, std::string_view key) {
  auto id = size();
  arena_.append(key);
  offsets_.push_back(static_cast<uint32_t>(arena_.size()));
  hashes_.push_back(hash);
  return id;
}

void series_dictionary::clear() noexcept {
  arena_.clear();
  offsets_.assign(1, 0);
  hashes_.clear();
  std::fill(slots_.begin(), slots_.end(), 0u);
}

void series_dictionary::rehash(size_t slots) {
  slots_.assign(slots, 0);
  auto mask = slots - 1;
  for (uint32_t id = 0; id < size(); ++id) {
    auto slot = static_cast<size_t>(hashes_[id]) & mask;
    while (slots_[slot] != 0)
      slot = (slot + 1) & mask;
    slots_[slot] = id + 1;
  }
}

namespace {

/// Flags byte of a version-2 body.
constexpr uint8_t flag_reset = 0x01;

/// Largest magnitude stored as an integer (exactly representable).
constexpr double max_exact_int = 9007199254740992.0;  // 2^53

/// True if `v` is stored as a zigzag varint: integral, |v| <= 2^53, and not
/// negative zero (which would come back as +0).
inline bool integral(double v, int64_t& i) noexcept {
  if (!(v >= -max_exact_int && v <= max_exact_int))
    return false; // also NaN
  i = static_cast<int64_t>(v);
  return static_cast<double>(i) == v && !(i == 0 && std::signbit(v));
}

} // namespace

void encode_record(millis accepted_at, std::string_view idempotency_key,
                   const event_batch& events, series_dictionary& dict,
                   bool reset, std::string& out) {
  const auto n = events.entries.size();
  if (reset)
    dict.clear();
  // Pass 1: ids (defining new ones) and the bytes of the new keys.
  auto& s = scratch();
  s.series_of_event.resize(n);
  const auto first_new = dict.size();
  for (size_t i = 0; i < n; ++i) {
    const auto& e = events.entries[i];
    bool added = false;
    s.series_of_event[i] = dict.intern(e.hash, events.key(e), added);
  }
  const auto num_new = dict.size() - first_new;
  size_t new_bytes = 0;
  for (auto id = first_new; id < dict.size(); ++id)
    new_bytes += dict.key(id).size();
  // Pass 2: worst-case size, written through a raw pointer, then trimmed.
  size_t max_size = header_size + 1 + 3 * max_varint64 + idempotency_key.size()
                    + max_varint64 + num_new * max_varint64 + new_bytes
                    + max_varint64 + n * (3 * max_varint64) + trailer_size;
  size_t start = 0;
  char* base = open_record(out, max_size, start);
  char* p = base + header_size;
  *p++ = static_cast<char>(reset ? flag_reset : 0);
  p = write_prologue(p, accepted_at, idempotency_key);
  p = put_varint(p, first_new);
  p = put_varint(p, num_new);
  for (auto id = first_new; id < dict.size(); ++id) {
    auto key = dict.key(id);
    p = put_varint(p, key.size());
    p = put_bytes(p, key);
  }
  p = put_varint(p, n);
  millis prev_ts = accepted_at;
  for (size_t i = 0; i < n; ++i) {
    const auto& e = events.entries[i];
    int64_t as_int = 0;
    bool is_int = integral(e.value, as_int);
    p = put_varint(p, (uint64_t{s.series_of_event[i]} << 1) | (is_int ? 1 : 0));
    // Wrapping difference: no overflow whatever the two timestamps are.
    p = put_varint(p, zigzag(static_cast<int64_t>(
                        static_cast<uint64_t>(e.ts)
                        - static_cast<uint64_t>(prev_ts))));
    prev_ts = e.ts;
    if (is_int) {
      p = put_varint(p, zigzag(as_int));
    } else {
      uint64_t bits;
      std::memcpy(&bits, &e.value, 8);
      p = put_fixed64(p, bits);
    }
  }
  close_envelope(journal_record_version_dict, out, start, base, p);
}

decode_result decode_record(std::string_view in, journal_record& out,
                            series_dictionary& dict) {
  if (!in.empty() && static_cast<uint8_t>(in[0]) == journal_record_version)
    return decode_record(in, out);
  std::string_view body;
  if (auto r = open_envelope(in, journal_record_version_dict, body);
      r != decode_result::ok)
    return r;
  // The body passed its checksum: from here on, inconsistencies mean a
  // missing or skipped record before this one (or a bug).
  cursor r{body};
  if (r.remaining() < 1)
    return decode_result::malformed;
  auto flags = static_cast<uint8_t>(r.bytes(1)[0]);
  if ((flags & ~flag_reset) != 0)
    return decode_result::malformed;
  if (flags & flag_reset)
    dict.clear();
  if (!read_prologue(r, out))
    return decode_result::malformed;
  uint64_t first_new = 0;
  uint64_t num_new = 0;
  if (!r.varint(first_new) || first_new != dict.size() || !r.varint(num_new)
      || num_new > r.remaining())
    return decode_result::malformed;
  for (uint64_t i = 0; i < num_new; ++i) {
    uint64_t len = 0;
    if (!r.varint(len) || len > r.remaining())
      return decode_result::malformed;
    auto key = r.bytes(len);
    dict.add(series_hash(key), key);
  }
  uint64_t n = 0;
  if (!r.varint(n) || n > r.remaining() / 3)
    return decode_result::malformed;
  // Each id used gets its key copied into the batch once.
  auto& batch = out.events;
  batch.clear();
  thread_local std::vector<uint32_t> entry_of_id;  // index + 1 in templates
  thread_local std::vector<uint32_t> touched;
  thread_local std::vector<event_entry> templates;
  if (entry_of_id.size() < dict.size())
    entry_of_id.resize(dict.size(), 0);
  templates.clear();
  batch.entries.resize(n);
  auto result = decode_result::ok;
  millis prev_ts = out.accepted_at;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t tagged = 0;
    uint64_t delta = 0;
    if (!r.varint(tagged) || (tagged >> 1) >= dict.size() || !r.varint(delta)) {
      result = decode_result::malformed;
      break;
    }
    auto id = static_cast<uint32_t>(tagged >> 1);
    if (entry_of_id[id] == 0) {
      auto key = dict.key(id);
      event_entry t;
      t.hash = dict.hash(id);
      t.key_offset = static_cast<uint32_t>(batch.keys.size());
      t.key_length = static_cast<uint32_t>(key.size());
      batch.keys.append(key);
      templates.push_back(t);
      touched.push_back(id);
      entry_of_id[id] = static_cast<uint32_t>(templates.size());
    }
    auto& e = batch.entries[i];
    e = templates[entry_of_id[id] - 1];
    prev_ts = static_cast<millis>(static_cast<uint64_t>(prev_ts)
                                  + static_cast<uint64_t>(unzigzag(delta)));
    e.ts = prev_ts;
    if (tagged & 1) {
      uint64_t v = 0;
      if (!r.varint(v)) {
        result = decode_result::malformed;
        break;
      }
      e.value = static_cast<double>(unzigzag(v));
    } else {
      if (r.remaining() < 8) {
        result = decode_result::malformed;
        break;
      }
      auto bits = r.fixed64();
      std::memcpy(&e.value, &bits, 8);
    }
  }
  for (auto id : touched)
    entry_of_id[id] = 0;
  touched.clear();
  if (result == decode_result::ok && r.remaining() != 0)
    result = decode_result::malformed;
  return result;
}

} // namespace cairn::cqrs
