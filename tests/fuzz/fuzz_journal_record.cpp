// libFuzzer target: the journal record decoders (storage-format.md §2) and
// the handoff delta made of them (§8.1). The input is decoded as it is, and
// also framed as a record of each version, and as a delta, with a correct
// length and CRC (so that the fuzzer reaches the body decoder rather than
// stopping at the checksum). Invariants: no crash or sanitizer report; a
// record or delta that decodes re-encodes to one that decodes to the same
// events.
#include "cqrs/handoff_delta.hpp"
#include "cqrs/journal_record.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace cairn::cqrs;

namespace {

/// Appends the CRC-32C of `out` to it.
std::string with_crc(std::string out) {
  auto crc = crc32c(out);
  char c[4];
  std::memcpy(c, &crc, 4);
  out.append(c, 4);
  return out;
}

std::string frame(uint8_t version, std::string_view body) {
  std::string out;
  out.push_back(static_cast<char>(version));
  auto n = static_cast<uint32_t>(body.size());
  char len[4];
  std::memcpy(len, &n, 4);
  out.append(len, 4);
  out.append(body);
  return with_crc(std::move(out));
}

bool same_events(const journal_record& x, const journal_record& y) {
  if (x.events.size() != y.events.size() || x.accepted_at != y.accepted_at
      || x.idempotency_key != y.idempotency_key)
    return false;
  for (size_t i = 0; i < x.events.size(); ++i) {
    auto& a = x.events.entries[i];
    auto& b = y.events.entries[i];
    if (x.events.key(a) != y.events.key(b) || a.ts != b.ts
        || std::memcmp(&a.value, &b.value, sizeof(double)) != 0)
      return false;
  }
  return true;
}

/// `body` as a delta: magic, version, base crc, then the fuzzer's bytes
/// (record count and records), then the CRC.
std::string delta_frame(std::string_view body) {
  std::string out = "CDLT";
  out.push_back(static_cast<char>(handoff_delta_version));
  out.append(4, '\x07');
  out.append(body);
  return with_crc(std::move(out));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in{reinterpret_cast<const char*>(data), size};
  journal_record rec;
  series_dictionary dict;
  (void) decode_record(in, rec);
  (void) decode_record(in, rec, dict);
  for (uint8_t version : {journal_record_version, journal_record_version_dict}) {
    auto framed = frame(version, in);
    series_dictionary d;
    journal_record r;
    if (decode_record(framed, r, d) != decode_result::ok)
      continue;
    // Round trip through the self-contained encoding.
    std::string again;
    encode_record(r, again);
    journal_record r2;
    if (decode_record(again, r2) != decode_result::ok || !same_events(r, r2))
      std::abort();
  }
  uint32_t base = 0;
  std::vector<journal_record> records;
  if (decode_handoff_delta(delta_frame(in), base, records)) {
    std::string again;
    encode_handoff_delta(base, records, again);
    uint32_t base2 = 0;
    std::vector<journal_record> back;
    if (!decode_handoff_delta(again, base2, back) || base2 != base
        || back.size() != records.size())
      std::abort();
    for (size_t i = 0; i < back.size(); ++i)
      if (!same_events(records[i], back[i]))
        std::abort();
  }
  return 0;
}
