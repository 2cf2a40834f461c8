#include "cqrs/series_index.hpp"

#include <algorithm>
#include <mutex>

namespace cairn::cqrs {

namespace {

/// True if the tags of `key` include every tag of `where` (sorted by key,
/// as parse_series leaves them; the key's tags are sorted too). Walks the
/// key's encoding (cqrs/series_key.hpp) in place: no tag is copied (this
/// runs for every series of the metric on each Prometheus API read).
bool carries(std::string_view key, const std::vector<tag>& where) {
  if (where.empty())
    return true;
  auto w = where.begin();
  auto pos = key.find('\0');  // metric names hold no 0x00
  while (pos != std::string_view::npos && w != where.end()) {
    if (pos + 1 >= key.size() || key[pos] != '\0')
      return false;
    size_t klen = static_cast<uint8_t>(key[pos + 1]);
    if (pos + 2 + klen >= key.size())
      return false;
    auto k = key.substr(pos + 2, klen);
    pos += 2 + klen;
    size_t vlen = static_cast<uint8_t>(key[pos]);
    if (pos + 1 + vlen > key.size())
      return false;
    auto v = key.substr(pos + 1, vlen);
    pos += 1 + vlen;
    if (w->first < k)
      return false;  // a `where` key the series does not have
    if (w->first == k) {
      if (w->second != v)
        return false;
      ++w;
    }
    if (pos == key.size())
      pos = std::string_view::npos;
  }
  return w == where.end();
}

} // namespace

series_index::series_index(uint32_t partitions)
  : partitions_(partitions), attached_(partitions, 0) {
}

void series_index::erase_partition(uint32_t partition) {
  for (auto m = by_metric_.begin(); m != by_metric_.end();) {
    auto& keys = m->second;
    for (auto k = keys.begin(); k != keys.end();) {
      if (k->second.partition == partition) {
        k = keys.erase(k);
        --size_;
      } else {
        ++k;
      }
    }
    m = keys.empty() ? by_metric_.erase(m) : std::next(m);
  }
}

uint64_t series_index::attach(uint32_t partition,
                              const std::vector<std::string>& keys) {
  if (partition >= partitions_)
    return 0;
  std::unique_lock lock{mtx_};
  erase_partition(partition);
  for (auto& key : keys) {
    auto metric = series_metric(key);
    auto m = by_metric_.find(metric);
    if (m == by_metric_.end())
      m = by_metric_.emplace(std::string{metric}, keys_type{}).first;
    if (m->second.emplace(key, entry{partition}).second)
      ++size_;
  }
  auto token = next_token_++;
  attached_[partition] = token;
  return token;
}

void series_index::detach(uint32_t partition, uint64_t token) {
  if (partition >= partitions_ || token == 0)
    return;
  std::unique_lock lock{mtx_};
  if (attached_[partition] != token)
    return;
  attached_[partition] = 0;
  erase_partition(partition);
}

void series_index::add(uint32_t partition, std::string_view key) {
  if (partition >= partitions_)
    return;
  std::unique_lock lock{mtx_};
  if (attached_[partition] == 0)
    return;
  auto metric = series_metric(key);
  auto m = by_metric_.find(metric);
  if (m == by_metric_.end())
    m = by_metric_.emplace(std::string{metric}, keys_type{}).first;
  if (m->second.emplace(std::string{key}, entry{partition}).second)
    ++size_;
}

void series_index::remove(uint32_t partition, std::string_view key) {
  if (partition >= partitions_)
    return;
  std::unique_lock lock{mtx_};
  if (attached_[partition] == 0)
    return;
  auto m = by_metric_.find(series_metric(key));
  if (m == by_metric_.end())
    return;
  auto k = m->second.find(key);
  if (k == m->second.end() || k->second.partition != partition)
    return;
  m->second.erase(k);
  --size_;
  if (m->second.empty())
    by_metric_.erase(m);
}

std::vector<bool> series_index::match(std::string_view metric,
                                      const std::vector<tag>& where,
                                      size_t limit,
                                      std::vector<std::string>& out) const {
  std::shared_lock lock{mtx_};
  std::vector<bool> covered(partitions_);
  for (uint32_t p = 0; p < partitions_; ++p)
    covered[p] = attached_[p] != 0;
  auto first = out.size();
  auto visit = [&](const keys_type& keys) {
    size_t taken = 0;
    for (auto& [key, e] : keys) {
      if (taken == limit)
        break;
      if (carries(key, where)) {
        out.push_back(key);
        ++taken;
      }
    }
  };
  if (!metric.empty()) {
    if (auto m = by_metric_.find(metric); m != by_metric_.end())
      visit(m->second);
    return covered;
  }
  // Every metric: the smallest `limit` keys over all of them.
  for (auto& [name, keys] : by_metric_)
    visit(keys);
  std::sort(out.begin() + static_cast<ptrdiff_t>(first), out.end());
  if (out.size() - first > limit)
    out.resize(first + limit);
  return covered;
}

size_t series_index::size() const {
  std::shared_lock lock{mtx_};
  return size_;
}

} // namespace cairn::cqrs
