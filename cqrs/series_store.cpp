#include "cqrs/series_store.hpp"

#include "cqrs/detail/binary.hpp"

#include <algorithm>
#include <cmath>

namespace cairn::cqrs {

namespace {

// -- series index -------------------------------------------------------------

/// A key whose hash is already known (event_entry::hash): lookups on the
/// ingest path hash nothing.
struct key_ref {
  std::string_view key;
  uint64_t hash;
};

struct key_hash {
  using is_transparent = void;
  size_t operator()(const std::string& k) const noexcept {
    return series_hash(k);
  }
  size_t operator()(std::string_view k) const noexcept {
    return series_hash(k);
  }
  size_t operator()(const key_ref& k) const noexcept { return k.hash; }
};

struct key_equal {
  using is_transparent = void;
  bool operator()(std::string_view x, std::string_view y) const noexcept {
    return x == y;
  }
  bool operator()(const key_ref& x, std::string_view y) const noexcept {
    return x.key == y;
  }
  bool operator()(std::string_view x, const key_ref& y) const noexcept {
    return x == y.key;
  }
};

// -- buckets of one tier ------------------------------------------------------

/// The buckets of one series in one tier, sorted by start. Events mostly
/// arrive in order, so the back is checked first; late events binary-search.
/// Start and bucket sit side by side: the hot path touches one cache line.
struct tier_buckets {
  struct entry {
    millis start;
    bucket b;
    bool operator==(const entry&) const = default;
  };
  std::vector<entry> entries;

  static bool before(const entry& e, millis t) { return e.start < t; }

  bucket& at(millis start, size_t& created) {
    if (entries.empty() || entries.back().start < start) {
      entries.push_back(entry{start, {}});
      ++created;
      return entries.back().b;
    }
    if (entries.back().start == start)
      return entries.back().b;
    auto it = std::lower_bound(entries.begin(), entries.end(), start, before);
    if (it->start != start) {
      it = entries.insert(it, entry{start, {}});
      ++created;
    }
    return it->b;
  }

  /// Index range of the buckets with start in [from, to).
  std::pair<size_t, size_t> range(millis from, millis to) const {
    auto lo = std::lower_bound(entries.begin(), entries.end(), from, before);
    auto hi = std::lower_bound(lo, entries.end(), to, before);
    return {static_cast<size_t>(lo - entries.begin()),
            static_cast<size_t>(hi - entries.begin())};
  }

  /// Drops the buckets starting before `cutoff`; returns how many.
  size_t drop_before(millis cutoff) {
    auto n = std::lower_bound(entries.begin(), entries.end(), cutoff, before)
             - entries.begin();
    entries.erase(entries.begin(), entries.begin() + n);
    return static_cast<size_t>(n);
  }

  bool empty() const noexcept { return entries.empty(); }

  bool operator==(const tier_buckets&) const = default;
};

struct series_record {
  /// Points at the key in series_store::impl::index (node-based: stable).
  const std::string* key;
  std::vector<tier_buckets> tiers;
};

/// Decodes the tags of `key` as views into it. Keys in the store are valid.
void tag_views(std::string_view key, std::vector<tag_view>& out) {
  out.clear();
  auto pos = key.find('\0');
  while (pos != std::string_view::npos && pos + 1 < key.size()) {
    size_t klen = static_cast<uint8_t>(key[pos + 1]);
    auto k = key.substr(pos + 2, klen);
    pos += 2 + klen;
    if (pos >= key.size())
      return;
    size_t vlen = static_cast<uint8_t>(key[pos]);
    auto v = key.substr(pos + 1, vlen);
    pos += 1 + vlen;
    out.emplace_back(k, v);
  }
}

/// True if every `where` tag is in `tags` (both sorted by key).
bool matches(const std::vector<tag_view>& tags, const std::vector<tag>& where) {
  auto it = tags.begin();
  for (auto& [k, v] : where) {
    while (it != tags.end() && it->first < k)
      ++it;
    if (it == tags.end() || it->first != k || it->second != v)
      return false;
  }
  return true;
}

const std::string_view* find_tag(const std::vector<tag_view>& tags,
                                 std::string_view name) {
  for (auto& t : tags)
    if (t.first == name)
      return &t.second;
  return nullptr;
}

constexpr std::string_view magic = "CRNS";
constexpr uint8_t format_version = 1;

} // namespace

// -- impl ---------------------------------------------------------------------

struct series_store::impl {
  tier_set tiers;
  ddsketch_mapping mapping;
  std::vector<series_record> series;
  std::unordered_map<std::string, uint32_t, key_hash, key_equal> index;
  /// Metric name -> ids of its series, so a query scans one metric only.
  std::map<std::string, std::vector<uint32_t>, std::less<>> by_metric;
  uint64_t events = 0;
  size_t buckets = 0;

  impl(tier_set t, ddsketch_mapping m)
    : tiers(std::move(t)), mapping(m) {}

  uint32_t add_series(std::string_view key) {
    auto id = static_cast<uint32_t>(series.size());
    auto it = index.emplace(std::string{key}, id).first;
    series.push_back(series_record{&it->first,
                                   std::vector<tier_buckets>(tiers.size())});
    auto metric = series_metric(key);
    auto m = by_metric.find(metric);
    if (m == by_metric.end())
      m = by_metric.emplace(std::string{metric}, std::vector<uint32_t>{}).first;
    m->second.push_back(id);
    return id;
  }

  void apply(std::string_view key, uint64_t hash, millis ts, double value) {
    auto it = index.find(key_ref{key, hash});
    auto id = it != index.end() ? it->second : add_series(key);
    // One logarithm per event, shared by all tiers.
    auto a = std::fabs(value);
    bool zero = !(a >= ddsketch_mapping::min_indexable());
    int32_t bin = zero ? 0 : mapping.index(a);
    bool negative = value < 0;
    auto& rec = series[id];
    for (size_t i = 0; i < tiers.size(); ++i)
      rec.tiers[i]
        .at(align_down(ts, tiers[i].resolution), buckets)
        .add(ts, value, bin, negative, zero);
    ++events;
  }

  /// Calls f(record, tags) for every series of `metric` (all series if empty)
  /// that matches `where`.
  template <class F>
  void for_each_match(std::string_view metric, const std::vector<tag>& where,
                      F&& f) const {
    std::vector<tag_view> tags;
    auto visit = [&](const std::vector<uint32_t>& ids) {
      for (auto id : ids) {
        auto& rec = series[id];
        tag_views(*rec.key, tags);
        if (matches(tags, where))
          f(rec, tags);
      }
    };
    if (metric.empty()) {
      for (auto& [name, ids] : by_metric)
        visit(ids);
    } else if (auto it = by_metric.find(metric); it != by_metric.end()) {
      visit(it->second);
    }
  }

  void rebuild_metric_index() {
    by_metric.clear();
    for (uint32_t id = 0; id < series.size(); ++id) {
      auto metric = series_metric(*series[id].key);
      auto m = by_metric.find(metric);
      if (m == by_metric.end())
        m = by_metric.emplace(std::string{metric}, std::vector<uint32_t>{})
              .first;
      m->second.push_back(id);
    }
  }
};

series_store::series_store(tier_set tiers, ddsketch_mapping mapping)
  : impl_(std::make_unique<impl>(std::move(tiers), mapping)) {}

series_store::~series_store() = default;
series_store::series_store(series_store&&) noexcept = default;
series_store& series_store::operator=(series_store&&) noexcept = default;

// -- write side ---------------------------------------------------------------

void series_store::apply(const event_batch& batch) {
  for (auto& e : batch.entries)
    impl_->apply(batch.key(e), e.hash, e.ts, e.value);
}

void series_store::apply(std::string_view key, millis ts, double value) {
  impl_->apply(key, series_hash(key), ts, value);
}

size_t series_store::evict(millis now) {
  auto& s = *impl_;
  size_t dropped = 0;
  bool emptied = false;
  for (auto& rec : s.series) {
    bool empty = true;
    for (size_t i = 0; i < s.tiers.size(); ++i) {
      auto& tb = rec.tiers[i];
      dropped += tb.drop_before(now - s.tiers[i].retention);
      empty = empty && tb.empty();
    }
    emptied = emptied || empty;
  }
  s.buckets -= dropped;
  if (!emptied)
    return dropped;
  // Compact: drop empty series, renumber the rest, rebuild the indexes.
  std::vector<series_record> kept;
  kept.reserve(s.series.size());
  for (auto& rec : s.series) {
    bool empty = std::all_of(rec.tiers.begin(), rec.tiers.end(),
                             [](auto& tb) { return tb.empty(); });
    if (empty) {
      s.index.erase(*rec.key);
    } else {
      s.index.find(*rec.key)->second = static_cast<uint32_t>(kept.size());
      kept.push_back(std::move(rec));
    }
  }
  s.series = std::move(kept);
  s.rebuild_metric_index();
  return dropped;
}

// -- read side ----------------------------------------------------------------

void series_store::query(const query_spec& q, query_partial& out) const {
  auto& s = *impl_;
  // The planner's segments (query.hpp), in time order; none: one of q.tier.
  const query_segment whole{q.tier, q.from, q.to};
  auto* seg_begin = q.segments.empty() ? &whole : q.segments.data();
  auto* seg_end = q.segments.empty() ? &whole + 1
                                     : q.segments.data() + q.segments.size();
  if (q.step <= 0 || std::any_of(seg_begin, seg_end, [&](auto& seg) {
        return seg.tier >= s.tiers.size();
      }))
    return;
  std::vector<std::optional<std::string>> values(q.group_by.size());
  s.for_each_match(q.metric, q.where, [&](const series_record& rec,
                                          const std::vector<tag_view>& tags) {
    query_group* group = nullptr;
    decltype(group->points.end()) hint;
    for (auto* seg = seg_begin; seg != seg_end; ++seg) {
      auto& tb = rec.tiers[seg->tier];
      auto [lo, hi] = tb.range(seg->from, seg->to);
      if (lo == hi)
        continue;
      if (group == nullptr) {
        for (size_t i = 0; i < q.group_by.size(); ++i) {
          auto* v = find_tag(tags, q.group_by[i]);
          values[i] = v ? std::optional<std::string>{*v} : std::nullopt;
        }
        auto [git, added] = out.groups.try_emplace(encode_group_key(values));
        group = &git->second;
        if (added)
          group->values = values;
        hint = group->points.end();
      }
      for (auto i = lo; i < hi; ++i) {
        auto& e = tb.entries[i];
        hint = group->points.try_emplace(hint, align_down(e.start, q.step));
        hint->second.merge(e.b);
        ++hint;
      }
    }
  });
}

void series_store::topk(const topk_spec& q, topk_partial& out) const {
  auto& s = *impl_;
  if (q.tier >= s.tiers.size())
    return;
  s.for_each_match(q.metric, q.where, [&](const series_record& rec,
                                          const std::vector<tag_view>& tags) {
    auto* v = find_tag(tags, q.by);
    if (!v)
      return;
    auto& tb = rec.tiers[q.tier];
    auto [lo, hi] = tb.range(q.from, q.to);
    if (lo == hi)
      return;
    auto it = out.values.try_emplace(std::string{*v}).first;
    for (auto i = lo; i < hi; ++i)
      it->second.merge(tb.entries[i].b);
  });
}

void series_store::series(const series_spec& q, series_partial& out) const {
  std::vector<const std::string*> keys;
  impl_->for_each_match(q.metric, q.where,
                        [&](const series_record& rec, auto&) {
                          keys.push_back(rec.key);
                        });
  // Only the smallest limit + 1 keys can be shown (the extra one tells the
  // renderer that the answer is truncated).
  auto n = keys.size() > q.limit ? q.limit + 1 : keys.size();
  std::partial_sort(keys.begin(), keys.begin() + static_cast<ptrdiff_t>(n),
                    keys.end(), [](auto x, auto y) { return *x < *y; });
  for (size_t i = 0; i < n; ++i)
    out.keys.push_back(*keys[i]);
}

void series_store::metrics(metrics_partial& out) const {
  for (auto& [name, ids] : impl_->by_metric)
    if (!ids.empty())
      out.metrics[name] += ids.size();
}

// -- properties ---------------------------------------------------------------

size_t series_store::series_count() const noexcept {
  return impl_->series.size();
}

size_t series_store::bucket_count() const noexcept { return impl_->buckets; }

uint64_t series_store::events_applied() const noexcept {
  return impl_->events;
}

const tier_set& series_store::tiers() const noexcept { return impl_->tiers; }

const ddsketch_mapping& series_store::mapping() const noexcept {
  return impl_->mapping;
}

// -- persistence --------------------------------------------------------------

// Format (version 1): "CRNS", version byte, sketch accuracy (f64), tiers
// (varint n, then svarint resolution and retention each), varint events
// applied, varint series count; per series: varint key length, key bytes,
// then per tier: varint bucket count and per bucket svarint start delta,
// varint count, f64 sum, min, max, last, svarint last_ts, sketch encoding.
void series_store::encode(std::string& out) const {
  auto& s = *impl_;
  out.append(magic);
  out.push_back(static_cast<char>(format_version));
  detail::put_double(out, s.mapping.relative_accuracy());
  detail::put_varint(out, s.tiers.size());
  for (auto& t : s.tiers.tiers()) {
    detail::put_svarint(out, t.resolution);
    detail::put_svarint(out, t.retention);
  }
  detail::put_varint(out, s.events);
  detail::put_varint(out, s.series.size());
  for (auto& rec : s.series) {
    detail::put_varint(out, rec.key->size());
    out.append(*rec.key);
    for (auto& tb : rec.tiers) {
      detail::put_varint(out, tb.entries.size());
      millis prev = 0;
      for (auto& [start, b] : tb.entries) {
        detail::put_svarint(out, static_cast<int64_t>(
                                   static_cast<uint64_t>(start)
                                   - static_cast<uint64_t>(prev)));
        prev = start;
        detail::put_varint(out, b.count);
        detail::put_double(out, b.sum);
        detail::put_double(out, b.min);
        detail::put_double(out, b.max);
        detail::put_double(out, b.last);
        detail::put_svarint(out, b.last_ts);
        b.sketch.encode(out);
      }
    }
  }
}

bool series_store::decode(std::string_view in) {
  auto& s = *impl_;
  if (!in.starts_with(magic) || in.size() < magic.size() + 1
      || static_cast<uint8_t>(in[magic.size()]) != format_version)
    return false;
  in.remove_prefix(magic.size() + 1);
  detail::reader r{in};
  double accuracy = 0;
  uint64_t num_tiers = 0;
  if (!r.f64(accuracy) || accuracy != s.mapping.relative_accuracy()
      || !r.varint(num_tiers) || num_tiers != s.tiers.size())
    return false;
  for (auto& t : s.tiers.tiers()) {
    int64_t res = 0, ret = 0;
    if (!r.svarint(res) || !r.svarint(ret) || res != t.resolution
        || ret != t.retention)
      return false;
  }
  impl fresh{s.tiers, s.mapping};
  uint64_t num_series = 0;
  if (!r.varint(fresh.events) || !r.varint(num_series)
      || num_series > in.size())
    return false;
  std::vector<tag> tags;
  for (uint64_t n = 0; n < num_series; ++n) {
    uint64_t len = 0;
    std::string_view key;
    if (!r.varint(len) || !r.bytes(len, key) || series_metric(key).empty()
        || !decode_series_tags(key, tags) || fresh.index.contains(key))
      return false;
    auto id = fresh.add_series(key);
    auto& rec = fresh.series[id];
    for (size_t t = 0; t < fresh.tiers.size(); ++t) {
      auto res = fresh.tiers[t].resolution;
      uint64_t count = 0;
      if (!r.varint(count) || count > in.size())
        return false;
      auto& tb = rec.tiers[t];
      millis prev = 0;
      for (uint64_t i = 0; i < count; ++i) {
        int64_t delta = 0;
        bucket b;
        if (!r.svarint(delta) || !r.varint(b.count) || !r.f64(b.sum)
            || !r.f64(b.min) || !r.f64(b.max) || !r.f64(b.last)
            || !r.svarint(b.last_ts) || !b.sketch.decode(in))
          return false;
        auto start = static_cast<millis>(static_cast<uint64_t>(prev)
                                         + static_cast<uint64_t>(delta));
        if ((i > 0 && start <= prev) || align_down(start, res) != start
            || b.count == 0 || b.sketch.count() != b.count)
          return false;
        prev = start;
        tb.entries.push_back({start, std::move(b)});
        ++fresh.buckets;
      }
    }
  }
  if (!in.empty())
    return false;
  s = std::move(fresh);
  return true;
}

bool operator==(const series_store& x, const series_store& y) {
  auto& a = *x.impl_;
  auto& b = *y.impl_;
  if (a.events != b.events || a.series.size() != b.series.size()
      || a.tiers.size() != b.tiers.size())
    return false;
  for (size_t i = 0; i < a.tiers.size(); ++i)
    if (a.tiers[i].resolution != b.tiers[i].resolution
        || a.tiers[i].retention != b.tiers[i].retention)
      return false;
  for (auto& rec : a.series) {
    auto it = b.index.find(*rec.key);
    if (it == b.index.end() || rec.tiers != b.series[it->second].tiers)
      return false;
  }
  return true;
}

} // namespace cairn::cqrs
