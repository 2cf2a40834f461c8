#include "event_pool.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

namespace cairn::bench {

namespace {

constexpr int ts_digits = 13;
constexpr const char* regions[] = {"eu", "us", "ap", "sa"};

} // namespace

// -- series naming --------------------------------------------------------------

std::string event_pool::metric_of(uint64_t s) {
  return "bench.m" + std::to_string(s % 10);
}

std::string event_pool::host_of(uint64_t s) {
  return "h" + std::to_string(s / 10);
}

std::string event_pool::region_of(uint64_t s) {
  return regions[(s / 10) % 4];
}

// -- construction -----------------------------------------------------------------

void event_pool::append_event(uint64_t s, double value, uint16_t jitter) {
  char value_text[32];
  std::snprintf(value_text, sizeof(value_text), "%.3f", value);
  buffer_ += R"({"metric":")";
  buffer_ += metric_of(s);
  buffer_ += R"(","ts":)";
  ts_offset_.push_back(static_cast<uint32_t>(buffer_.size()));
  buffer_.append(ts_digits, '0');
  jitter_ms_.push_back(static_cast<uint8_t>(jitter));
  buffer_ += R"(,"value":)";
  buffer_ += value_text;
  buffer_ += R"(,"tags":{"host":")";
  buffer_ += host_of(s);
  buffer_ += R"(","region":")";
  buffer_ += region_of(s);
  buffer_ += R"("}})";
}

template <class Rng>
void event_pool::append_next(Rng& rng, uint64_t s) {
  double value;
  if (shape_.value_decades == 0) {
    std::lognormal_distribution<double> latency{3.0, 0.8}; // median ~20
    value = latency(rng);
  } else {
    std::uniform_real_distribution<double> exponent{
      0.0, static_cast<double>(shape_.value_decades)};
    value = std::pow(10.0, exponent(rng));
  }
  std::uniform_int_distribution<int> jitter{0, 99};
  append_event(s, value, static_cast<uint16_t>(jitter(rng)));
  if (shape_.ts_spread_ms > 0) {
    std::uniform_int_distribution<uint32_t> age{0, shape_.ts_spread_ms - 1};
    age_ms_.push_back(age(rng));
  }
}

event_pool event_pool::event_lines(size_t events, uint32_t conn,
                                   uint32_t conns, uint64_t series,
                                   uint64_t seed, pool_shape shape) {
  event_pool pool;
  pool.shape_ = shape;
  pool.buffer_.reserve(events * 110);
  std::mt19937_64 rng{seed * 1000003 + conn};
  for (size_t k = 0; k < events; ++k) {
    pool.append_next(rng, (conn + k * conns) % series);
    pool.buffer_ += '\n';
    pool.unit_end_.push_back(static_cast<uint32_t>(pool.buffer_.size()));
  }
  return pool;
}

event_pool event_pool::ingest_requests(size_t events, size_t batch,
                                       uint32_t conn, uint32_t conns,
                                       uint64_t series, uint64_t seed,
                                       pool_shape shape) {
  event_pool pool;
  pool.shape_ = shape;
  pool.events_per_unit_ = batch;
  auto requests = std::max<size_t>(2, (events + batch - 1) / batch);
  pool.buffer_.reserve(requests * batch * 110);
  std::mt19937_64 rng{seed * 1000003 + conn};
  size_t k = 0;
  for (size_t r = 0; r < requests; ++r) {
    pool.buffer_ += R"({"op":"ingest","events":[)";
    for (size_t i = 0; i < batch; ++i, ++k) {
      if (i > 0)
        pool.buffer_ += ',';
      pool.append_next(rng, (conn + k * conns) % series);
    }
    pool.buffer_ += "]}\n";
    pool.unit_end_.push_back(static_cast<uint32_t>(pool.buffer_.size()));
  }
  return pool;
}

// -- access -------------------------------------------------------------------------

double event_pool::bytes_per_event() const noexcept {
  return ts_offset_.empty() ? 0.0
                            : static_cast<double>(buffer_.size())
                                / static_cast<double>(ts_offset_.size());
}

void event_pool::patch_timestamps(int64_t now_ms) noexcept {
  // now + jitter, but never past the end of the current second, so every
  // event lands in the 1 s bucket being filled while it is sent.
  char* base = buffer_.data();
  const int64_t second = now_ms - now_ms % 1000;
  const int64_t into = now_ms % 1000;
  const bool spread = !age_ms_.empty();
  size_t age = 0;
  if (spread) {
    // A prime stride: over the refreshes each event takes every age.
    age_shift_ = (age_shift_ + 7919) % age_ms_.size();
    age = age_shift_;
  }
  for (size_t i = 0; i < ts_offset_.size(); ++i) {
    auto ts = static_cast<uint64_t>(
      spread ? now_ms - age_ms_[age]
             : second + std::min<int64_t>(into + jitter_ms_[i], 999));
    if (spread && ++age == age_ms_.size())
      age = 0;
    char* p = base + ts_offset_[i] + ts_digits;
    for (int d = 0; d < ts_digits; ++d) {
      *--p = static_cast<char>('0' + ts % 10);
      ts /= 10;
    }
  }
}

} // namespace cairn::bench
