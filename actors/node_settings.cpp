#include "actors/node_settings.hpp"

#include <stdexcept>

namespace cairn::actors {

const char* to_string(node_status s) noexcept {
  switch (s) {
    case node_status::recovering:
      return "recovering";
    case node_status::ready:
      return "ready";
    case node_status::stopping:
      return "stopping";
  }
  return "unknown";
}

namespace {

cqrs::millis duration_option(const std::string& name, const std::string& text) {
  auto d = cqrs::parse_duration(text);
  if (!d)
    throw std::invalid_argument("option " + name + ": invalid duration '"
                                + text + "' (use e.g. 500ms, 10s, 15m, 2d)");
  return *d;
}

} // namespace

std::shared_ptr<node_settings> make_node_settings(
  const runtime::node_config& cfg) {
  cfg.validate();
  auto s = std::make_shared<node_settings>();
  s->node_name = cfg.node_name;
  if (cfg.partitions == 0 || cfg.partitions > 4096)
    throw std::invalid_argument("option cairn.partitions must be in 1..4096");
  s->partitions = static_cast<uint32_t>(cfg.partitions);
  s->parsers = std::max<size_t>(1, cfg.parsers);
  s->partition_credits = std::max<size_t>(1, cfg.partition_credits);
  try {
    s->tiers = cqrs::tier_set::parse(cfg.tier_texts);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string{"option cairn.tiers: "} + e.what());
  }
  if (!(cfg.sketch_accuracy > 0 && cfg.sketch_accuracy < 1))
    throw std::invalid_argument(
      "option cairn.sketch.accuracy must be in (0, 1), e.g. 0.01");
  s->mapping = cqrs::ddsketch_mapping{cfg.sketch_accuracy};
  s->limits.max_age = s->tiers.max_retention();
  s->limits.max_future = duration_option("cairn.ingest.max-future",
                                         cfg.max_future_text);
  s->snapshot_every_events = cfg.snapshot_every_events;
  s->snapshot_interval = std::chrono::milliseconds{
    duration_option("cairn.snapshot.interval", cfg.snapshot_interval_text)};
  s->snapshot_keep = std::max<size_t>(1, cfg.snapshot_keep);
  s->raw_retention = duration_option("cairn.storage.raw-retention",
                                     cfg.raw_retention_text);
  s->skip_corrupt = cfg.skip_corrupt;
  s->idempotency_keys = cfg.idempotency_keys;
  s->idempotency_window = duration_option("cairn.idempotency.window",
                                          cfg.idempotency_window_text);
  s->metrics = std::make_shared<runtime::metrics_registry>();
  s->started_at = cqrs::wall_clock_now();
  return s;
}

} // namespace cairn::actors
