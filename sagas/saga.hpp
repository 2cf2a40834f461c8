// saga: a sequence of steps, each an action with its compensation, driven as
// an explicit state machine over a durable log (docs/sagas.md).
//
// The machine decides, its driver acts. `next(now)` says what to do: run a
// step (or its compensation) under an idempotency key and a deadline, wait
// for a retry backoff, or nothing (finished). The driver runs the action and
// reports the outcome (`succeeded`, `failed`); every decision is appended to
// the saga_log *before* the machine applies it, so a process killed at any
// point rebuilds the same machine from the log (`recover`) and carries on: a
// step whose outcome was not logged is run again under the same idempotency
// key, so a step implementation that honours the key takes effect once.
//
// Failure handling: a failed attempt is retried after an exponential backoff
// with full jitter (deterministic per saga, step and attempt, so a replay
// waits the same) up to the step's max attempts; then, or when the whole
// saga's timeout passes, the saga compensates every step it started, in
// reverse order (compensations must be idempotent and accept "nothing to
// undo"). A compensation that keeps failing past its own retry budget leaves
// the saga `stuck`: an operator must look (logged, visible in the log).
//
// No CAF, no threads: owned by one caller at a time (an actor, a test).
#pragma once

#include "runtime/time.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::sagas {

using runtime::millis;

class saga_log;

/// Exponential backoff with full jitter between attempts of one action.
struct retry_policy {
  uint32_t max_attempts = 5;
  millis initial_backoff = 100;
  millis max_backoff = 10'000;
  double multiplier = 2.0;
  /// Full jitter: the wait is uniform in [0, capped backoff], which spreads
  /// retries of many sagas apart; off: exactly the capped backoff.
  bool jitter = true;

  /// The wait after failed attempt `attempt` (1-based). `seed` makes the
  /// jitter deterministic (the same saga, step and attempt wait the same).
  millis backoff(uint32_t attempt, uint64_t seed) const;
};

struct step_spec {
  std::string name;
  retry_policy retry;
  retry_policy compensation_retry{10, 200, 30'000, 2.0, true};
  /// One attempt's deadline; the driver reports a failure ("timeout") if
  /// the action has not answered by then.
  millis timeout = 30'000;
  /// The point of no return (docs/sagas.md, "Pivot steps"): once this step
  /// has begun, the saga only goes forward. Its attempts and those of every
  /// later step are retried without limit (the backoff stays capped), the
  /// saga's timeout no longer compensates, and `abort` is refused. For a
  /// step after which undoing is worse than finishing (a new partition map
  /// that members may already serve).
  bool pivot = false;
};

struct saga_spec {
  std::string type;
  std::vector<step_spec> steps;
  /// The whole saga's forward deadline from its start: past it, it
  /// compensates instead of retrying further.
  millis timeout = 600'000;
};

// -- the log's records --------------------------------------------------------

enum class record_kind : uint8_t {
  started,            ///< detail: the saga's parameters
  step_started,       ///< an attempt of `step` begins
  step_done,          ///< detail: the step's result
  step_failed,        ///< detail: the error
  compensating,       ///< detail: why (the error that made it give up)
  undo_started,       ///< an attempt of step's compensation begins
  undo_done,
  undo_failed,        ///< detail: the error
  finished,           ///< detail: "succeeded", "compensated" or "stuck"
};

/// "started", "step_started", ...; from_string is its inverse.
std::string_view to_string(record_kind k) noexcept;
std::optional<record_kind> record_kind_from_string(std::string_view s);

struct saga_record {
  record_kind kind = record_kind::started;
  uint32_t step = 0;
  uint32_t attempt = 0;
  millis at = 0;
  std::string detail;
  /// The saga's type (only on `started`, so a log alone names its spec).
  std::string type;

  friend bool operator==(const saga_record&, const saga_record&) = default;
};

/// One record as a JSON object (the log's value format, docs/sagas.md).
std::string encode(const saga_record& r);
[[nodiscard]] std::optional<saga_record> decode(std::string_view text);

// -- the machine --------------------------------------------------------------

enum class saga_phase : uint8_t { forward, compensating, succeeded,
                                  compensated, stuck };

std::string_view to_string(saga_phase p) noexcept;

/// What the driver should do now.
struct saga_action {
  enum kind_type : uint8_t { execute, compensate, wait, done };
  kind_type kind = done;
  uint32_t step = 0;
  uint32_t attempt = 0;  ///< 1-based attempt this action is
  /// execute/compensate: the attempt's deadline; wait: when to ask again.
  millis until = 0;
  /// "<saga id>/<step>/do" or ".../undo": the same for every attempt.
  std::string idempotency_key;
};

class saga {
public:
  /// Starts a new saga: appends `started`. Returns nullopt if the log
  /// refused the record (nothing started).
  [[nodiscard]] static std::optional<saga>
  start(const saga_spec& spec, std::string id, std::string params,
        saga_log& log, millis now);

  /// Rebuilds a saga from its records (as saga_log::load returns them).
  /// Returns nullopt if they do not start with `started` or break the
  /// machine's rules (a corrupt or foreign log).
  [[nodiscard]] static std::optional<saga>
  recover(const saga_spec& spec, std::string id,
          const std::vector<saga_record>& records, saga_log& log);

  /// The next action at `now`. May append a record itself (`compensating`
  /// when the saga timed out, `finished` when nothing is left to do).
  saga_action next(millis now);

  /// The driver is about to run `a` (an execute or compensate action):
  /// appends the attempt's start. False if the log refused it (do not run).
  [[nodiscard]] bool begin(const saga_action& a, millis now);

  /// Outcome of the attempt begun last. False if the log refused the record
  /// (the machine is unchanged: report again, or recover later).
  [[nodiscard]] bool succeeded(std::string result, millis now);
  [[nodiscard]] bool failed(std::string error, millis now);

  /// Gives up going forward (an operator's abort): compensates. False once
  /// a pivot step has begun (or if the log refused the record).
  [[nodiscard]] bool abort(std::string reason, millis now);

  // -- properties -------------------------------------------------------------

  const std::string& id() const noexcept { return id_; }
  const std::string& params() const noexcept { return params_; }
  saga_phase phase() const noexcept { return phase_; }
  bool finished() const noexcept;
  /// True once a pivot step has begun: the saga can only go forward.
  bool past_pivot() const noexcept;
  /// The step in progress (forward) or being undone (compensating).
  uint32_t current_step() const noexcept {
    return phase_ == saga_phase::compensating && step_ > 0 ? step_ - 1 : step_;
  }
  /// Attempts of the current action so far.
  uint32_t attempts() const noexcept { return attempts_; }
  /// Results of the steps done so far (empty string for others).
  const std::vector<std::string>& results() const noexcept { return results_; }
  /// The error that made it compensate (or the last one while stuck).
  const std::string& error() const noexcept { return error_; }
  millis started_at() const noexcept { return started_at_; }

private:
  saga(const saga_spec& spec, std::string id, saga_log& log);

  [[nodiscard]] bool write(saga_record r);
  void apply(const saga_record& r);
  bool valid(const saga_record& r) const;
  uint64_t seed(uint32_t step, uint32_t attempt, bool undo) const;
  std::string key(uint32_t step, bool undo) const;

  const saga_spec* spec_;
  std::string id_;
  saga_log* log_;
  std::string params_;
  saga_phase phase_ = saga_phase::forward;
  millis started_at_ = 0;
  /// Forward: the step in progress (== steps.size() when all are done).
  /// Compensating: the step being undone (counting down).
  uint32_t step_ = 0;
  uint32_t attempts_ = 0;      ///< attempts of the current action so far
  bool in_flight_ = false;     ///< begun, outcome not logged
  millis last_failure_ = 0;
  /// Steps that may have taken effect (done, or started at all).
  uint32_t started_steps_ = 0;
  std::vector<std::string> results_;
  std::string error_;
};

} // namespace cairn::sagas
