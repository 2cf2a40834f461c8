#include "cqrs/hint_record.hpp"

#include "cqrs/detail/binary.hpp"
#include "cqrs/journal_record.hpp"

namespace cairn::cqrs {

size_t hint_record::bytes() const noexcept {
  size_t n = key.size() + 64;
  for (auto& b : batches)
    n += b.keys.size() + b.entries.size() * sizeof(event_entry) + 32;
  return n;
}

void encode_hint(const hint_record& h, std::string& out) {
  out.push_back('\1');
  detail::put_varint(out, h.key.size());
  out.append(h.key);
  detail::put_varint(out, h.partitions.size());
  std::string rec;
  for (size_t i = 0; i < h.partitions.size(); ++i) {
    detail::put_varint(out, h.partitions[i]);
    rec.clear();
    encode_record(0, {}, h.batches[i], rec);
    detail::put_varint(out, rec.size());
    out.append(rec);
  }
}

bool decode_hint(std::string_view in, hint_record& out) {
  out = hint_record{};
  if (in.empty() || in.front() != '\1')
    return false;
  in.remove_prefix(1);
  detail::reader r{in};
  uint64_t n = 0;
  std::string_view v;
  if (!r.varint(n) || !r.bytes(n, v))
    return false;
  out.key.assign(v);
  uint64_t items = 0;
  if (!r.varint(items) || items > in.size())
    return false;
  journal_record rec;
  for (uint64_t i = 0; i < items; ++i) {
    uint64_t p = 0;
    if (!r.varint(p) || !r.varint(n) || !r.bytes(n, v))
      return false;
    if (decode_record(v, rec) != decode_result::ok)
      return false;
    out.partitions.push_back(static_cast<uint32_t>(p));
    out.batches.push_back(std::move(rec.events));
  }
  return in.empty();
}

} // namespace cairn::cqrs
