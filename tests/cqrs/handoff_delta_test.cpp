// The handoff delta codec (cqrs/handoff_delta.hpp): round trips with
// repeated series across records (one dictionary for the whole delta), an
// empty delta, and every kind of damage refused.
#include "cqrs/handoff_delta.hpp"

#include "cqrs/series_key.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <random>

using namespace cairn::cqrs;

namespace {

std::vector<journal_record> sample(size_t records, uint64_t seed = 7) {
  std::mt19937_64 rng{seed};
  std::uniform_int_distribution<int> host{0, 9};
  std::normal_distribution<double> value{0, 1e3};
  std::vector<journal_record> out;
  for (size_t r = 0; r < records; ++r) {
    journal_record rec;
    rec.accepted_at = 1'764'190'000'000 + static_cast<millis>(r) * 7;
    rec.idempotency_key = r % 3 == 0 ? "" : "client/" + std::to_string(r);
    for (int i = 0; i < 50; ++i) {
      auto key = make_series_key("lat", {{"host", "h" + std::to_string(host(rng))}});
      rec.events.add(key, series_hash(key), rec.accepted_at - i * 1000, value(rng));
    }
    out.push_back(std::move(rec));
  }
  return out;
}

} // namespace

TEST_SUITE("cqrs.handoff_delta") {

TEST_CASE("a delta round-trips its records in order") {
  auto records = sample(40);
  std::string bytes;
  encode_handoff_delta(0xDEADBEEF, records, bytes);
  CHECK(is_handoff_delta(bytes));
  uint32_t crc = 0;
  std::vector<journal_record> back;
  REQUIRE(decode_handoff_delta(bytes, crc, back));
  CHECK(crc == 0xDEADBEEF);
  REQUIRE(back.size() == records.size());
  for (size_t r = 0; r < records.size(); ++r) {
    CAPTURE(r);
    CHECK(back[r].accepted_at == records[r].accepted_at);
    CHECK(back[r].idempotency_key == records[r].idempotency_key);
    REQUIRE(back[r].events.size() == records[r].events.size());
    for (size_t i = 0; i < back[r].events.size(); ++i) {
      auto& a = back[r].events.entries[i];
      auto& b = records[r].events.entries[i];
      CHECK(back[r].events.key(a) == records[r].events.key(b));
      CHECK(a.hash == b.hash);
      CHECK(a.ts == b.ts);
      CHECK(std::memcmp(&a.value, &b.value, sizeof(double)) == 0);
    }
  }
}

TEST_CASE("an empty delta round-trips") {
  std::string bytes;
  encode_handoff_delta(12, {}, bytes);
  uint32_t crc = 0;
  std::vector<journal_record> back = sample(1);
  REQUIRE(decode_handoff_delta(bytes, crc, back));
  CHECK(crc == 12);
  CHECK(back.empty());
}

TEST_CASE("damaged, truncated or foreign bytes are refused") {
  std::string bytes;
  encode_handoff_delta(5, sample(3), bytes);
  uint32_t crc = 0;
  std::vector<journal_record> back;
  for (size_t cut = 0; cut < bytes.size(); cut += 7)
    CHECK_FALSE(decode_handoff_delta(std::string_view{bytes}.substr(0, cut), crc, back));
  for (size_t at : {size_t{0}, size_t{4}, size_t{6}, bytes.size() / 2, bytes.size() - 1}) {
    auto bad = bytes;
    bad[at] = static_cast<char>(bad[at] ^ 0x40);
    CAPTURE(at);
    CHECK_FALSE(decode_handoff_delta(bad, crc, back));
  }
  CHECK_FALSE(decode_handoff_delta(bytes + "x", crc, back));
  CHECK_FALSE(is_handoff_delta("CSNP...."));
  CHECK_FALSE(decode_handoff_delta("CSNP\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00", crc, back));
}

}
