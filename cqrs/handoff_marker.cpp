#include "cqrs/handoff_marker.hpp"

#include "cqrs/detail/binary.hpp"
#include "cqrs/journal_record.hpp"

namespace cairn::cqrs {

void encode_handoff_marker(const handoff_marker& m, std::string& out) {
  auto start = out.size();
  out.push_back(static_cast<char>(handoff_marker_version));
  out.push_back(static_cast<char>(m.kind));
  detail::put_varint(out, m.token.size());
  out += m.token;
  detail::put_varint(out, m.target.size());
  out += m.target;
  detail::put_svarint(out, m.at);
  auto crc = crc32c(std::string_view{out}.substr(start));
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>(crc >> (8 * i)));
}

bool decode_handoff_marker(std::string_view in, handoff_marker& out) {
  if (in.size() < 2 + 4)
    return false;
  auto body = in.substr(0, in.size() - 4);
  uint32_t stored = 0;
  for (int i = 0; i < 4; ++i)
    stored |= static_cast<uint32_t>(static_cast<uint8_t>(in[body.size() + i]))
              << (8 * i);
  if (crc32c(body) != stored)
    return false;
  if (static_cast<uint8_t>(body[0]) != handoff_marker_version)
    return false;
  auto kind = static_cast<uint8_t>(body[1]);
  if (kind != static_cast<uint8_t>(handoff_marker::kind_t::frozen)
      && kind != static_cast<uint8_t>(handoff_marker::kind_t::imported))
    return false;
  out.kind = static_cast<handoff_marker::kind_t>(kind);
  body.remove_prefix(2);
  detail::reader r{body};
  uint64_t n = 0;
  std::string_view text;
  if (!r.varint(n) || !r.bytes(n, text))
    return false;
  out.token = std::string{text};
  if (!r.varint(n) || !r.bytes(n, text))
    return false;
  out.target = std::string{text};
  if (!r.svarint(out.at))
    return false;
  return body.empty();
}

} // namespace cairn::cqrs
