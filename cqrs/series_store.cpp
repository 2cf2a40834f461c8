#include "cqrs/series_store.hpp"

#include "cqrs/block.hpp"
#include "cqrs/detail/binary.hpp"
#include "cqrs/series_ids.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace cairn::cqrs {

namespace {

// -- series index -------------------------------------------------------------

// -- buckets of one tier ------------------------------------------------------

/// A sealed block turns into a finished one (capacity released, codec state
/// dropped) after this many buckets.
constexpr uint32_t max_block_buckets = 128;

/// Whether a tier of resolution `res` keeps its blocks' codec state
/// (tier_data::tail) rather than decoding it at each append.
bool keeps_tail(millis res) noexcept { return res < 60'000; }

/// The codec state after the last bucket of `blk`, as its appends left it:
/// decoded for the state only (buckets' sketches are skipped).
block_state state_after(const bucket_block& blk, millis res,
                        const ddsketch_mapping& m) {
  block_cursor cur{blk, res, m};
  millis t = 0;
  bucket b;
  while (cur.next(t, b, std::numeric_limits<millis>::max())) {
  }
  return cur.state();
}

/// The longest learned hold (tier_data::hold): a tier keeps at most this
/// much of open windows past the horizon, whatever the lateness seen.
constexpr millis max_learned_hold = 120'000;

/// An open bucket. `reopened`: a copy of a sealed bucket that late events
/// changed; it supersedes the sealed one until re-sealed.
struct open_entry {
  millis start;
  bucket b;
  bool reopened = false;
  /// Changed since the last seal pass: a bucket still being written (a
  /// backfill sent faster than real time) waits for a quiet pass.
  bool touched = true;
  /// Published by a close pass (series_store::close) before sealing.
  bool published = false;
  /// Changed after it was published: the next close pass (or the seal)
  /// publishes it again as a correction.
  bool dirty = false;

  /// Marks an event added to this existing entry.
  void touch() noexcept {
    touched = true;
    dirty = published;
  }
};

/// The buckets of one series in one tier: sealed blocks (ascending,
/// disjoint) and open entries (sorted by start). Events mostly arrive in
/// order, so the back of `open` is checked first; late events search.
struct tier_data {
  std::vector<open_entry> open;
  std::vector<bucket_block> blocks;
  /// Codec state after the last bucket of blocks.back(), kept only by
  /// tiers finer than a minute (keeps_tail): a coarse tier appends once a
  /// minute or hour per series and rebuilds it by decoding the block
  /// (state_after), which saves 152 bytes per series and coarse tier.
  std::unique_ptr<block_state> tail;
  /// Sealed buckets starting before this are evicted (hidden).
  millis floor = std::numeric_limits<millis>::min();
  /// Buckets in blocks (hidden ones included).
  uint64_t sealed = 0;
  /// Learned lateness (ms): windows stay open this long past their end
  /// when it exceeds the store's horizon. Raised by an event that reopened a
  /// sealed bucket, decays each seal pass (docs/architecture.md, "Compact
  /// store"); representation only, never snapshotted.
  uint32_t hold = 0;

  static bool before(const open_entry& e, millis t) { return e.start < t; }

  millis sealed_until() const noexcept {
    return blocks.empty() ? std::numeric_limits<millis>::min()
                          : blocks.back().last_start();
  }

  bool empty() const noexcept { return open.empty() && blocks.empty(); }

  /// Index of the block that holds (or would hold) `start`.
  size_t block_of(millis start) const {
    auto it = std::upper_bound(blocks.begin(), blocks.end(), start,
                               [](millis t, const bucket_block& blk) {
                                 return t < blk.first_start();
                               });
    return it == blocks.begin() ? 0 : static_cast<size_t>(it - blocks.begin()) - 1;
  }

  /// Copies the sealed bucket at `start` into `out`; false if none.
  bool find_sealed(millis start, millis res, const ddsketch_mapping& m,
                   bucket& out) const {
    if (blocks.empty() || start < floor)
      return false;
    auto& blk = blocks[block_of(start)];
    if (start < blk.first_start() || start > blk.last_start())
      return false;
    block_cursor cur{blk, res, m};
    cur.seek(start);
    millis t = 0;
    while (cur.next(t, out, start))
      if (t >= start)
        return t == start;
    return false;
  }

  /// Calls f(start, bucket) for the visible buckets with start in
  /// [from, to), in start order; open entries supersede sealed buckets of
  /// the same start. `scratch` holds decoded buckets. Lazy: f(start,
  /// bucket, cursor), the cursor (null for an open bucket) having left a
  /// long sketch store undecoded (block_cursor::next, lazy): f asks it for
  /// quantiles or materialises `scratch`.
  template <bool Lazy = false, class F>
  void for_each(millis from, millis to, millis res, const ddsketch_mapping& m,
                bucket& scratch, F&& f) const {
    auto call = [&](millis t, const bucket& b, block_cursor* cur) {
      if constexpr (Lazy)
        f(t, b, cur);
      else
        f(t, b);
    };
    auto lo = std::lower_bound(open.begin(), open.end(), from, before);
    auto hi = std::lower_bound(lo, open.end(), to, before);
    auto o = lo;
    auto sealed_from = std::max(from, floor);
    for (size_t i = blocks.empty() ? 0 : block_of(sealed_from);
         i < blocks.size(); ++i) {
      auto& blk = blocks[i];
      if (blk.first_start() >= to)
        break;
      if (blk.last_start() < sealed_from)
        continue;
      // From the last restart point at or before `from`; the buckets
      // before it that are still decoded skip their sketches.
      block_cursor cur{blk, res, m};
      cur.seek(sealed_from);
      millis t = 0;
      while (cur.next(t, scratch, sealed_from, Lazy)) {
        if (t < sealed_from)
          continue;
        if (t >= to)
          break;
        while (o != hi && o->start < t) {
          call(o->start, o->b, nullptr);
          ++o;
        }
        if (o != hi && o->start == t) {
          call(o->start, o->b, nullptr);
          ++o;
          continue;
        }
        call(t, static_cast<const bucket&>(scratch), &cur);
      }
    }
    for (; o != hi; ++o)
      call(o->start, o->b, nullptr);
  }

  bool operator==(const tier_data&) const = delete;
};

struct series_record {
  std::string key;
  uint64_t hash; ///< series_hash(key)
  std::vector<tier_data> tiers;
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
constexpr uint8_t format_v1 = 1;
/// Version 2: sealed blocks of block codec 1; 3: of codec 2; 4: of codec 3
/// (written).
constexpr uint8_t format_v2 = 2;
constexpr uint8_t format_v3 = 3;
constexpr uint8_t format_version = 4;

} // namespace

// -- impl ---------------------------------------------------------------------

struct series_store::impl {
  tier_set tiers;
  ddsketch_mapping mapping;
  std::vector<series_record> series;
  series_ids index;
  /// Metric name -> ids of its series, so a query scans one metric only.
  std::map<std::string, std::vector<uint32_t>, std::less<>> by_metric;
  uint64_t events = 0;
  size_t buckets = 0;
  millis clock = std::numeric_limits<millis>::min();
  millis horizon = 2000;
  closed_handler handler;
  std::vector<closed_bucket> closed;
  std::function<void(std::string_view, uint64_t, bool)> series_handler;
  /// apply_batch's series ids, kept to spare an allocation per batch.
  std::vector<uint32_t> ids;
  /// apply_batch scratch: the sketch bin of each event.
  std::vector<int32_t> bins;
  /// seal_tier / reencode scratch, kept to spare allocations per seal: the
  /// late entries as changes and the buckets a merge decodes.
  std::vector<bucket_change> merge_changes;
  merge_scratch merge_buckets;

  impl(tier_set t, ddsketch_mapping m)
    : tiers(std::move(t)), mapping(m) {}

  /// The id of series `key` (with `hash` = series_hash(key)), if present.
  std::optional<uint32_t> find(std::string_view key, uint64_t hash) const {
    return index.find(hash, key,
                      [this](uint32_t id) -> std::string_view {
                        return series[id].key;
                      });
  }

  std::optional<uint32_t> find(std::string_view key) const {
    return find(key, series_hash(key));
  }

  uint32_t add_series(std::string_view key, uint64_t hash) {
    auto id = static_cast<uint32_t>(series.size());
    index.insert(hash, id);
    series.push_back(series_record{std::string{key}, hash,
                                   std::vector<tier_data>(tiers.size())});
    auto metric = series_metric(key);
    auto m = by_metric.find(metric);
    if (m == by_metric.end())
      m = by_metric.emplace(std::string{metric}, std::vector<uint32_t>{}).first;
    m->second.push_back(id);
    return id;
  }

  /// True if the window at `start` ended at least the horizon (or the
  /// tier's learned hold, if longer) ago.
  bool sealable(millis start, millis res, const tier_data& td) const noexcept {
    // start + res + horizon <= clock, without overflow near min().
    millis h = std::max<millis>(horizon, td.hold);
    return clock != std::numeric_limits<millis>::min()
           && start <= clock - h - res;
  }

  /// An event for the sealed window at `start` arrived: hold later windows
  /// open for that lateness (plus an eighth and a second), up to
  /// max_learned_hold, so that a source whose events come up to a minute
  /// late writes open buckets instead of decoding and re-encoding a block
  /// per event (7x the ingest cost with 60 s of spread, docs/benchmarks.md).
  void learn_lateness(tier_data& td, millis start, millis res) const noexcept {
    if (clock == std::numeric_limits<millis>::min() || start > clock)
      return;
    millis late = clock - (start + res);
    late += late / 8 + 1000; // a margin above the decay of a few passes
    late = std::min<millis>(late, max_learned_hold);
    if (late > static_cast<millis>(td.hold))
      td.hold = static_cast<uint32_t>(late);
  }

  void publish(const series_record& rec, size_t tier, millis start,
               const bucket& b, bool correction) {
    if (handler)
      closed.push_back(closed_bucket{rec.key, static_cast<uint32_t>(tier),
                                     start, b, correction});
  }

  void flush_closed() {
    if (handler && !closed.empty()) {
      std::vector<closed_bucket> batch;
      batch.swap(closed);
      handler(std::move(batch));
    }
  }

  /// Appends one bucket after blocks.back().
  void append_sealed(tier_data& td, millis res, millis start,
                     const bucket& b) {
    if (td.blocks.empty() || td.blocks.back().size() >= max_block_buckets
        || td.blocks.back().full()) {
      if (!td.blocks.empty())
        td.blocks.back().shrink();
      // Grow by one, then by two, not by doubling: a 1 s tier holds ~8
      // blocks for its 15 minutes and a doubled vector would keep up to 8
      // empty ones per series; a coarse tier often holds just one.
      if (td.blocks.size() == td.blocks.capacity())
        td.blocks.reserve(td.blocks.size() + (td.blocks.size() < 2 ? 1 : 2));
      td.blocks.emplace_back();
    }
    auto& blk = td.blocks.back();
    if (td.tail) {
      blk.append(start, b, res, mapping, *td.tail);
    } else {
      // A fresh block starts from a fresh state (append sets it).
      block_state st;
      if (!blk.empty())
        st = state_after(blk, res, mapping);
      blk.append(start, b, res, mapping, st);
      if (keeps_tail(res))
        td.tail = std::make_unique<block_state>(st);
    }
    ++td.sealed;
  }

  /// Merges `n` changes (open entries, sorted by start, all for block `i`
  /// of `td`) into that block: each replaces the sealed bucket of its start
  /// or is inserted. Only the block from the first of them on is encoded
  /// again (bucket_block::merge).
  void reencode(tier_data& td, millis res, size_t i,
                const bucket_change* changes, size_t n) {
    block_state st;
    auto& blk = td.blocks[i];
    auto inserted = blk.merge(changes, n, res, mapping, st, merge_buckets);
    bool last = i + 1 == td.blocks.size();
    if (!last)
      blk.shrink();
    if (last && td.tail)
      *td.tail = st;
    td.sealed += inserted;
  }

  /// Seals the open entries of `td` that are due. `inline_only`: the cheap
  /// in-order case of the ingest path (stops at the first reopened or late
  /// entry, which the periodic pass handles). Returns buckets sealed.
  size_t seal_tier(series_record& rec, size_t tier, bool inline_only,
                   bool quiet_only = false,
                   millis before = std::numeric_limits<millis>::max()) {
    auto& td = rec.tiers[tier];
    auto res = tiers[tier].resolution;
    // Entries below the eviction floor (events older than the retention)
    // stay open until the next evict drops them, as they always did.
    size_t first = 0;
    while (first < td.open.size() && td.open[first].start < td.floor)
      ++first;
    size_t n = first;
    auto until = td.sealed_until();
    while (n < td.open.size() && sealable(td.open[n].start, res, td)
           && (!inline_only || td.open[n].start > until)
           && !(quiet_only && td.open[n].touched)
           && td.open[n].start < before)
      ++n;
    if (quiet_only)
      for (size_t k = n; k < td.open.size(); ++k)
        td.open[k].touched = false;
    if (n == first)
      return 0;
    // Late entries (start <= sealed_until) come first: they go into the
    // existing blocks, the rest is appended.
    auto& changes = merge_changes;
    changes.clear();
    size_t i = first;
    for (; i < n && td.open[i].start <= until; ++i) {
      auto& e = td.open[i];
      if (!e.published || e.dirty)
        publish(rec, tier, e.start, e.b, e.reopened || e.published);
      changes.push_back(bucket_change{e.start, &e.b});
    }
    // Sorted by start, so each block's changes are a run.
    for (size_t k = 0; k < changes.size();) {
      auto blk = td.block_of(changes[k].start);
      size_t end = k + 1;
      while (end < changes.size() && td.block_of(changes[end].start) == blk)
        ++end;
      reencode(td, res, blk, changes.data() + k, end - k);
      k = end;
    }
    for (; i < n; ++i) {
      auto& e = td.open[i];
      if (!e.published || e.dirty)
        publish(rec, tier, e.start, e.b, e.published);
      append_sealed(td, res, e.start, e.b);
    }
    td.open.erase(td.open.begin() + static_cast<ptrdiff_t>(first),
                  td.open.begin() + static_cast<ptrdiff_t>(n));
    // A burst (history sent fast, batches of two parsers interleaving) can
    // grow `open`; give the memory back once it is sealed. An idle series
    // keeps no slots at all (144 bytes each; a tier of a series that
    // stopped would otherwise keep up to 8).
    if (td.open.empty())
      std::vector<open_entry>{}.swap(td.open);
    else if (td.open.capacity() > 2 * td.open.size() + 2)
      td.open.shrink_to_fit();
    return n - first;
  }

  /// Where the open entry for `start` is if the open windows before the
  /// newest are contiguous (events spread over the last minute keep them
  /// so): an index into td.open to check, or td.open.size() if none.
  static size_t guess_open(const tier_data& td, millis start,
                           millis res) noexcept {
    auto& open = td.open;
    if (open.empty() || start > open.back().start)
      return open.size();
    auto back = static_cast<uint64_t>(open.back().start - start)
                / static_cast<uint64_t>(res);
    return back < open.size() ? open.size() - 1 - back : open.size();
  }

  /// The index of the open entry for `start`, or where it would be
  /// inserted (std::lower_bound's answer).
  /// Starts are unique multiples of `res`, so at most (back - start) / res
  /// entries follow it: it is at or after size - 1 - that. Events spread
  /// over the last minute leave few gaps among a series' open windows, so
  /// a short walk up from there finds it, on neighbouring cache lines where
  /// a binary search over ~60 entries of 144 bytes misses on every probe.
  static size_t find_open(const tier_data& td, millis start,
                          millis res) noexcept {
    auto& open = td.open;
    if (open.empty() || start > open.back().start)
      return open.size();
    auto i = guess_open(td, start, res);
    if (i == open.size()) // more windows back than entries: from the front
      i = 0;
    for (int steps = 0; i < open.size() && open[i].start < start; ++i)
      if (++steps == 8)
        return static_cast<size_t>(
          std::lower_bound(open.begin() + static_cast<ptrdiff_t>(i),
                           open.end(), start, tier_data::before)
          - open.begin());
    return i;
  }

  /// The open bucket for `start` in tier `tier` of `rec`, created (or
  /// reopened from its block) if needed.
  bucket& open_bucket(series_record& rec, size_t tier, millis start) {
    auto& td = rec.tiers[tier];
    auto& open = td.open;
    if (open.empty() || open.back().start < start) {
      if (start > td.sealed_until()) {
        // A new window: first seal what is due (the in-order case costs
        // one check here), then open it. The window before the new one
        // stays open: batches of two parsers interleave around a window
        // boundary, and a backfill must not reopen what it just sealed.
        auto res = tiers[tier].resolution;
        if (!open.empty() && sealable(open.front().start, res, td)
            && open.front().start < start - res)
          seal_tier(rec, tier, open.size() < 8, false, start - res);
        open.push_back(open_entry{start, {}, false, true});
        ++buckets;
        return open.back().b;
      }
    } else if (open.back().start == start) {
      open.back().touch();
      return open.back().b;
    }
    auto it = open.begin()
              + static_cast<ptrdiff_t>(find_open(td, start, tiers[tier].resolution));
    if (it != open.end() && it->start == start) {
      it->touch();
      return it->b;
    }
    // A window before the newest open one, or in the sealed range.
    open_entry e{start, {}, false, true};
    bool in_sealed = start <= td.sealed_until();
    if (in_sealed)
      learn_lateness(td, start, tiers[tier].resolution);
    if (in_sealed && td.find_sealed(start, tiers[tier].resolution, mapping, e.b)) {
      e.reopened = true;
    } else {
      e.b = bucket{};
      ++buckets;
    }
    return open.insert(it, std::move(e))->b;
  }

  /// The id of series `key`, added if new.
  uint32_t resolve(std::string_view key, uint64_t hash) {
    if (auto id = find(key, hash))
      return *id;
    auto id = add_series(key, hash);
    if (series_handler)
      series_handler(key, hash, true);
    return id;
  }

  void apply(std::string_view key, uint64_t hash, millis ts, double value) {
    apply(resolve(key, hash), ts, value);
  }

  /// Applies a batch in order, as apply() event by event would. Events of
  /// a realistic batch land in cold series, tiers and buckets, and each
  /// step of apply() waits on the load of the one before (record, tiers,
  /// open entry): so the ids are resolved first, then the loads of the
  /// events a few places ahead are started while this one is applied
  /// (docs/benchmarks.md, "Apply stage").
  void apply_batch(const event_batch& batch) {
    auto n = batch.entries.size();
    ids.resize(n);
    bins.resize(n);
    constexpr size_t slot_ahead = 8;
    for (size_t k = 0; k < n; ++k) {
      if (k + slot_ahead < n)
        index.prefetch(batch.entries[k + slot_ahead].hash);
      auto& e = batch.entries[k];
      ids[k] = resolve(batch.key(e), e.hash);
      bins[k] = bin_of(e.value);
    }
    constexpr size_t record_ahead = 12, tiers_ahead = 8, open_ahead = 4,
                     bins_ahead = 2;
    for (size_t k = 0; k < n; ++k) {
      if (k + record_ahead < n)
        __builtin_prefetch(&series[ids[k + record_ahead]]);
      if (k + tiers_ahead < n) {
        auto* p = reinterpret_cast<const char*>(
          series[ids[k + tiers_ahead]].tiers.data());
        for (size_t b = 0; b < tiers.size() * sizeof(tier_data); b += 64)
          __builtin_prefetch(p + b);
      }
      if (k + open_ahead < n) {
        auto& rec = series[ids[k + open_ahead]];
        auto ts = batch.entries[k + open_ahead].ts;
        for (size_t i = 0; i < tiers.size(); ++i) {
          auto& td = rec.tiers[i];
          auto res = tiers[i].resolution;
          auto g = guess_open(td, align_down(ts, res), res);
          if (g < td.open.size()) {
            auto* p = reinterpret_cast<const char*>(&td.open[g]);
            __builtin_prefetch(p);
            __builtin_prefetch(p + 64);
            __builtin_prefetch(p + 128);
          }
        }
      }
      if (k + bins_ahead < n) {
        // The sketch counts the event will add to (the entries are in the
        // cache since open_ahead).
        auto& rec = series[ids[k + bins_ahead]];
        auto& e = batch.entries[k + bins_ahead];
        auto bin = bins[k + bins_ahead];
        for (size_t i = 0; i < tiers.size(); ++i) {
          auto& td = rec.tiers[i];
          auto res = tiers[i].resolution;
          auto start = align_down(e.ts, res);
          auto g = guess_open(td, start, res);
          if (g < td.open.size() && td.open[g].start == start)
            td.open[g].b.sketch.prefetch(bin, e.value < 0, is_zero(e.value));
        }
      }
      auto& e = batch.entries[k];
      apply(ids[k], e.ts, e.value, bins[k]);
    }
  }

  static bool is_zero(double value) noexcept {
    return !(std::fabs(value) >= ddsketch_mapping::min_indexable());
  }

  /// The sketch bin of `value` (0 for a value counted as zero).
  int32_t bin_of(double value) const noexcept {
    return is_zero(value) ? 0 : mapping.index(std::fabs(value));
  }

  void apply(uint32_t id, millis ts, double value) {
    apply(id, ts, value, bin_of(value));
  }

  /// apply() with the bin already known: one logarithm per event, shared
  /// by all tiers.
  void apply(uint32_t id, millis ts, double value, int32_t bin) {
    bool zero = is_zero(value);
    bool negative = value < 0;
    auto& rec = series[id];
    for (size_t i = 0; i < tiers.size(); ++i) {
      auto start = align_down(ts, tiers[i].resolution);
      // Below the tier's eviction floor (older than its retention at the
      // last evict): the next evict would drop the bucket. Not opening it
      // keeps a backfill sent faster than real time from piling up open
      // buckets between two evict passes (the 1 s tier of an hour's
      // history: a transient of hundreds of MB that fragmented the heap,
      // docs/benchmarks.md). The floor is state (snapshotted), not the
      // clock, so replay applies what the live store applied.
      if (start < rec.tiers[i].floor)
        continue;
      open_bucket(rec, i, start).add(ts, value, bin, negative, zero);
    }
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
        tag_views(rec.key, tags);
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
      auto metric = series_metric(series[id].key);
      auto m = by_metric.find(metric);
      if (m == by_metric.end())
        m = by_metric.emplace(std::string{metric}, std::vector<uint32_t>{})
              .first;
      m->second.push_back(id);
    }
  }

  /// The visible buckets of one series tier, in order (tests, equality).
  std::vector<std::pair<millis, bucket>> visible(const tier_data& td,
                                                 size_t tier) const {
    std::vector<std::pair<millis, bucket>> out;
    bucket scratch;
    td.for_each(std::numeric_limits<millis>::min(),
                std::numeric_limits<millis>::max(), tiers[tier].resolution,
                mapping, scratch,
                [&](millis t, const bucket& b) { out.emplace_back(t, b); });
    return out;
  }
};

series_store::series_store(tier_set tiers, ddsketch_mapping mapping)
  : impl_(std::make_unique<impl>(std::move(tiers), mapping)) {}

series_store::~series_store() = default;
series_store::series_store(series_store&&) noexcept = default;
series_store& series_store::operator=(series_store&&) noexcept = default;

// -- write side ---------------------------------------------------------------

void series_store::apply(const event_batch& batch) {
  impl_->apply_batch(batch);
  impl_->flush_closed();
}

void series_store::apply(std::string_view key, millis ts, double value) {
  impl_->apply(key, series_hash(key), ts, value);
  impl_->flush_closed();
}

void series_store::set_clock(millis now) noexcept {
  impl_->clock = std::max(impl_->clock, now);
}

size_t series_store::seal(millis now) {
  auto& s = *impl_;
  set_clock(now);
  size_t n = 0;
  for (auto& rec : s.series)
    for (size_t i = 0; i < s.tiers.size(); ++i) {
      n += s.seal_tier(rec, i, false, true);
      auto& hold = rec.tiers[i].hold;
      if (hold > 0) // halves in ~22 passes without late events
        hold -= std::max<uint32_t>(1, hold / 32);
    }
  s.flush_closed();
  return n;
}

size_t series_store::close(millis now, millis grace) {
  auto& s = *impl_;
  if (!s.handler)
    return 0;
  set_clock(now);
  size_t n = 0;
  for (auto& rec : s.series)
    for (size_t i = 0; i < s.tiers.size(); ++i) {
      auto& td = rec.tiers[i];
      auto res = s.tiers[i].resolution;
      // Open entries are sorted by start: stop at the first still open
      // window (start + res + grace > now, written without overflow).
      for (auto& e : td.open) {
        if (e.start > now - grace - res)
          break;
        if (e.start < td.floor || (e.published && !e.dirty))
          continue;
        s.publish(rec, i, e.start, e.b, e.reopened || e.published);
        e.published = true;
        e.dirty = false;
        ++n;
      }
    }
  s.flush_closed();
  return n;
}

void series_store::seal_after(millis horizon) noexcept {
  impl_->horizon = std::max<millis>(0, horizon);
}

millis series_store::seal_after() const noexcept { return impl_->horizon; }

void series_store::on_closed(closed_handler handler) {
  impl_->handler = std::move(handler);
  impl_->closed.clear();
}

void series_store::on_series(
  std::function<void(std::string_view key, uint64_t hash, bool added)> handler) {
  impl_->series_handler = std::move(handler);
}

void series_store::for_each_key(
  const std::function<void(std::string_view)>& f) const {
  for (auto& rec : impl_->series)
    f(rec.key);
}

size_t series_store::evict(millis now) {
  auto& s = *impl_;
  s.flush_closed();
  size_t dropped = 0;
  bool emptied = false;
  for (auto& rec : s.series) {
    bool empty = true;
    for (size_t i = 0; i < s.tiers.size(); ++i) {
      auto& td = rec.tiers[i];
      auto cutoff = now - s.tiers[i].retention;
      // Open buckets one by one (reopened copies are counted in blocks).
      auto n = std::lower_bound(td.open.begin(), td.open.end(), cutoff,
                                tier_data::before)
               - td.open.begin();
      for (ptrdiff_t k = 0; k < n; ++k)
        if (!td.open[static_cast<size_t>(k)].reopened)
          ++dropped;
      td.open.erase(td.open.begin(), td.open.begin() + n);
      if (td.open.empty() && td.open.capacity() > 0)
        std::vector<open_entry>{}.swap(td.open);
      // Sealed ones: hidden below the floor, freed block by block.
      td.floor = std::max(td.floor, cutoff);
      size_t whole = 0;
      while (whole < td.blocks.size()
             && td.blocks[whole].last_start() < td.floor) {
        dropped += td.blocks[whole].size();
        td.sealed -= td.blocks[whole].size();
        ++whole;
      }
      td.blocks.erase(td.blocks.begin(),
                      td.blocks.begin() + static_cast<ptrdiff_t>(whole));
      if (td.blocks.capacity() > td.blocks.size() + 4)
        td.blocks.shrink_to_fit();
      empty = empty && td.empty();
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
                             [](auto& td) { return td.empty(); });
    if (empty) {
      if (s.series_handler)
        s.series_handler(rec.key, rec.hash, false);
    } else {
      kept.push_back(std::move(rec));
    }
  }
  s.series = std::move(kept);
  s.index.clear();
  for (uint32_t id = 0; id < s.series.size(); ++id)
    s.index.insert(s.series[id].hash, id);
  s.rebuild_metric_index();
  return dropped;
}

// -- read side ----------------------------------------------------------------

namespace {

/// One series a query reads: its group's values and key, and whether its
/// points are finalised here (query_group, "Final form").
struct query_member {
  const series_record* rec;
  std::vector<std::optional<std::string>> values;
  std::string key;
  bool final;
};

/// True if every tag of a series is a group_by or where key: the group
/// values and `where` then spell its whole key, so no other series (in any
/// partition) shares its group unless it has further tags.
bool keyed_by(const std::vector<tag_view>& tags, const query_spec& q) {
  return std::all_of(tags.begin(), tags.end(), [&](const tag_view& t) {
    return std::find(q.group_by.begin(), q.group_by.end(), t.first)
             != q.group_by.end()
           || std::any_of(q.where.begin(), q.where.end(),
                          [&](const tag& w) { return w.first == t.first; });
  });
}

void reset(bucket& b) noexcept {
  b.count = 0;
  b.sum = 0;
  b.min = std::numeric_limits<double>::infinity();
  b.max = -std::numeric_limits<double>::infinity();
  b.last_ts = std::numeric_limits<millis>::min();
  b.last = 0;
  b.sketch.clear();
}

/// finalize() of the point a merge of `b` into an empty bucket would give
/// (the sum of such a merge is 0 + b.sum: the same value, but never -0).
double final_value(const agg_spec& a, const bucket& b, millis step,
                   const ddsketch_mapping& m) {
  if (b.empty() || (a.kind != agg_kind::sum && a.kind != agg_kind::avg))
    return finalize(a, b, step, m);
  auto sum = 0.0 + b.sum;
  return a.kind == agg_kind::sum ? sum : sum / static_cast<double>(b.count);
}


/// One agg of a finished point. A point of one sealed bucket takes its
/// quantiles from the cursor, which reads a long store from its top (a
/// few bins for a p99, docs/storage-format.md 3.2).
double point_value(const agg_spec& a, const bucket& b, const block_cursor* cur,
                   millis step, const ddsketch_mapping& m) {
  // Any quantile of one value is that value (finalize clamps to [min, max]).
  if (a.kind == agg_kind::quantile && b.count == 1)
    return b.min;
  if (cur && cur->lazy() && a.kind == agg_kind::quantile)
    return std::clamp(cur->quantile(b, a.quantile), b.min, b.max);
  return final_value(a, b, step, m);
}

/// acc.merge(b) for a bucket of tier_data::for_each<true>: a store the
/// cursor left undecoded is decoded into `scratch` (which is `b`) first, and
/// a one-event bucket's value goes into acc's sketch without a sketch of its
/// own (the same bins and counts: a sketch merge costs more than the
/// logarithm). Without `sketches`, no sketch at all.
void fold_bucket(bucket& acc, const bucket& b, block_cursor* cur,
                 bucket& scratch, bool sketches, const ddsketch_mapping& m) {
  if (!sketches) {
    acc.merge_without_sketch(b);
  } else if ((cur && cur->single()) || (!cur && b.count == 1)) {
    acc.add(b.last_ts, b.last, m);
  } else {
    if (cur)
      cur->materialize(scratch);
    acc.merge(b);
  }
}

/// The planner's segments of a query, in time order, and `edge`: where its
/// trailing edge begins — the segments after the serving tier's last one,
/// finer buckets of the range's last coarse window [edge->from, end[-1].to)
/// — or `end` if there is none (or it is not inside one coarse window).
struct segment_plan {
  const query_segment* begin = nullptr;
  const query_segment* end = nullptr;
  const query_segment* edge = nullptr;
  size_t serving = 0;  ///< the coarsest tier read
};

/// Calls f(start, bucket, cursor, res) for the buckets of `rec` that the
/// plan reads, in time order (tier_data::for_each<true>, `res` the bucket's
/// resolution). The trailing edge [y, c) is read from the serving tier's
/// bucket at y instead when all of its events lie before c (its latest
/// timestamp says so): the same events, one bucket instead of up to a
/// window of fine ones (docs/architecture.md, "Compact store", Queries).
template <class Record, class F>
void read_segments(const tier_set& tiers, const ddsketch_mapping& m,
                   const Record& rec, const segment_plan& plan,
                   bucket& scratch, F&& f) {
  auto read = [&](const query_segment* from, const query_segment* to) {
    for (auto* seg = from; seg != to; ++seg) {
      auto res = tiers[seg->tier].resolution;
      rec.tiers[seg->tier].template for_each<true>(
        seg->from, seg->to, res, m, scratch,
        [&](millis start, const bucket& b, block_cursor* cur) {
          f(start, b, cur, res);
        });
    }
  };
  read(plan.begin, plan.edge);
  if (plan.edge == plan.end)
    return;
  auto y = plan.edge->from;
  auto c = (plan.end - 1)->to;
  auto res = tiers[plan.serving].resolution;
  bool served = false;
  rec.tiers[plan.serving].template for_each<true>(
    y, y + 1, res, m, scratch,
    [&](millis start, const bucket& b, block_cursor* cur) {
      if (start == y && b.last_ts < c) {
        served = true;
        f(start, b, cur, res);
      }
    });
  if (!served)
    read(plan.edge, plan.end);
}

/// The final form of one series' points (query_group, "Final form"): the
/// buckets of one point are merged into `acc` (a point of one bucket is
/// finalised from that bucket, no copy), and emit(t, bucket, cursor) is
/// called for each non-empty point as soon as it is complete, in bucket
/// order; `cursor` is the sealed bucket's cursor for a point of one sealed
/// bucket, else null. Without a quantile, long sketch stores are not
/// decoded at all.
template <class Record, class Emit>
void fold_final(const tier_set& tiers, const ddsketch_mapping& mapping,
                const Record& rec, const query_spec& q,
                const segment_plan& plan, bool sketches, bucket& scratch,
                bucket& acc, Emit&& emit_point) {
  auto emit = [&](millis t, const bucket& b, const block_cursor* cur) {
    if (!b.empty())
      emit_point(t, b, cur);
  };
  size_t merged = 0;  // buckets in `acc`
  millis acc_t = 0;
  auto flush = [&] {
    if (merged > 0)
      emit(acc_t, acc, nullptr);
    merged = 0;
  };
  read_segments(
    tiers, mapping, rec, plan, scratch,
    [&](millis start, const bucket& b, block_cursor* cur, millis res) {
      auto t = align_down(start - q.align, q.step) + q.align;
      if (merged > 0 && t != acc_t)
        flush();
      // The last bucket of its point: start + res ends it.
      millis end = 0, point_end = 0;
      bool last = !__builtin_add_overflow(start, res, &end)
                  && !__builtin_add_overflow(t, q.step, &point_end)
                  && end == point_end;
      if (merged == 0 && last) {
        emit(t, b, cur);
        return;
      }
      if (merged == 0) {
        reset(acc);
        acc_t = t;
      }
      fold_bucket(acc, b, cur, scratch, sketches, mapping);
      ++merged;
      if (last)
        flush();
    });
  flush();
}

/// The planner's segments of `q` (query.hpp); none: one of q.tier, held in
/// `whole`. Empty (begin null) if the step is not positive or a segment
/// names a tier the store does not have.
segment_plan segments_of(const query_spec& q, const tier_set& tiers,
                         query_segment& whole) {
  whole = query_segment{q.tier, q.from, q.to};
  segment_plan p;
  p.begin = q.segments.empty() ? &whole : q.segments.data();
  p.end = q.segments.empty() ? &whole + 1 : q.segments.data() + q.segments.size();
  if (q.step <= 0 || std::any_of(p.begin, p.end, [&](auto& seg) {
        return seg.tier >= tiers.size();
      }))
    return {};
  // Tiers are finest first: the serving tier has the highest index; the
  // trailing edge follows its last segment and must lie inside the one
  // coarse window where it begins (the planner's always does).
  for (auto* seg = p.begin; seg != p.end; ++seg)
    p.serving = std::max(p.serving, seg->tier);
  p.edge = p.end;
  while (p.edge != p.begin && (p.edge - 1)->tier != p.serving)
    --p.edge;
  auto res = tiers[p.serving].resolution;
  if (p.edge == p.begin || p.edge == p.end
      || align_down(p.edge->from, res) != p.edge->from
      || (p.end - 1)->to - p.edge->from > res)
    p.edge = p.end;
  return p;
}

} // namespace

void series_store::query(const query_spec& q, query_partial& out) const {
  auto& s = *impl_;
  query_segment whole;
  auto plan = segments_of(q, s.tiers, whole);
  if (!plan.begin)
    return;
  // Points carry a sketch only if some agg is a quantile.
  bool sketches = std::any_of(q.aggs.begin(), q.aggs.end(), [](auto& a) {
    return a.kind == agg_kind::quantile;
  });
  // The matching series with their groups. A series is finalised here if
  // it alone makes up its group (keyed_by) and no other series of this
  // partition, nor a group already in `out`, shares its group.
  std::vector<query_member> members;
  bool any_final = false;
  s.for_each_match(q.metric, q.where, [&](const series_record& rec,
                                          const std::vector<tag_view>& tags) {
    query_member m{&rec, std::vector<std::optional<std::string>>(q.group_by.size()),
                   {}, q.finals && keyed_by(tags, q)};
    for (size_t i = 0; i < q.group_by.size(); ++i)
      if (auto* v = find_tag(tags, q.group_by[i]))
        m.values[i] = std::string{*v};
    m.key = encode_group_key(m.values);
    any_final = any_final || m.final;
    members.push_back(std::move(m));
  });
  if (any_final) {
    std::vector<query_member*> by_key;
    by_key.reserve(members.size());
    for (auto& m : members)
      by_key.push_back(&m);
    std::sort(by_key.begin(), by_key.end(),
              [](auto* x, auto* y) { return x->key < y->key; });
    for (size_t i = 0; i < by_key.size(); ++i) {
      auto* m = by_key[i];
      if ((i > 0 && by_key[i - 1]->key == m->key)
          || (i + 1 < by_key.size() && by_key[i + 1]->key == m->key)
          || (!out.groups.empty() && out.groups.count(m->key) != 0))
        m->final = false;
    }
  }
  bucket scratch;
  bucket acc;
  for (auto& m : members) {
    auto& rec = *m.rec;
    query_group* group = nullptr;
    auto open_group = [&] {
      auto [git, added] = out.groups.try_emplace(std::move(m.key));
      group = &git->second;
      if (added)
        group->values = std::move(m.values);
      else if (m.final || group->final)
        out.collided = true;  // a final group met twice (callers pass an
                              // empty `out`, so this does not happen)
    };
    if (!m.final) {
      // Sketch form: every bucket folded into its point of the partial.
      // Without a quantile, long sketch stores are not even decoded.
      decltype(group->points.end()) hint;
      read_segments(
        s.tiers, s.mapping, rec, plan, scratch,
        [&](millis start, const bucket& b, block_cursor* cur, millis) {
          if (!group) {
            open_group();
            hint = group->points.end();
          }
          hint = group->points.try_emplace(
            hint, align_down(start - q.align, q.step) + q.align);
          fold_bucket(hint->second, b, cur, scratch, sketches, s.mapping);
          ++hint;
        });
      continue;
    }
    // Final form: each point's aggs computed where the buckets are
    // (fold_final).
    fold_final(s.tiers, s.mapping, rec, q, plan, sketches,
               scratch, acc,
               [&](millis t, const bucket& b, const block_cursor* cur) {
                 if (!group) {
                   open_group();
                   group->final = true;
                 }
                 // Buckets come in time order, so points do; anything else
                 // would mean a plan this code does not expect: let the
                 // caller ask again.
                 if (!group->finals.empty() && group->finals.back().t >= t)
                   out.collided = true;
                 group->finals.push_back(final_point{t, b.count});
                 for (auto& a : q.aggs)
                   group->final_values.push_back(
                     point_value(a, b, cur, q.step, s.mapping));
               });
  }
}

series_store::series_read
series_store::query_series(std::string_view key, const query_spec& q,
                           std::vector<final_point>& finals,
                           std::vector<double>& values) const {
  auto& s = *impl_;
  auto id = s.find(key);
  if (!id)
    return series_read::missing;
  query_segment whole;
  auto plan = segments_of(q, s.tiers, whole);
  if (!plan.begin)
    return series_read::found;
  bool sketches = std::any_of(q.aggs.begin(), q.aggs.end(), [](auto& a) {
    return a.kind == agg_kind::quantile;
  });
  bool ordered = true;
  auto first = finals.size();
  bucket scratch;
  bucket acc;
  // Exactly the final form of query() for a group of this one series.
  fold_final(s.tiers, s.mapping, s.series[*id], q, plan,
             sketches, scratch, acc,
             [&](millis t, const bucket& b, const block_cursor* cur) {
               if (finals.size() > first && finals.back().t >= t)
                 ordered = false;
               finals.push_back(final_point{t, b.count});
               for (auto& a : q.aggs)
                 values.push_back(point_value(a, b, cur, q.step, s.mapping));
             });
  return ordered ? series_read::found : series_read::unordered;
}

void series_store::topk(const topk_spec& q, topk_partial& out) const {
  auto& s = *impl_;
  if (q.tier >= s.tiers.size())
    return;
  auto res = s.tiers[q.tier].resolution;
  bucket scratch;
  s.for_each_match(q.metric, q.where, [&](const series_record& rec,
                                          const std::vector<tag_view>& tags) {
    auto* v = find_tag(tags, q.by);
    if (!v)
      return;
    bucket* agg = nullptr;
    rec.tiers[q.tier].for_each(q.from, q.to, res, s.mapping, scratch,
                               [&](millis, const bucket& b) {
                                 if (!agg)
                                   agg = &out.values.try_emplace(std::string{*v})
                                            .first->second;
                                 agg->merge(b);
                               });
  });
}

void series_store::series(const series_spec& q, series_partial& out) const {
  std::vector<const std::string*> keys;
  impl_->for_each_match(q.metric, q.where,
                        [&](const series_record& rec, auto&) {
                          keys.push_back(&rec.key);
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

bool series_store::contains(std::string_view key) const noexcept {
  return impl_->find(key).has_value();
}

uint64_t series_store::events_applied() const noexcept {
  return impl_->events;
}

const tier_set& series_store::tiers() const noexcept { return impl_->tiers; }

const ddsketch_mapping& series_store::mapping() const noexcept {
  return impl_->mapping;
}

store_memory series_store::memory() const {
  auto& s = *impl_;
  store_memory m;
  m.sealed_buckets.assign(s.tiers.size(), 0);
  m.sealed_bytes.assign(s.tiers.size(), 0);
  // Heap blocks cost their size plus about one word of malloc header.
  constexpr uint64_t header = 16;
  auto sketch_bytes = [](const bucket& b) {
    auto n = b.sketch.memory_usage();
    return n == 0 ? 0 : n + header;
  };
  for (auto& rec : s.series) {
    // The record, its key's heap copy (beyond the short-string buffer)
    // and its id in by_metric.
    m.dictionary_bytes += sizeof(series_record)
                          + (rec.key.capacity() > 15
                               ? rec.key.capacity() + 1 + header
                               : 0)
                          + sizeof(uint32_t);
    for (size_t i = 0; i < s.tiers.size(); ++i) {
      auto& td = rec.tiers[i];
      m.dictionary_bytes += sizeof(tier_data)
                            + (td.tail ? sizeof(block_state) + header : 0);
      m.open_buckets += td.open.size();
      m.open_bytes += td.open.capacity() * sizeof(open_entry)
                      + (td.open.capacity() ? header : 0);
      for (auto& e : td.open)
        m.open_bytes += sketch_bytes(e.b);
      m.sealed_buckets[i] += td.sealed;
      m.sealed_bytes[i] += td.blocks.capacity() * sizeof(bucket_block)
                           + (td.blocks.capacity() ? header : 0);
      // Streams up to 4 KiB are slots of the stream pool, without a
      // malloc header (cqrs/detail/stream_pool.hpp).
      for (auto& blk : td.blocks)
        m.sealed_bytes[i] += blk.memory_usage()
                             + (blk.memory_usage() > 4096 ? header : 0);
    }
  }
  m.dictionary_bytes += s.index.memory_bytes();
  for (auto& [name, ids] : s.by_metric)
    m.dictionary_bytes += name.capacity() + ids.capacity() * sizeof(uint32_t)
                          + 64;
  return m;
}

// -- persistence --------------------------------------------------------------

namespace {

void put_bucket(std::string& out, const bucket& b) {
  detail::put_varint(out, b.count);
  detail::put_double(out, b.sum);
  detail::put_double(out, b.min);
  detail::put_double(out, b.max);
  detail::put_double(out, b.last);
  detail::put_svarint(out, b.last_ts);
  b.sketch.encode(out);
}

bool get_bucket(detail::reader& r, std::string_view& in, bucket& b) {
  return r.varint(b.count) && r.f64(b.sum) && r.f64(b.min) && r.f64(b.max)
         && r.f64(b.last) && r.svarint(b.last_ts) && b.sketch.decode(in)
         && b.count != 0 && b.sketch.count() == b.count;
}

} // namespace

// Format (version 4; versions 3 and 2 are the same with block codecs 2 and
// 1, re-encoded when read): "CRNS", version byte, sketch accuracy (f64), tiers
// (varint n, then svarint resolution and retention each), varint events
// applied, varint series count; per series: varint key length, key bytes,
// then per tier: svarint floor (i64 min = none), varint block count and the
// blocks as bucket_block::encode writes them, varint open count and per open
// bucket svarint start delta, a flag byte (1 = reopened), varint count, f64
// sum, min, max, last, svarint last_ts, sketch encoding.
// Version 1 (before sealed blocks) had, per tier, only the bucket list (as
// the open buckets here, without the flag byte).
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
    detail::put_varint(out, rec.key.size());
    out.append(rec.key);
    for (auto& td : rec.tiers) {
      detail::put_svarint(out, td.floor);
      detail::put_varint(out, td.blocks.size());
      for (auto& blk : td.blocks)
        blk.encode(out);
      detail::put_varint(out, td.open.size());
      millis prev = 0;
      for (auto& e : td.open) {
        detail::put_svarint(out, static_cast<int64_t>(
                                   static_cast<uint64_t>(e.start)
                                   - static_cast<uint64_t>(prev)));
        prev = e.start;
        out.push_back(e.reopened ? 1 : 0);
        put_bucket(out, e.b);
      }
    }
  }
}

bool series_store::decode(std::string_view in) {
  auto& s = *impl_;
  if (!in.starts_with(magic) || in.size() < magic.size() + 1)
    return false;
  auto version = static_cast<uint8_t>(in[magic.size()]);
  if (version != format_version && version != format_v3
      && version != format_v2 && version != format_v1)
    return false;
  // A version-2 or 3 projection's blocks are re-encoded with today's codec.
  auto codec = version == format_v2   ? block_codec_v1
               : version == format_v3 ? block_codec_v2
                                      : block_codec;
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
  fresh.clock = s.clock;
  fresh.horizon = s.horizon;
  uint64_t num_series = 0;
  if (!r.varint(fresh.events) || !r.varint(num_series)
      || num_series > in.size())
    return false;
  std::vector<tag> tags;
  for (uint64_t n = 0; n < num_series; ++n) {
    uint64_t len = 0;
    std::string_view key;
    if (!r.varint(len) || !r.bytes(len, key) || series_metric(key).empty()
        || !decode_series_tags(key, tags) || fresh.find(key))
      return false;
    auto id = fresh.add_series(key, series_hash(key));
    auto& rec = fresh.series[id];
    for (size_t t = 0; t < fresh.tiers.size(); ++t) {
      auto res = fresh.tiers[t].resolution;
      auto& td = rec.tiers[t];
      if (version != format_v1) {
        uint64_t num_blocks = 0;
        if (!r.svarint(td.floor) || !r.varint(num_blocks)
            || num_blocks > in.size())
          return false;
        td.blocks.resize(num_blocks);
        block_state st;
        for (uint64_t b = 0; b < num_blocks; ++b) {
          if (!td.blocks[b].decode(in, res, fresh.mapping, st, codec)
              || (b > 0
                  && td.blocks[b].first_start() <= td.blocks[b - 1].last_start()))
            return false;
          td.sealed += td.blocks[b].size();
        }
        if (num_blocks > 0 && keeps_tail(res))
          td.tail = std::make_unique<block_state>(st);
        fresh.buckets += td.sealed;
      }
      uint64_t count = 0;
      if (!r.varint(count) || count > in.size())
        return false;
      millis prev = 0;
      for (uint64_t i = 0; i < count; ++i) {
        int64_t delta = 0;
        uint64_t flag = 0;
        std::string_view flag_byte;
        open_entry e{0, {}, false, false};  // not being written
        if (!r.svarint(delta))
          return false;
        if (version != format_v1) {
          if (!r.bytes(1, flag_byte) || static_cast<uint8_t>(flag_byte[0]) > 1)
            return false;
          flag = static_cast<uint8_t>(flag_byte[0]);
        }
        if (!get_bucket(r, in, e.b))
          return false;
        e.start = static_cast<millis>(static_cast<uint64_t>(prev)
                                      + static_cast<uint64_t>(delta));
        e.reopened = flag == 1;
        if ((i > 0 && e.start <= prev) || align_down(e.start, res) != e.start
            || (e.reopened && e.start > td.sealed_until()))
          return false;
        prev = e.start;
        if (!e.reopened)
          ++fresh.buckets;
        td.open.push_back(std::move(e));
      }
    }
  }
  if (!in.empty())
    return false;
  fresh.handler = std::move(s.handler);
  fresh.series_handler = std::move(s.series_handler);
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
    auto id = b.find(rec.key, rec.hash);
    if (!id)
      return false;
    auto& other = b.series[*id];
    for (size_t i = 0; i < a.tiers.size(); ++i)
      if (a.visible(rec.tiers[i], i) != b.visible(other.tiers[i], i))
        return false;
  }
  return true;
}

} // namespace cairn::cqrs
