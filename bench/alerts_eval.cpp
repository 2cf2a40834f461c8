// alerts_eval: the cost of alert evaluation on one node (docs/benchmarks.md,
// "Alerting"). Not a Google Benchmark: it simulates SECONDS seconds of the
// finest tier's closed buckets of SERIES series (the close passes of a node
// ingesting 100k events/s spread over them) into an evaluator holding RULES
// rules, and prints the CPU time of feeding and evaluating per simulated
// second, i.e. the fraction of one core the alert manager needs.
//
//   alerts_eval [RULES=10000] [SERIES=10000] [SECONDS=120] [AGG=p99] [GROUPS=1] [MODE]
//
// MODE `full`: quantile rules merge their whole window at each evaluation
// (the reference) instead of keeping it incrementally (the default).
// Rules: RULES/GROUPS rules, each on its own metric with group_by host and
// GROUPS hosts per metric (so RULES instances); window 1m, threshold above
// every value (nothing fires: the steady state).
#include "alerts/evaluator.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

using namespace cairn;

static double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

int main(int argc, char** argv) {
  size_t rules = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 10000;
  size_t series = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 10000;
  int seconds = argc > 3 ? std::atoi(argv[3]) : 120;
  std::string agg = argc > 4 ? argv[4] : "p99";
  size_t groups = argc > 5 ? std::strtoul(argv[5], nullptr, 10) : 1;
  cqrs::ddsketch_mapping mapping{0.01};
  alerts::evaluator ev{1000, mapping};
  bool full = argc > 6 && std::string{argv[6]} == "full";
  ev.set_incremental(!full);
  size_t metrics = std::max<size_t>(1, rules / groups);
  for (size_t i = 0; i < metrics; ++i) {
    nlohmann::json j{{"name", "r" + std::to_string(i)},
                     {"metric", "m" + std::to_string(i)},
                     {"agg", agg},
                     {"window", "1m"},
                     {"threshold", 1e12}};
    if (groups > 1)
      j["group_by"] = {"host"};
    ev.upsert(std::get<alerts::rule>(alerts::parse_rule(j, 1000)));
  }
  // One closed bucket per series and second, ~100k/SERIES events each.
  size_t per_bucket = std::max<size_t>(1, 100000 / series);
  std::vector<cqrs::closed_bucket> pass;
  pass.reserve(series);
  for (size_t s = 0; s < series; ++s) {
    cqrs::closed_bucket b;
    auto metric = "m" + std::to_string(s % metrics);
    b.key = cqrs::make_series_key(
      metric, {{"host", "h" + std::to_string((s / metrics) % groups)},
               {"i", std::to_string(s)}});
    for (size_t e = 0; e < per_bucket; ++e)
      b.value.add(0, 1.0 + static_cast<double>((s * 7 + e * 13) % 500), mapping);
    pass.push_back(std::move(b));
  }
  double feed = 0, eval = 0;
  uint64_t evaluated = 0;
  double warm_feed = 0, warm_eval = 0;
  for (int t = 0; t < seconds; ++t) {
    cqrs::millis start = 1'000'000'000'000LL + t * 1000LL;
    for (auto& b : pass)
      b.start = start;
    auto c0 = cpu_seconds();
    ev.add(pass, 0);
    auto c1 = cpu_seconds();
    auto e = ev.evaluate(start + 1000 + 220);
    auto c2 = cpu_seconds();
    evaluated += e.evaluated;
    feed += c1 - c0;
    eval += c2 - c1;
    if (t == 59) { // windows full from here on
      warm_feed = feed;
      warm_eval = eval;
    }
  }
  int steady = seconds > 60 ? seconds - 60 : seconds;
  double sf = seconds > 60 ? feed - warm_feed : feed;
  double se = seconds > 60 ? eval - warm_eval : eval;
  std::printf("rules %zu (%zu metrics x %zu groups), instances %zu, series %zu, "
              "agg %s (%s), window 1m, %d s simulated\n",
              rules, metrics, groups, ev.instance_count(), series, agg.c_str(),
              full ? "full merge" : "incremental", seconds);
  std::printf("evaluations %llu\n", static_cast<unsigned long long>(evaluated));
  std::printf("steady state (windows full): feed %.2f ms/s, evaluate %.2f ms/s, "
              "total %.2f ms per second of data = %.1f %% of one core\n",
              sf * 1000 / steady, se * 1000 / steady, (sf + se) * 1000 / steady,
              (sf + se) * 100 / steady);
  return 0;
}
