#include "alerts/replica_codec.hpp"

#include "cqrs/detail/binary.hpp"
#include "cqrs/partial_codec.hpp"

#include <nlohmann/json.hpp>

namespace cairn::alerts {

using nlohmann::json;

namespace {

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace

std::string encode_items(const std::vector<const replica_item*>& items) {
  auto arr = json::array();
  for (auto* x : items)
    arr.push_back({{"k", x->key},
                   {"c", x->st.clock},
                   {"o", x->st.origin},
                   {"d", x->deleted},
                   {"v", x->value},
                   {"at", x->at}});
  return dump(arr);
}

bool decode_items(std::string_view in, std::vector<replica_item>& out) {
  auto j = json::parse(in, nullptr, false);
  if (!j.is_array())
    return false;
  try {
    for (auto& x : j) {
      replica_item item;
      item.key = x.at("k").get<std::string>();
      item.st.clock = x.at("c").get<uint64_t>();
      item.st.origin = x.at("o").get<std::string>();
      item.deleted = x.at("d").get<bool>();
      item.value = x.at("v").get<std::string>();
      item.at = x.at("at").get<cqrs::millis>();
      out.push_back(std::move(item));
    }
  } catch (const json::exception&) {
    return false;
  }
  return true;
}

std::string encode_stamps(const replica_set& s) {
  auto arr = json::array();
  s.for_each_covered([&](const replica_item& x) {
    arr.push_back(json::array({x.key, x.st.clock, x.st.origin}));
  });
  return dump(arr);
}

bool decode_stamps(std::string_view in,
                   std::vector<std::pair<std::string, stamp>>& out) {
  auto j = json::parse(in, nullptr, false);
  if (!j.is_array())
    return false;
  try {
    for (auto& x : j)
      out.emplace_back(x.at(0).get<std::string>(),
                       stamp{x.at(1).get<uint64_t>(), x.at(2).get<std::string>()});
  } catch (const json::exception&) {
    return false;
  }
  return true;
}

std::string encode_keys(const std::vector<std::string>& keys) {
  return dump(json(keys));
}

bool decode_keys(std::string_view in, std::vector<std::string>& out) {
  auto j = json::parse(in, nullptr, false);
  if (!j.is_array())
    return false;
  try {
    for (auto& x : j)
      out.push_back(x.get<std::string>());
  } catch (const json::exception&) {
    return false;
  }
  return true;
}

void encode_buckets(const std::vector<const cqrs::closed_bucket*>& buckets,
                    std::string& out) {
  using namespace cqrs::detail;
  put_varint(out, buckets.size());
  for (auto* b : buckets) {
    put_varint(out, b->key.size());
    out += b->key;
    put_svarint(out, b->start);
    out.push_back(b->correction ? '\1' : '\0');
    cqrs::encode_bucket(b->value, out);
  }
}

bool decode_buckets(std::string_view in,
                    std::vector<cqrs::closed_bucket>& out) {
  cqrs::detail::reader r{in};
  uint64_t n = 0;
  if (!r.varint(n) || n > in.size())
    return false;
  for (uint64_t i = 0; i < n; ++i) {
    cqrs::closed_bucket b;
    uint64_t len = 0;
    std::string_view key;
    int64_t start = 0;
    std::string_view flag;
    if (!r.varint(len) || !r.bytes(len, key) || !r.svarint(start)
        || !r.bytes(1, flag))
      return false;
    b.key.assign(key);
    b.start = start;
    b.correction = flag[0] != '\0';
    if (!cqrs::decode_bucket(in, b.value))
      return false;
    out.push_back(std::move(b));
  }
  return in.empty();
}

} // namespace cairn::alerts
