#include "cqrs/handoff_delta.hpp"

#include "cqrs/detail/binary.hpp"

namespace cairn::cqrs {

namespace {

constexpr char magic[4] = {'C', 'D', 'L', 'T'};

void put_u32(std::string& out, uint32_t x) {
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>(x >> (8 * i)));
}

uint32_t get_u32(std::string_view in) {
  uint32_t x = 0;
  for (int i = 0; i < 4; ++i)
    x |= static_cast<uint32_t>(static_cast<uint8_t>(in[i])) << (8 * i);
  return x;
}

} // namespace

bool is_handoff_delta(std::string_view bytes) noexcept {
  return bytes.size() >= 4 && bytes.substr(0, 4) == std::string_view{magic, 4};
}

void encode_handoff_delta(uint32_t base_crc,
                          const std::vector<journal_record>& records,
                          std::string& out) {
  auto start = out.size();
  out.append(magic, 4);
  out.push_back(static_cast<char>(handoff_delta_version));
  put_u32(out, base_crc);
  detail::put_varint(out, records.size());
  series_dictionary dict;
  std::string record;
  bool first = true;
  for (auto& r : records) {
    record.clear();
    encode_record(r.accepted_at, r.idempotency_key, r.events, dict, first,
                  record);
    first = false;
    detail::put_varint(out, record.size());
    out += record;
  }
  put_u32(out, crc32c(std::string_view{out}.substr(start)));
}

bool decode_handoff_delta(std::string_view in, uint32_t& base_crc,
                          std::vector<journal_record>& records) {
  constexpr size_t fixed = 4 + 1 + 4;
  if (in.size() < fixed + 1 + 4 || !is_handoff_delta(in))
    return false;
  auto body = in.substr(0, in.size() - 4);
  if (crc32c(body) != get_u32(in.substr(body.size())))
    return false;
  if (static_cast<uint8_t>(body[4]) != handoff_delta_version)
    return false;
  base_crc = get_u32(body.substr(5));
  body.remove_prefix(fixed);
  detail::reader r{body};
  uint64_t count = 0;
  if (!r.varint(count) || count > body.size())
    return false;  // every record takes at least one byte
  records.clear();
  records.reserve(static_cast<size_t>(count));
  series_dictionary dict;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t n = 0;
    std::string_view bytes;
    if (!r.varint(n) || !r.bytes(static_cast<size_t>(n), bytes))
      return false;
    journal_record rec;
    if (decode_record(bytes, rec, dict) != decode_result::ok)
      return false;
    records.push_back(std::move(rec));
  }
  return body.empty();
}

} // namespace cairn::cqrs
