#include "promwire/remote_write.hpp"

#include "cqrs/series_key.hpp"

#include "remote.pb.h"

#include <snappy.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace cairn::promwire {

namespace {

/// Why the labels of a series cannot make a Cairn series (empty = they
/// can); on success `metric` and `tags` hold the series, tags sorted.
std::string series_of(const prometheus::TimeSeries& ts,
                      const cqrs::event_limits& l, std::string_view& metric,
                      std::vector<cqrs::tag_view>& tags) {
  metric = {};
  tags.clear();
  bool named = false;
  for (const auto& label : ts.labels()) {
    if (label.name() == "__name__") {
      metric = label.value();
      named = true;
      continue;
    }
    // Prometheus drops labels with an empty value; so does Cairn.
    if (label.value().empty())
      continue;
    if (label.name().empty())
      return "a label has an empty name";
    if (label.name().size() > l.max_tag_bytes)
      return "label " + cqrs::shown_value(label.name()) + " is longer than "
             + std::to_string(l.max_tag_bytes) + " bytes";
    if (label.value().size() > l.max_tag_bytes)
      return "value of label " + cqrs::shown_value(label.name()) + " is longer than "
             + std::to_string(l.max_tag_bytes) + " bytes";
    tags.emplace_back(label.name(), label.value());
  }
  if (!named)
    return "series without a __name__ label";
  if (auto msg = cqrs::validate_metric(metric, l); !msg.empty())
    return msg;
  if (tags.size() > l.max_tags)
    return "series " + cqrs::shown_value(metric) + " has more than "
           + std::to_string(l.max_tags) + " labels besides __name__";
  std::sort(tags.begin(), tags.end(),
            [](auto& x, auto& y) { return x.first < y.first; });
  for (size_t i = 1; i < tags.size(); ++i)
    if (tags[i].first == tags[i - 1].first)
      return "series " + cqrs::shown_value(metric) + ": duplicate label "
             + cqrs::shown_value(tags[i].first);
  return {};
}

} // namespace

bool is_stale_marker(double value) noexcept {
  return std::bit_cast<uint64_t>(value) == 0x7ff0000000000002ull;
}

remote_write_result decode_remote_write(std::string_view body, cqrs::millis now,
                                        const cqrs::event_limits& limits,
                                        cqrs::event_batch& out,
                                        size_t max_problems) {
  remote_write_result r;
  // -- snappy block -------------------------------------------------------------
  size_t length = 0;
  if (!snappy::GetUncompressedLength(body.data(), body.size(), &length)) {
    r.error = "body is not snappy-compressed (block format, as Prometheus "
              "remote_write sends it)";
    return r;
  }
  if (length > max_uncompressed) {
    r.error = "body expands to " + std::to_string(length)
              + " bytes, more than " + std::to_string(max_uncompressed);
    return r;
  }
  std::string raw;
  if (!snappy::Uncompress(body.data(), body.size(), &raw)) {
    r.error = "body is corrupt snappy data";
    return r;
  }
  // -- protobuf -------------------------------------------------------------------
  prometheus::WriteRequest req;
  if (!req.ParseFromString(raw)) {
    r.error = "body is not a protobuf prometheus.WriteRequest";
    return r;
  }
  r.ok = true;
  auto problem = [&](std::string message) {
    if (r.problems.size() < max_problems)
      r.problems.push_back({cqrs::error_code::invalid_event, std::move(message)});
  };
  // -- one event per valid sample ---------------------------------------------------
  std::string_view metric;
  std::vector<cqrs::tag_view> tags;
  std::string key;
  for (const auto& ts : req.timeseries()) {
    ++r.series;
    auto n = static_cast<size_t>(ts.samples_size());
    r.samples += n;
    if (auto msg = series_of(ts, limits, metric, tags); !msg.empty()) {
      r.rejected += n;
      problem(std::move(msg));
      continue;
    }
    key.clear();
    cqrs::encode_series_key(key, metric, tags.data(), tags.size());
    auto hash = cqrs::series_hash(key);
    for (const auto& s : ts.samples()) {
      if (is_stale_marker(s.value())) {
        ++r.stale;
        continue;
      }
      if (!std::isfinite(s.value())) {
        ++r.rejected;
        problem("series " + cqrs::shown_value(metric) + ": value must be a finite number");
        continue;
      }
      if (auto msg = cqrs::validate_ts(s.timestamp(), now, limits);
          !msg.empty()) {
        ++r.rejected;
        problem("series " + cqrs::shown_value(metric) + ": " + msg);
        continue;
      }
      out.add(key, hash, s.timestamp(), s.value());
      ++r.accepted;
    }
  }
  return r;
}

} // namespace cairn::promwire
