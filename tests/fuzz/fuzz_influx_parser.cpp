// libFuzzer target: one line of Influx line protocol, at every precision.
// Invariants: never a crash or sanitizer report; every event's metric passes
// validation and its key decodes; a line with a syntax problem adds nothing;
// the parser that has seen every earlier input (its key cache warm) yields
// what a new parser yields.
#include "cqrs/influx_parser.hpp"
#include "cqrs/series_key.hpp"

#include <cstdint>
#include <cstdlib>

using namespace cairn::cqrs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static influx_parser parser;
  constexpr millis now = 1'764'190'000'000;
  std::string_view line{reinterpret_cast<const char*>(data), size};
  for (auto p : {influx_precision::ns, influx_precision::us,
                 influx_precision::ms, influx_precision::s}) {
    event_batch batch;
    auto r = parser.parse_line(line, now, p, batch);
    if (r.events != batch.size())
      std::abort();
    for (auto& pr : r.problems)
      if (pr.code == error_code::bad_request && r.events != 0)
        std::abort();
    influx_parser cold;
    event_batch cold_batch;
    auto c = cold.parse_line(line, now, p, cold_batch);
    if (c.events != r.events || c.problems.size() != r.problems.size()
        || cold_batch.keys != batch.keys)
      std::abort();
    for (auto& e : batch.entries) {
      auto key = batch.key(e);
      std::vector<tag> tags;
      if (!decode_series_tags(key, tags) || series_hash(key) != e.hash)
        std::abort();
      if (!validate_metric(series_metric(key), event_limits{}).empty())
        std::abort();
    }
  }
  return 0;
}
