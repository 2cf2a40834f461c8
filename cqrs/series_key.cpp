#include "cqrs/series_key.hpp"

#include <algorithm>

#include <xxhash.h>

namespace cairn::cqrs {

void encode_series_key(std::string& out, std::string_view metric,
                       const tag_view* tags, size_t num_tags) {
  out.append(metric);
  for (size_t i = 0; i < num_tags; ++i) {
    auto& [k, v] = tags[i];
    out.push_back('\0');
    out.push_back(static_cast<char>(static_cast<uint8_t>(k.size())));
    out.append(k);
    out.push_back(static_cast<char>(static_cast<uint8_t>(v.size())));
    out.append(v);
  }
}

std::string make_series_key(std::string_view metric, std::vector<tag> tags) {
  std::sort(tags.begin(), tags.end());
  std::vector<tag_view> views(tags.begin(), tags.end());
  std::string out;
  encode_series_key(out, metric, views.data(), views.size());
  return out;
}

std::string_view series_metric(std::string_view key) noexcept {
  return key.substr(0, key.find('\0'));
}

bool decode_series_tags(std::string_view key, std::vector<tag>& out) {
  out.clear();
  auto pos = key.find('\0');
  if (pos == std::string_view::npos)
    return true;
  auto read = [&](std::string_view& field) {
    if (pos >= key.size())
      return false;
    size_t len = static_cast<uint8_t>(key[pos++]);
    if (len > key.size() - pos)
      return false;
    field = key.substr(pos, len);
    pos += len;
    return true;
  };
  while (pos < key.size()) {
    if (key[pos++] != '\0')
      return false;
    std::string_view k, v;
    if (!read(k) || !read(v))
      return false;
    out.emplace_back(std::string{k}, std::string{v});
  }
  return true;
}

uint64_t series_hash(std::string_view key) noexcept {
  return XXH3_64bits(key.data(), key.size());
}

} // namespace cairn::cqrs
