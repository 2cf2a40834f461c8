#include "sagas/membership.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace cairn::sagas {

namespace {

step_spec step(std::string name, uint32_t attempts, millis timeout,
               bool pivot = false) {
  step_spec s;
  s.name = std::move(name);
  s.retry = {attempts, 200, 5'000, 2.0, true};
  s.compensation_retry = {20, 200, 10'000, 2.0, true};
  s.timeout = timeout;
  s.pivot = pivot;
  return s;
}

saga_spec make(std::string type, std::vector<step_spec> steps, millis timeout) {
  saga_spec spec;
  spec.type = std::move(type);
  spec.steps = std::move(steps);
  spec.timeout = timeout;
  return spec;
}

constexpr millis minute = 60'000;

/// Partition counts of the active members (0 for those owning none).
std::map<std::string, size_t> counts_of(const std::vector<std::string>& owners,
                                        const std::vector<std::string>& active) {
  std::map<std::string, size_t> out;
  for (auto& m : active)
    out[m] = 0;
  for (auto& o : owners)
    if (auto i = out.find(o); i != out.end())
      ++i->second;
  return out;
}

/// The active member owning the fewest (ties: the smaller name), skipping
/// `except`.
std::string least_loaded(const std::map<std::string, size_t>& counts,
                         const std::string& except = {}) {
  std::string best;
  size_t best_n = SIZE_MAX;
  for (auto& [name, n] : counts)
    if (name != except && n < best_n) {
      best = name;
      best_n = n;
    }
  return best;
}

} // namespace

const saga_spec* membership_spec(std::string_view type) {
  // Shipping is paced (cairn.cluster.rebalance-bytes-per-second), so its
  // attempt may take long; every other step is a few control messages.
  static const saga_spec move = make(
    "move",
    {step("copy", 5, 30 * minute), step("freeze", 5, 10'000),
     step("ship", 5, 30 * minute),
     step("commit", 5, 10'000, true), step("drop", 5, 10'000)},
    60 * minute);
  static const saga_spec decommission = make(
    "decommission",
    {step("plan", 5, 10'000), step("move", 3, 24 * 60 * minute),
     step("drain", 60, 10'000), step("leave", 5, 10'000, true)},
    24 * 60 * minute);
  static const saga_spec rebalance = make(
    "rebalance", {step("plan", 5, 10'000), step("move", 3, 24 * 60 * minute)},
    24 * 60 * minute);
  // A node that joined through seeds adopts the map once it is up (a
  // live node takes it in milliseconds): its join step waits for it about a
  // minute, 20 attempts 3 s apart without jitter (an unreachable node fails
  // an attempt at once, so the jittered backoff would give up after a few
  // seconds, before a slow start). If it never does, the step's
  // compensation marks the node left again (docs/sagas.md, "join"). From
  // the plan on (the pivot) the node has the map: only forward.
  static const saga_spec join = [] {
    auto spec = make("join",
                     {step("join", 20, 5'000), step("plan", 5, 10'000, true),
                      step("move", 3, 24 * 60 * minute)},
                     24 * 60 * minute);
    spec.steps[plan_steps::join_join].retry = {20, 3'000, 3'000, 1.0, false};
    return spec;
  }();
  // A member that is gone for good: nothing is copied (its data went with
  // it); the survey asks the live members what it held hints for, the
  // evict step (pivot) commits the map without it (docs/sagas.md, "evict").
  static const saga_spec evict = make(
    "evict", {step("survey", 5, 10'000), step("evict", 5, 10'000, true)},
    10 * minute);
  if (type == "move")
    return &move;
  if (type == "evict")
    return &evict;
  if (type == "decommission")
    return &decommission;
  if (type == "rebalance")
    return &rebalance;
  if (type == "join")
    return &join;
  return nullptr;
}

std::vector<partition_move> plan_drain(const std::vector<std::string>& owners,
                                       const std::vector<std::string>& active,
                                       const std::string& leaving) {
  std::vector<partition_move> out;
  auto counts = counts_of(owners, active);
  counts.erase(leaving);
  if (counts.empty())
    return out;
  for (uint32_t p = 0; p < owners.size(); ++p) {
    if (owners[p] != leaving)
      continue;
    auto to = least_loaded(counts);
    ++counts[to];
    out.push_back({p, to});
  }
  return out;
}

std::vector<partition_move> plan_balance(const std::vector<std::string>& owners,
                                         const std::vector<std::string>& active) {
  std::vector<partition_move> out;
  if (active.empty())
    return out;
  auto now = owners;
  auto counts = counts_of(now, active);
  // Partitions of members that may not own any go first.
  for (uint32_t p = 0; p < now.size(); ++p)
    if (counts.count(now[p]) == 0) {
      auto to = least_loaded(counts);
      ++counts[to];
      now[p] = to;
      out.push_back({p, to});
    }
  for (;;) {
    // The most loaded (ties: the larger name) and the least loaded.
    auto most = counts.begin();
    for (auto i = counts.begin(); i != counts.end(); ++i)
      if (i->second >= most->second)
        most = i;
    auto to = least_loaded(counts);
    if (most->second <= counts[to] + 1)
      break;
    uint32_t give = 0;
    for (uint32_t p = 0; p < now.size(); ++p)
      if (now[p] == most->first)
        give = p;
    --most->second;
    ++counts[to];
    now[give] = to;
    out.push_back({give, to});
  }
  return out;
}

std::string encode_plan(const std::vector<partition_move>& plan) {
  auto arr = nlohmann::json::array();
  for (auto& m : plan)
    arr.push_back({{"partition", m.partition}, {"to", m.to}});
  return arr.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<std::vector<partition_move>> decode_plan(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_array())
    return std::nullopt;
  std::vector<partition_move> out;
  for (auto& m : j) {
    if (!m.is_object() || !m.contains("partition") || !m.contains("to")
        || !m["partition"].is_number_unsigned() || !m["to"].is_string())
      return std::nullopt;
    out.push_back({m["partition"].get<uint32_t>(), m["to"].get<std::string>()});
  }
  return out;
}

std::vector<std::string>
merge_copies(std::map<std::string, std::vector<saga_record>>& into,
             const std::map<std::string, std::vector<saga_record>>& other) {
  std::vector<std::string> changed;
  auto done = [](const std::vector<saga_record>& r) {
    return !r.empty() && r.back().kind == record_kind::finished;
  };
  for (auto& [id, records] : other) {
    auto i = into.find(id);
    // A finished history wins over an unfinished one (a member that led
    // briefly may have begun a step of a saga that had already finished),
    // else the longer one.
    bool take = i == into.end()
                || (done(records) && !done(i->second))
                || (done(records) == done(i->second)
                    && i->second.size() < records.size());
    if (take) {
      into[id] = records;
      changed.push_back(id);
    }
  }
  return changed;
}

millis byte_pacer::reserve(uint64_t bytes, millis now) noexcept {
  if (rate_ == 0)
    return now;
  auto start = std::max(static_cast<double>(now), next_free_);
  next_free_ = start + static_cast<double>(bytes) * 1000.0
                         / static_cast<double>(rate_);
  return static_cast<millis>(start);
}

} // namespace cairn::sagas
