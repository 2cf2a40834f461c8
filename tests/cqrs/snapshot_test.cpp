#include "cqrs/snapshot.hpp"

#include "cqrs/idempotency_window.hpp"
#include "cqrs/journal_record.hpp"
#include "cqrs/partial_codec.hpp"
#include "cqrs/series_key.hpp"
#include "cqrs/series_store.hpp"
#include "runtime/journal.hpp"

#include <doctest/doctest.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <mutex>
#include <random>

using namespace cairn::cqrs;
using cairn::runtime::journal;

namespace {

using namespace std::string_view_literals;
constexpr auto projection_sample = "projection-bytes\0with-nul"sv;

std::string sample_envelope() {
  snapshot_header h;
  h.partition = 12;
  h.covered_seq = 123456789;
  h.taken_at = 1'764'190'000'000;
  std::string out;
  encode_snapshot(h, projection_sample, "window", out);
  return out;
}

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    auto pattern = (std::filesystem::temp_directory_path()
                    / "cairn-snapshot-test-XXXXXX")
                     .string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

/// Synchronous wrappers around the journal's asynchronous writes.
struct sync_writer {
  journal& j;
  std::mutex mtx;
  std::condition_variable cv;
  size_t done = 0;
  size_t expected = 0;
  bool all_ok = true;

  cairn::runtime::journal_callback cb() {
    ++expected;
    return [this](bool ok, std::string) {
      std::lock_guard<std::mutex> guard{mtx};
      ++done;
      all_ok = all_ok && ok;
      cv.notify_all();
    };
  }

  void wait() {
    std::unique_lock<std::mutex> guard{mtx};
    cv.wait(guard, [this] { return done == expected; });
    REQUIRE(all_ok);
  }
};

series_store make_store() {
  return series_store{tier_set::parse({"1s:15m", "1m:2d"}),
                      ddsketch_mapping{0.01}};
}

event_batch random_batch(std::mt19937_64& rng, size_t n) {
  static const millis base = 1'764'190'000'000;
  event_batch batch;
  for (size_t i = 0; i < n; ++i) {
    auto key = make_series_key("m" + std::to_string(rng() % 3),
                               {{"host", "h" + std::to_string(rng() % 5)}});
    batch.add(key, series_hash(key), base + static_cast<millis>(rng() % 600000),
              static_cast<double>(rng() % 10000) / 10.0);
  }
  return batch;
}

/// The live write path of a partition, as the partition actor runs it:
/// journal record first (version 2, the series dictionary reset by the
/// first record and by the first after each snapshot), then projection and
/// idempotency window. With `self_contained`, version-1 records (as written
/// before the dictionary existed).
struct live_partition {
  uint32_t id;
  bool self_contained = false;
  series_store store = make_store();
  idempotency_window keys{1000, 3'600'000};
  uint64_t seq = 0;
  series_dictionary dictionary;
  bool reset = true;

  void ingest(sync_writer& w, event_batch batch, std::string key,
              millis now) {
    keys.expire(now);
    if (!key.empty() && keys.contains(key))
      return; // duplicate: applied at most once
    std::string bytes;
    if (self_contained)
      encode_record(now, key, batch, bytes);
    else
      encode_record(now, key, batch, dictionary, reset, bytes);
    reset = false;
    w.j.append(id, ++seq, std::move(bytes), w.cb());
    keys.insert(std::move(key), now);
    store.apply(batch);
  }

  void snapshot(sync_writer& w, millis now) {
    std::string bytes;
    encode_snapshot(snapshot_header{id, seq, now}, store, keys, bytes);
    w.j.write_snapshot(id, seq, std::move(bytes), w.cb());
    reset = true;
  }
};

} // namespace

TEST_SUITE("cqrs.snapshot") {

TEST_CASE("envelope round trip") {
  auto bytes = sample_envelope();
  CHECK(bytes.substr(0, 4) == "CSNP");
  snapshot_view view;
  REQUIRE(decode_snapshot(bytes, view) == snapshot_result::ok);
  CHECK(view.header.partition == 12);
  CHECK(view.header.covered_seq == 123456789);
  CHECK(view.header.taken_at == 1'764'190'000'000);
  CHECK(view.projection == projection_sample);
  CHECK(view.idempotency == "window");
  // empty parts
  std::string empty;
  encode_snapshot(snapshot_header{}, "", "", empty);
  REQUIRE(decode_snapshot(empty, view) == snapshot_result::ok);
  CHECK(view.projection.empty());
  CHECK(view.idempotency.empty());
}

TEST_CASE("bad magic and bad version are told apart") {
  auto bytes = sample_envelope();
  snapshot_view view;
  auto copy = bytes;
  copy[0] = 'X';
  CHECK(decode_snapshot(copy, view) == snapshot_result::bad_magic);
  CHECK(decode_snapshot("JUNK", view) == snapshot_result::bad_magic);
  CHECK(decode_snapshot("{\"json\":1}", view) == snapshot_result::bad_magic);
  copy = bytes;
  copy[4] = 2;
  CHECK(decode_snapshot(copy, view) == snapshot_result::bad_version);
}

TEST_CASE("every single-byte corruption is detected") {
  auto bytes = sample_envelope();
  snapshot_view view;
  for (size_t i = 0; i < bytes.size(); ++i)
    for (int mask : {0x01, 0x80, 0xFF}) {
      auto copy = bytes;
      copy[i] = static_cast<char>(copy[i] ^ mask);
      CHECK_MESSAGE(decode_snapshot(copy, view) != snapshot_result::ok,
                    "byte " << i << " mask " << mask);
    }
}

TEST_CASE("truncation and trailing bytes are detected") {
  auto bytes = sample_envelope();
  snapshot_view view;
  for (size_t len = 0; len < bytes.size(); ++len)
    CHECK_MESSAGE(decode_snapshot(std::string_view{bytes}.substr(0, len), view)
                    == snapshot_result::truncated,
                  "length " << len);
  CHECK(decode_snapshot(bytes + "!", view) == snapshot_result::malformed);
}

TEST_CASE("in-place encoding equals encoding of the parts") {
  std::mt19937_64 rng{9};
  auto store = make_store();
  store.apply(random_batch(rng, 500));
  idempotency_window keys{10, 0};
  keys.insert("a", 1);
  std::string projection;
  store.encode(projection);
  std::string window;
  keys.encode(window);
  snapshot_header h{3, 77, 5};
  std::string from_parts;
  encode_snapshot(h, projection, window, from_parts);
  std::string in_place;
  encode_snapshot(h, store, keys, in_place);
  CHECK(in_place == from_parts);
}

TEST_CASE("restore: snapshot + replay equals the live state") {
  temp_dir dir;
  auto j = journal::open((dir.path / "db").string());
  sync_writer w{*j};
  std::mt19937_64 rng{11};
  live_partition live{4};
  millis now = 1'764'190'000'000;
  for (int i = 0; i < 60; ++i) {
    now += 1000;
    auto key = i % 3 == 0 ? "req-" + std::to_string(i / 6) : std::string{};
    live.ingest(w, random_batch(rng, 50), key, now);
    if (i == 20 || i == 40)
      live.snapshot(w, now);
  }
  w.wait();
  CHECK(live.seq < 60); // some duplicates were dropped

  SUBCASE("from the newest snapshot") {
    auto store = make_store();
    idempotency_window keys{1000, 3'600'000};
    auto report = restore_partition(*j, 4, store, keys);
    CHECK(report.ok);
    CHECK(report.snapshots_rejected == 0);
    CHECK(report.snapshot_seq == j->snapshot_seqs(4).front());
    CHECK(report.records_replayed == live.seq - report.snapshot_seq);
    CHECK(report.next_seq == live.seq + 1);
    CHECK(store == live.store);
    CHECK(keys == live.keys);
  }
  SUBCASE("full replay equals snapshot + replay") {
    j->prune(4, 0, 0, w.cb()); // drop all snapshots, keep the journal
    w.wait();
    auto store = make_store();
    idempotency_window keys{1000, 3'600'000};
    auto report = restore_partition(*j, 4, store, keys);
    CHECK(report.ok);
    CHECK(report.snapshot_seq == 0);
    CHECK(report.records_replayed == live.seq);
    CHECK(store == live.store);
    CHECK(keys == live.keys);
  }
  SUBCASE("a corrupt newest snapshot falls back to the previous one") {
    auto newest = j->snapshot_seqs(4).front();
    auto bytes = *j->read_snapshot(4, newest);
    bytes[bytes.size() / 2] ^= 0x20;
    j->write_snapshot(4, newest, bytes, w.cb());
    j->write_snapshot(4, live.seq + 5, "garbage", w.cb()); // newer, unusable
    w.wait();
    auto store = make_store();
    idempotency_window keys{1000, 3'600'000};
    auto report = restore_partition(*j, 4, store, keys);
    CHECK(report.ok);
    CHECK(report.snapshots_rejected == 2);
    CHECK(report.snapshot_seq == j->snapshot_seqs(4)[2]);
    CHECK(store == live.store);
    CHECK(keys == live.keys);
  }
  SUBCASE("a corrupt record stops recovery naming partition and seq") {
    auto target = live.seq - 2;
    j->append(4, target, "definitely not a record", w.cb());
    w.wait();
    {
      auto store = make_store();
      idempotency_window keys{1000, 3'600'000};
      auto report = restore_partition(*j, 4, store, keys);
      CHECK(!report.ok);
      CHECK(report.error.find("partition 4") != std::string::npos);
      CHECK(report.error.find("seq " + std::to_string(target))
            != std::string::npos);
    }
    {
      auto store = make_store();
      idempotency_window keys{1000, 3'600'000};
      auto report = restore_partition(*j, 4, store, keys, {true});
      CHECK(report.ok);
      // (it defined no series the later ones use: they still decode)
      CHECK(report.records_skipped == 1);
      CHECK(report.next_seq == live.seq + 1);
    }
  }
  SUBCASE("a gap in the journal is reported") {
    auto oldest = j->snapshot_seqs(4).back();
    // journal covered by the oldest snapshot deleted, then that snapshot and
    // the newer one lost: replay from 1 finds a gap
    j->prune(4, 0, oldest, w.cb());
    w.wait();
    auto store = make_store();
    idempotency_window keys{1000, 3'600'000};
    auto report = restore_partition(*j, 4, store, keys);
    CHECK(!report.ok);
    CHECK(report.error.find("missing") != std::string::npos);
  }
}

TEST_CASE("restore: skip-corrupt also skips records naming series it defined") {
  temp_dir dir;
  auto j = journal::open((dir.path / "db").string());
  sync_writer w{*j};
  auto one = [](const std::string& metric, millis ts) {
    event_batch b;
    auto key = make_series_key(metric, {});
    b.add(key, series_hash(key), ts, 1.0);
    return b;
  };
  live_partition live{3};
  millis now = 1'764'190'000'000;
  live.ingest(w, one("x", now), "", now);      // 1: reset, defines x
  live.ingest(w, one("y", now + 1), "", now);  // 2: defines y
  live.ingest(w, one("y", now + 2), "", now);  // 3: uses y
  live.ingest(w, one("x", now + 3), "", now);  // 4: uses x only
  live.snapshot(w, now);                        // the next record resets
  live.ingest(w, one("y", now + 4), "", now);  // 5: reset, defines y again
  j->append(3, 2, "corrupt", w.cb());
  w.wait();
  auto store = make_store();
  idempotency_window keys{1000, 3'600'000};
  j->prune(3, 0, 0, w.cb()); // no snapshot: replay from record 1
  w.wait();
  auto report = restore_partition(*j, 3, store, keys, {true});
  CHECK(report.ok);
  // 2 is corrupt; 3 and 4 expect the dictionary size after 2; 5 resets
  CHECK(report.records_skipped == 3);
  CHECK(report.records_replayed == 2);
  CHECK(report.events_replayed == 2);
  CHECK(report.next_seq == 6);
}

TEST_CASE("restore: a journal of version-1 records still replays") {
  temp_dir dir;
  auto j = journal::open((dir.path / "db").string());
  sync_writer w{*j};
  std::mt19937_64 rng{12};
  live_partition live{2, true};
  millis now = 1'764'190'000'000;
  for (int i = 0; i < 30; ++i) {
    now += 1000;
    live.ingest(w, random_batch(rng, 40), "r" + std::to_string(i % 25), now);
    if (i == 10)
      live.snapshot(w, now);
  }
  w.wait();
  for (uint64_t from : {uint64_t{0}, j->snapshot_seqs(2).front()}) {
    if (from == 0) {
      j->prune(2, 0, 0, w.cb());
      w.wait();
    }
    auto store = make_store();
    idempotency_window keys{1000, 3'600'000};
    auto report = restore_partition(*j, 2, store, keys);
    CHECK(report.ok);
    CHECK(store == live.store);
    CHECK(keys == live.keys);
  }
}

TEST_CASE("restore of an empty partition") {
  temp_dir dir;
  auto j = journal::open((dir.path / "db").string());
  auto store = make_store();
  idempotency_window keys{10, 0};
  auto report = restore_partition(*j, 9, store, keys);
  CHECK(report.ok);
  CHECK(report.snapshot_seq == 0);
  CHECK(report.records_replayed == 0);
  CHECK(report.next_seq == 1);
  CHECK(store.series_count() == 0);
}

} // TEST_SUITE

TEST_SUITE("cqrs.snapshot") {

// tests/cqrs/data/snapshot_v1.bin was written by the encoder before sealed
// blocks (commit 7487b27, projection format version 1) from the events
// below; tests/cqrs/data/make_snapshot_v1.cpp.txt is the program.
TEST_CASE("a version-1 snapshot (before sealed blocks) still recovers") {
  std::ifstream f{std::string{CAIRN_TEST_DATA_DIR} + "/snapshot_v1.bin",
                  std::ios::binary};
  REQUIRE(f.good());
  std::string bytes{std::istreambuf_iterator<char>{f}, {}};
  REQUIRE(bytes.size() == 31914);
  snapshot_view view;
  REQUIRE(decode_snapshot(bytes, view) == snapshot_result::ok);
  CHECK(view.header.partition == 3);
  CHECK(view.header.covered_seq == 77);
  auto tiers = tier_set::parse({"1s:15m", "1m:2d", "1h:90d"});
  series_store old{tiers, ddsketch_mapping{0.01}};
  REQUIRE(old.decode(view.projection));
  idempotency_window keys{1000, 24LL * 3600 * 1000};
  REQUIRE(keys.decode(view.idempotency));
  CHECK(keys.contains("key-1"));
  // The same events applied by today's code give the same store.
  series_store expected{tiers, ddsketch_mapping{0.01}};
  const millis base = 1'764'190'000'000;
  for (int i = 0; i < 600; ++i) {
    auto key = make_series_key("old.metric",
                               {{"host", "h" + std::to_string(i % 3)}});
    double v = (i % 7 == 0) ? -1.5 * i : (i % 11 == 0 ? 0.0 : 0.25 * i + 1);
    expected.apply(key, base + i * 700 + (i % 5), v);
  }
  expected.apply(make_series_key("other", {}), base + 5, 42.0);
  CHECK(old == expected);
  CHECK(old.series_count() == 4);
  CHECK(old.bucket_count() == 630);
  CHECK(old.events_applied() == 601);
  // Sealed and written again (version 2), it still holds the same buckets.
  (void) old.seal(base + 3 * 3'600'000);
  auto mem = old.memory();
  CHECK(mem.open_buckets == 0);
  CHECK(old == expected);
  std::string v2;
  old.encode(v2);
  CHECK(v2[4] == 4);
  CHECK(v2.size() < view.projection.size() / 3);
  series_store again{tiers, ddsketch_mapping{0.01}};
  REQUIRE(again.decode(v2));
  CHECK(again == expected);
  CHECK(again.bucket_count() == 630);
}


/// Every visible bucket of every series of `x` equals `y`'s bit for bit
/// (NaN included, which operator== of buckets cannot say): per metric and
/// tier, a query at the tier's resolution with a quantile (so sketches
/// are merged), compared as encoded partials.
bool same_buckets(const series_store& x, const series_store& y) {
  metrics_partial mx, my;
  x.metrics(mx);
  y.metrics(my);
  if (mx.metrics != my.metrics || x.bucket_count() != y.bucket_count())
    return false;
  for (auto& [metric, n] : mx.metrics)
    for (size_t t = 0; t < x.tiers().size(); ++t) {
      query_spec q;
      q.metric = metric;
      q.tier = t;
      q.from = std::numeric_limits<millis>::min() / 2;
      q.to = std::numeric_limits<millis>::max() / 2;
      q.step = x.tiers()[t].resolution;
      q.group_by = {"host"};
      q.aggs = {{agg_kind::count}, {agg_kind::quantile, 0.5}};
      query_partial a, b;
      x.query(q, a);
      y.query(q, b);
      std::string ea, eb;
      encode_partial(a, ea);
      encode_partial(b, eb);
      if (ea != eb || a.groups.empty())
        return false;
    }
  return true;
}

// tests/cqrs/data/snapshot_v2.bin was written by the encoder of commit
// e6cd88a (projection version 2: sealed blocks of block codec 1, reopened
// and open buckets) from the events of v2_events, sealed as
// tests/cqrs/data/make_snapshot_v2.cpp.txt (the program) does.
template <class F>
void v2_events(F&& apply) {
  const millis base = 1'764'190'000'000;
  const double inf = std::numeric_limits<double>::infinity();
  const double special[] = {std::numeric_limits<double>::quiet_NaN(), inf, -inf, -0.0, 0.0,
                            5e-324, -2.2250738585072014e-308, 1e300,
                            std::numeric_limits<double>::max(), 9007199254740993.0,
                            -9007199254740992.0, 0.1, 1.0 / 3, 123.456};
  for (int s = 0; s < 400; ++s) {
    apply(make_series_key("v2.int", {{"host", "a"}}), base + s * 1000 + (s * 37) % 1000,
          double((s * 7919) % 97));
    for (int r = 0; r < 10; ++r)
      apply(make_series_key("v2.dec", {{"host", "b"}}), base + s * 1000 + r * 100 + (s % 3),
            (r % 4 == 0 ? -1 : 1) * ((s * 31 + r * 17) % 5000) / 1000.0);
    if (s % 3 == 0)
      apply(make_series_key("v2.special", {}), base + s * 1000 + 999,
            special[(s / 3) % 14]);
  }
  for (int s = 1600; s < 1700; ++s)
    apply(make_series_key("v2.int", {{"host", "a"}}), base + s * 1000, s * 0.5);
}

/// A fixture of projection `version` (2: block codec 1, 3: codec 2), from
/// the events of v2_events, recovers re-encoded with today's codec.
void check_old_snapshot(const char* file, size_t size, char version) {
  std::ifstream f{std::string{CAIRN_TEST_DATA_DIR} + "/" + file,
                  std::ios::binary};
  REQUIRE(f.good());
  std::string bytes{std::istreambuf_iterator<char>{f}, {}};
  REQUIRE(bytes.size() == size);
  snapshot_view view;
  REQUIRE(decode_snapshot(bytes, view) == snapshot_result::ok);
  CHECK(view.header.partition == 5);
  CHECK(view.header.covered_seq == 99);
  REQUIRE(view.projection.size() > 5);
  CHECK(view.projection[4] == version);
  auto tiers = tier_set::parse({"1s:15m", "1m:2d", "1h:90d"});
  series_store old{tiers, ddsketch_mapping{0.01}};
  REQUIRE(old.decode(view.projection));
  idempotency_window keys{1000, 24LL * 3600 * 1000};
  REQUIRE(keys.decode(view.idempotency));
  CHECK(keys.contains("key-2"));
  // The same events applied by today's code (without a clock: nothing
  // sealed, nothing skipped) give the same visible buckets.
  const millis base = 1'764'190'000'000;
  series_store expected{tiers, ddsketch_mapping{0.01}};
  v2_events([&](const std::string& k, millis ts, double v) {
    expected.apply(k, ts, v);
  });
  expected.apply(make_series_key("v2.int", {{"host", "a"}}),
                 base + 1650 * 1000 + 1, -7.0);
  expected.apply(make_series_key("v2.dec", {{"host", "b"}}),
                 base + 1705 * 1000, 2.5);
  CHECK(same_buckets(old, expected));
  CHECK(old.series_count() == 3);
  CHECK(old.bucket_count() == 1067);
  CHECK(old.events_applied() == expected.events_applied());
  auto mem = old.memory();
  CHECK(mem.open_buckets == 16);
  CHECK(mem.sealed_buckets[0] > 500);
  // Queries over the re-encoded blocks answer as over the plain buckets.
  query_spec q;
  q.metric = "v2.special";
  q.tier = 0;
  q.from = base;
  q.to = base + 2'000'000;
  q.step = 60'000;
  q.aggs = {{agg_kind::count}, {agg_kind::sum}, {agg_kind::quantile, 0.5}};
  for (size_t tier : {0, 1}) {
    q.tier = tier;
    query_partial a, b;
    old.query(q, a);
    expected.query(q, b);
    std::string x, y;
    encode_partial(a, x);
    encode_partial(b, y);
    CHECK(x == y);
    CHECK_FALSE(a.groups.empty());
  }
  // Written again it is version 4 (restart points cost a little over
  // version 3), and reads back the same; later events append to the
  // re-encoded blocks.
  std::string v3;
  old.encode(v3);
  CHECK(v3[4] == 4);
  CHECK(v3.size() < view.projection.size() * (version == 2 ? 1.0 : 1.05));
  series_store again{tiers, ddsketch_mapping{0.01}};
  REQUIRE(again.decode(v3));
  CHECK(same_buckets(again, expected));
  for (auto* s : {&again, &expected}) {
    s->set_clock(base + 1800 * 1000);
    for (int i = 0; i < 30; ++i)
      s->apply(make_series_key("v2.int", {{"host", "a"}}),
               base + (1710 + i) * 1000 + 3, 1.0 * i);
    (void) s->seal(base + 1800 * 1000);
  }
  CHECK(same_buckets(again, expected));
}

TEST_CASE("a version-2 snapshot (block codec 1) still recovers, re-encoded") {
  check_old_snapshot("snapshot_v2.bin", 13608, 2);
}

// tests/cqrs/data/snapshot_v3.bin: the same events written by the encoder
// of commit ce8aadb (projection version 3, block codec 2), as
// tests/cqrs/data/make_snapshot_v3.cpp.txt does.
TEST_CASE("a version-3 snapshot (block codec 2) still recovers, re-encoded") {
  check_old_snapshot("snapshot_v3.bin", 12010, 3);
}

}
