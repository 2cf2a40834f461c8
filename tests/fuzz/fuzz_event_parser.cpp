// libFuzzer target: one NDJSON line through the event parser, both as a
// fire-and-forget line and inside an "ingest" request. Invariants: never a
// crash or sanitizer report; an accepted event has a metric that passes
// validation and a key that decodes; the batch grows by at most one per line;
// the parser that has seen every earlier input (its key cache warm) yields
// what a new parser yields.
#include "cqrs/event_parser.hpp"
#include "cqrs/series_key.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace cairn::cqrs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static event_parser parser;
  constexpr millis now = 1'764'190'000'000;
  std::string_view line{reinterpret_cast<const char*>(data), size};
  event_batch batch;
  auto r = parser.parse_line(line, now, batch);
  if (batch.size() > 1)
    std::abort();
  if (r.kind == line_kind::event) {
    if (batch.size() != 1)
      std::abort();
    auto key = batch.key(batch.entries[0]);
    std::vector<tag> tags;
    if (!decode_series_tags(key, tags))
      std::abort();
    if (!validate_metric(series_metric(key), parser.limits()).empty())
      std::abort();
    if (series_hash(key) != batch.entries[0].hash)
      std::abort();
  }
  event_parser cold;
  event_batch cold_batch;
  auto c = cold.parse_line(line, now, cold_batch);
  if (c.kind != r.kind || c.op != r.op || c.error.message != r.error.message
      || cold_batch.size() != batch.size()
      || (batch.size() == 1
          && (batch.key(batch.entries[0]) != cold_batch.key(cold_batch.entries[0])
              || batch.entries[0].ts != cold_batch.entries[0].ts)))
    std::abort();
  // The same bytes as the events of an ingest request.
  std::string req = R"({"op":"ingest","idempotency_key":"k","events":[)";
  req.append(line);
  req += "]}";
  event_batch ingest;
  auto ir = parser.parse_ingest(req, now, ingest);
  if (ir.ok && ingest.size() + ir.rejected.size() != ir.total)
    std::abort();
  return 0;
}
