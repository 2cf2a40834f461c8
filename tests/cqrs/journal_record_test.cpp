#include "cqrs/journal_record.hpp"

#include "cqrs/series_key.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>

using namespace cairn::cqrs;

namespace {

/// A batch of `n` events over `series` distinct keys (keys repeat).
event_batch random_batch(std::mt19937_64& rng, size_t n, size_t series) {
  std::vector<std::string> keys;
  for (size_t i = 0; i < series; ++i)
    keys.push_back(make_series_key(
      "metric." + std::to_string(i % 7),
      {{"host", "h" + std::to_string(i)}, {"region", i % 2 ? "eu" : "us"}}));
  event_batch batch;
  std::uniform_int_distribution<size_t> pick{0, series - 1};
  std::uniform_int_distribution<int64_t> ts{-1000, 4'000'000'000'000};
  std::normal_distribution<double> value{0, 1e6};
  for (size_t i = 0; i < n; ++i) {
    const auto& key = keys[pick(rng)];
    batch.add(key, series_hash(key), ts(rng), value(rng));
  }
  return batch;
}

void check_equal(const journal_record& x, const journal_record& y) {
  CHECK(x.accepted_at == y.accepted_at);
  CHECK(x.idempotency_key == y.idempotency_key);
  REQUIRE(x.events.size() == y.events.size());
  for (size_t i = 0; i < x.events.size(); ++i) {
    const auto& a = x.events.entries[i];
    const auto& b = y.events.entries[i];
    CHECK(x.events.key(a) == y.events.key(b));
    CHECK(a.hash == b.hash);
    CHECK(a.ts == b.ts);
    // bit-exact, NaN included
    CHECK(std::memcmp(&a.value, &b.value, sizeof(double)) == 0);
  }
}

journal_record sample_record(uint64_t seed = 42, size_t n = 200) {
  std::mt19937_64 rng{seed};
  journal_record rec;
  rec.accepted_at = 1'764'190'000'123;
  rec.idempotency_key = "client-7/req-99";
  rec.events = random_batch(rng, n, 13);
  return rec;
}

} // namespace

TEST_SUITE("cqrs.journal_record") {

TEST_CASE("crc32c matches the standard check value and chains") {
  CHECK(crc32c("123456789") == 0xE3069283u);
  CHECK(crc32c("") == 0u);
  std::string data(1000, '\0');
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<char>(i * 31 + 7);
  for (size_t cut : {0, 1, 7, 8, 9, 500, 999, 1000}) {
    auto whole = crc32c(data);
    auto split = crc32c(std::string_view{data}.substr(cut),
                        crc32c(std::string_view{data}.substr(0, cut)));
    CHECK(whole == split);
  }
}

TEST_CASE("round trip of random batches") {
  std::mt19937_64 rng{7};
  for (size_t n : {0, 1, 2, 17, 1000, 5000}) {
    for (size_t series : {1, 3, 100}) {
      journal_record rec;
      rec.accepted_at = static_cast<millis>(rng() % 2'000'000'000'000) - 1000;
      if (n % 2 == 0)
        rec.idempotency_key = "key-" + std::to_string(rng());
      rec.events = random_batch(rng, n, series);
      std::string bytes = "prefix"; // encode appends
      encode_record(rec, bytes);
      CHECK(bytes.substr(0, 6) == "prefix");
      journal_record back;
      REQUIRE(decode_record(std::string_view{bytes}.substr(6), back)
              == decode_result::ok);
      check_equal(rec, back);
      // every distinct key is stored once in the decoded batch
      std::set<std::string_view> distinct;
      size_t distinct_bytes = 0;
      for (const auto& e : rec.events.entries)
        if (distinct.insert(rec.events.key(e)).second)
          distinct_bytes += e.key_length;
      CHECK(back.events.keys.size() == distinct_bytes);
    }
  }
}

TEST_CASE("special values and extreme timestamps survive") {
  journal_record rec;
  rec.accepted_at = std::numeric_limits<millis>::min();
  const double values[] = {0.0,
                           -0.0,
                           std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity(),
                           std::numeric_limits<double>::quiet_NaN(),
                           std::numeric_limits<double>::denorm_min(),
                           std::numeric_limits<double>::max()};
  const millis times[] = {0, -1, std::numeric_limits<millis>::max(),
                          std::numeric_limits<millis>::min()};
  std::string key = "k";
  for (auto v : values)
    for (auto t : times)
      rec.events.add(key, series_hash(key), t, v);
  std::string bytes;
  encode_record(rec, bytes);
  journal_record back;
  REQUIRE(decode_record(bytes, back) == decode_result::ok);
  check_equal(rec, back);
}

TEST_CASE("keys are deduplicated within a record") {
  std::mt19937_64 rng{1};
  journal_record rec;
  rec.events = random_batch(rng, 1000, 10);
  std::string bytes;
  encode_record(rec, bytes);
  // ~17-18 bytes per event plus 10 keys, far below 1000 copies of the keys
  CHECK(bytes.size() < 1000 * 19 + rec.events.keys.size() / 50);
  MESSAGE("1000 events over 10 series: " << bytes.size() << " bytes");
}

TEST_CASE("hash collisions do not merge distinct keys") {
  journal_record rec;
  // same (bogus) hash for different keys: must still be told apart
  rec.events.add("a", 5, 1, 1.0);
  rec.events.add("b", 5, 2, 2.0);
  rec.events.add("a", 5, 3, 3.0);
  rec.events.add("c", 21, 4, 4.0); // 21 & 15 == 5: same slot
  std::string bytes;
  encode_record(rec, bytes);
  journal_record back;
  REQUIRE(decode_record(bytes, back) == decode_result::ok);
  REQUIRE(back.events.size() == 4);
  CHECK(back.events.key(back.events.entries[0]) == "a");
  CHECK(back.events.key(back.events.entries[1]) == "b");
  CHECK(back.events.key(back.events.entries[2]) == "a");
  CHECK(back.events.key(back.events.entries[3]) == "c");
  CHECK(back.events.entries[3].hash == series_hash("c"));
}

TEST_CASE("an unknown version is reported as such") {
  auto rec = sample_record();
  std::string bytes;
  encode_record(rec, bytes);
  CHECK(static_cast<uint8_t>(bytes[0]) == journal_record_version);
  for (int v : {0, 2, 255}) {
    auto copy = bytes;
    copy[0] = static_cast<char>(v);
    journal_record back;
    CHECK(decode_record(copy, back) == decode_result::bad_version);
  }
}

TEST_CASE("every single-byte corruption is detected") {
  auto rec = sample_record(3, 50);
  std::string bytes;
  encode_record(rec, bytes);
  journal_record back;
  size_t by_checksum = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int mask : {0x01, 0x10, 0x80, 0xFF}) {
      auto copy = bytes;
      copy[i] = static_cast<char>(copy[i] ^ mask);
      auto r = decode_record(copy, back);
      CHECK_MESSAGE(r != decode_result::ok, "byte " << i << " mask " << mask);
      by_checksum += r == decode_result::bad_checksum;
    }
  }
  // all flips outside the header are checksum failures
  CHECK(by_checksum >= (bytes.size() - 5) * 4);
}

TEST_CASE("truncation and trailing bytes are detected") {
  auto rec = sample_record(5, 30);
  std::string bytes;
  encode_record(rec, bytes);
  journal_record back;
  for (size_t len = 0; len < bytes.size(); ++len)
    CHECK_MESSAGE(decode_record(std::string_view{bytes}.substr(0, len), back)
                    == decode_result::truncated,
                  "length " << len);
  CHECK(decode_record(bytes + "x", back) == decode_result::malformed);
}

// -- version 2: records naming series through a dictionary ------------------

TEST_CASE("v2: a sequence of records round-trips through two dictionaries") {
  std::mt19937_64 rng{11};
  series_dictionary enc;
  series_dictionary dec;
  std::bernoulli_distribution reset{0.15};
  for (int i = 0; i < 60; ++i) {
    journal_record rec;
    rec.accepted_at = 1'764'190'000'000 + i * 1000;
    if (i % 3 == 0)
      rec.idempotency_key = "req-" + std::to_string(i);
    rec.events = random_batch(rng, rng() % 400, 1 + rng() % 150);
    bool r = i == 0 || reset(rng);
    std::string bytes;
    encode_record(rec.accepted_at, rec.idempotency_key, rec.events, enc, r,
                  bytes);
    CHECK(static_cast<uint8_t>(bytes[0]) == journal_record_version_dict);
    journal_record back;
    REQUIRE(decode_record(bytes, back, dec) == decode_result::ok);
    check_equal(rec, back);
    CHECK(dec.size() == enc.size());
  }
}

TEST_CASE("v2: replay starts at a reset record, not in the middle") {
  std::mt19937_64 rng{12};
  series_dictionary enc;
  std::vector<std::string> records;
  for (int i = 0; i < 6; ++i) {
    std::string bytes;
    encode_record(1000 + i, {}, random_batch(rng, 50, 20), enc, i == 0 || i == 3,
                  bytes);
    records.push_back(bytes);
  }
  journal_record back;
  {
    // from record 3 (a reset, as after a snapshot) with an empty dictionary
    series_dictionary dec;
    for (int i = 3; i < 6; ++i)
      CHECK(decode_record(records[i], back, dec) == decode_result::ok);
  }
  {
    // from record 1 (no reset): its dictionary is not there
    series_dictionary dec;
    CHECK(decode_record(records[1], back, dec) == decode_result::malformed);
  }
  {
    // record 1 skipped: 2 expects what 1 defined; 3 resets and decodes
    series_dictionary dec;
    REQUIRE(decode_record(records[0], back, dec) == decode_result::ok);
    CHECK(decode_record(records[2], back, dec) == decode_result::malformed);
    CHECK(decode_record(records[3], back, dec) == decode_result::ok);
  }
}

TEST_CASE("v2: special values, integers and timestamp jumps are bit-exact") {
  journal_record rec;
  rec.accepted_at = 1'764'190'000'000;
  const double values[] = {0.0,
                           -0.0,
                           1.0,
                           -7.0,
                           9007199254740992.0,   // 2^53: a varint
                           9007199254740994.0,   // beyond: fixed64
                           -9007199254740992.0,
                           0.5,
                           1e300,
                           std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity(),
                           std::numeric_limits<double>::quiet_NaN(),
                           std::numeric_limits<double>::denorm_min(),
                           std::numeric_limits<double>::max(),
                           std::numeric_limits<double>::lowest()};
  const millis times[] = {0, -1, std::numeric_limits<millis>::max(),
                          std::numeric_limits<millis>::min(),
                          1'764'190'000'001};
  std::string key = "k";
  for (auto v : values)
    for (auto t : times)
      rec.events.add(key, series_hash(key), t, v);
  series_dictionary enc;
  series_dictionary dec;
  std::string bytes;
  encode_record(rec.accepted_at, {}, rec.events, enc, true, bytes);
  journal_record back;
  REQUIRE(decode_record(bytes, back, dec) == decode_result::ok);
  check_equal(rec, back);
}

TEST_CASE("v2: a warm dictionary makes records small") {
  std::mt19937_64 rng{13};
  series_dictionary enc;
  std::vector<std::string> keys;
  for (int i = 0; i < 100; ++i)
    keys.push_back(make_series_key("svc.latency",
                                   {{"host", "host-" + std::to_string(i)},
                                    {"region", "eu-west-1"}}));
  auto batch = [&] {
    event_batch b;
    for (int i = 0; i < 500; ++i) {
      const auto& k = keys[rng() % keys.size()];
      b.add(k, series_hash(k), 1'764'190'000'000 + i, double(rng() % 1000));
    }
    return b;
  };
  std::string first, second, v1;
  encode_record(1'764'190'000'000, {}, batch(), enc, true, first);
  auto b = batch();
  encode_record(1'764'190'000'000, {}, b, enc, false, second);
  encode_record(1'764'190'000'000, {}, b, v1);
  MESSAGE("500 events over 100 series: v1 " << v1.size() << " bytes, v2 cold "
                                            << first.size() << ", v2 warm "
                                            << second.size());
  CHECK(second.size() < 500 * 6);
  CHECK(second.size() * 3 < v1.size());
  CHECK(first.size() > second.size());
}

TEST_CASE("v2: every single-byte corruption is detected") {
  std::mt19937_64 rng{14};
  series_dictionary enc;
  std::string bytes;
  encode_record(1000, "key", random_batch(rng, 40, 7), enc, true, bytes);
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int mask : {0x01, 0x10, 0x80, 0xFF}) {
      auto copy = bytes;
      copy[i] = static_cast<char>(copy[i] ^ mask);
      series_dictionary dec;
      journal_record back;
      CHECK_MESSAGE(decode_record(copy, back, dec) != decode_result::ok,
                    "byte " << i << " mask " << mask);
    }
  }
  for (size_t len = 0; len < bytes.size(); ++len) {
    series_dictionary dec;
    journal_record back;
    CHECK(decode_record(std::string_view{bytes}.substr(0, len), back, dec)
          == decode_result::truncated);
  }
}

TEST_CASE("v2 decoding still reads version-1 records") {
  auto rec = sample_record();
  std::string bytes;
  encode_record(rec, bytes);
  series_dictionary dec;
  journal_record back;
  REQUIRE(decode_record(bytes, back, dec) == decode_result::ok);
  check_equal(rec, back);
  CHECK(dec.size() == 0);
}

TEST_CASE("series_dictionary interns, tells colliding keys apart, clears") {
  series_dictionary d;
  bool added = false;
  CHECK(d.intern(5, "a", added) == 0);
  CHECK(added);
  added = false;
  CHECK(d.intern(5, "b", added) == 1); // same hash, other key
  CHECK(added);
  added = false;
  CHECK(d.intern(5, "a", added) == 0);
  CHECK_FALSE(added);
  for (int i = 0; i < 1000; ++i) {
    auto k = "k" + std::to_string(i);
    d.intern(series_hash(k), k, added);
  }
  CHECK(d.size() == 1002);
  CHECK(d.key(1) == "b");
  CHECK(d.key(1001) == "k999");
  d.clear();
  CHECK(d.size() == 0);
  CHECK(d.key_bytes() == 0);
  added = false;
  CHECK(d.intern(5, "b", added) == 0);
  CHECK(added);
}

TEST_CASE("result names") {
  CHECK(to_string(decode_result::ok) == "ok");
  CHECK(to_string(decode_result::bad_checksum) == "bad_checksum");
  CHECK(to_string(decode_result::bad_version) == "bad_version");
  CHECK(to_string(decode_result::truncated) == "truncated");
  CHECK(to_string(decode_result::malformed) == "malformed");
}

} // TEST_SUITE
