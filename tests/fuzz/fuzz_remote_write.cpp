// libFuzzer target: a Prometheus remote_write request. The input is the
// protobuf (compressed here with snappy, so that mutations reach the
// decoder), and also tried as the raw body.
// Invariants: never a crash or sanitizer report; accepted + rejected +
// stale == samples; accepted == events added; every event's metric passes
// validation and its key decodes; an undecodable body adds nothing.
#include "cqrs/series_key.hpp"
#include "promwire/remote_write.hpp"

#include <snappy.h>

#include <cstdint>
#include <cstdlib>

using namespace cairn;

namespace {

void check(std::string_view body) {
  constexpr cqrs::millis now = 1'764'190'000'000;
  cqrs::event_batch batch;
  auto r = promwire::decode_remote_write(body, now, cqrs::event_limits{}, batch);
  if (!r.ok) {
    if (!batch.empty() || r.error.empty())
      std::abort();
    return;
  }
  if (r.accepted != batch.size()
      || r.accepted + r.rejected + r.stale != r.samples
      || r.problems.size() > 10)
    std::abort();
  for (auto& e : batch.entries) {
    auto key = batch.key(e);
    std::vector<cqrs::tag> tags;
    if (!cqrs::decode_series_tags(key, tags) || cqrs::series_hash(key) != e.hash)
      std::abort();
    if (!cqrs::validate_metric(cqrs::series_metric(key), cqrs::event_limits{})
           .empty())
      std::abort();
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view raw{reinterpret_cast<const char*>(data), size};
  std::string body;
  snappy::Compress(raw.data(), raw.size(), &body);
  check(body);
  check(raw);
  return 0;
}
