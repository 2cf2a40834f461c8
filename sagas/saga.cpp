#include "sagas/saga.hpp"

#include "sagas/saga_log.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <functional>

namespace cairn::sagas {

namespace {

constexpr std::string_view kind_names[] = {
  "started",      "step_started", "step_done",   "step_failed", "compensating",
  "undo_started", "undo_done",    "undo_failed", "finished"};

/// SplitMix64: a well-mixed 64-bit value from a seed (the jitter source).
uint64_t mix(uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

} // namespace

// -- retry_policy -------------------------------------------------------------

millis retry_policy::backoff(uint32_t attempt, uint64_t seed) const {
  auto exponent = static_cast<double>(attempt == 0 ? 0 : attempt - 1);
  auto raw = static_cast<double>(initial_backoff) * std::pow(multiplier, exponent);
  auto capped = static_cast<millis>(
    std::min(raw, static_cast<double>(max_backoff)));
  capped = std::max<millis>(0, capped);
  if (!jitter || capped == 0)
    return capped;
  return static_cast<millis>(mix(seed) % static_cast<uint64_t>(capped + 1));
}

// -- records ------------------------------------------------------------------

std::string_view to_string(record_kind k) noexcept {
  auto i = static_cast<size_t>(k);
  return i < std::size(kind_names) ? kind_names[i] : "unknown";
}

std::optional<record_kind> record_kind_from_string(std::string_view s) {
  for (size_t i = 0; i < std::size(kind_names); ++i)
    if (kind_names[i] == s)
      return static_cast<record_kind>(i);
  return std::nullopt;
}

std::string_view to_string(saga_phase p) noexcept {
  switch (p) {
    case saga_phase::forward:
      return "forward";
    case saga_phase::compensating:
      return "compensating";
    case saga_phase::succeeded:
      return "succeeded";
    case saga_phase::compensated:
      return "compensated";
    case saga_phase::stuck:
      return "stuck";
  }
  return "unknown";
}

std::string encode(const saga_record& r) {
  nlohmann::json j{{"v", 1},
                   {"kind", std::string{to_string(r.kind)}},
                   {"step", r.step},
                   {"attempt", r.attempt},
                   {"at", r.at},
                   {"detail", r.detail}};
  if (!r.type.empty())
    j["type"] = r.type;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<saga_record> decode(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("v", 0) != 1)
    return std::nullopt;
  try {
    saga_record r;
    auto kind = record_kind_from_string(j.at("kind").get<std::string>());
    if (!kind)
      return std::nullopt;
    r.kind = *kind;
    r.step = j.at("step").get<uint32_t>();
    r.attempt = j.at("attempt").get<uint32_t>();
    r.at = j.at("at").get<millis>();
    r.detail = j.at("detail").get<std::string>();
    r.type = j.value("type", std::string{});
    return r;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

// -- saga ---------------------------------------------------------------------

saga::saga(const saga_spec& spec, std::string id, saga_log& log)
  : spec_(&spec), id_(std::move(id)), log_(&log) {
  results_.resize(spec.steps.size());
}

std::optional<saga> saga::start(const saga_spec& spec, std::string id,
                                std::string params, saga_log& log,
                                millis now) {
  saga s{spec, std::move(id), log};
  saga_record r;
  r.kind = record_kind::started;
  r.at = now;
  r.detail = std::move(params);
  r.type = spec.type;
  if (!s.write(std::move(r)))
    return std::nullopt;
  return s;
}

std::optional<saga> saga::recover(const saga_spec& spec, std::string id,
                                  const std::vector<saga_record>& records,
                                  saga_log& log) {
  saga s{spec, std::move(id), log};
  if (records.empty() || records.front().kind != record_kind::started)
    return std::nullopt;
  bool first = true;
  for (auto& r : records) {
    if (!first && !s.valid(r))
      return std::nullopt;
    first = false;
    s.apply(r);
  }
  return s;
}

bool saga::past_pivot() const noexcept {
  for (uint32_t i = 0; i < started_steps_ && i < spec_->steps.size(); ++i)
    if (spec_->steps[i].pivot)
      return true;
  return false;
}

bool saga::finished() const noexcept {
  return phase_ == saga_phase::succeeded || phase_ == saga_phase::compensated
         || phase_ == saga_phase::stuck;
}

std::string saga::key(uint32_t step, bool undo) const {
  return id_ + "/" + std::to_string(step) + (undo ? "/undo" : "/do");
}

uint64_t saga::seed(uint32_t step, uint32_t attempt, bool undo) const {
  return std::hash<std::string>{}(key(step, undo) + "#"
                                  + std::to_string(attempt));
}

bool saga::write(saga_record r) {
  if (!log_->append(id_, r))
    return false;
  apply(r);
  return true;
}

bool saga::valid(const saga_record& r) const {
  auto n = static_cast<uint32_t>(spec_->steps.size());
  switch (r.kind) {
    case record_kind::started:
      return false;  // only first
    case record_kind::step_started:
      return phase_ == saga_phase::forward && r.step == step_ && step_ < n
             && r.attempt == attempts_ + 1;
    case record_kind::step_done:
    case record_kind::step_failed:
      return phase_ == saga_phase::forward && in_flight_ && r.step == step_;
    case record_kind::compensating:
      return phase_ == saga_phase::forward && !past_pivot();
    case record_kind::undo_started:
      return phase_ == saga_phase::compensating && step_ > 0
             && r.step == step_ - 1 && r.attempt == attempts_ + 1;
    case record_kind::undo_done:
    case record_kind::undo_failed:
      return phase_ == saga_phase::compensating && in_flight_
             && r.step == step_ - 1;
    case record_kind::finished:
      return !finished();
  }
  return false;
}

void saga::apply(const saga_record& r) {
  switch (r.kind) {
    case record_kind::started:
      params_ = r.detail;
      started_at_ = r.at;
      phase_ = saga_phase::forward;
      break;
    case record_kind::step_started:
    case record_kind::undo_started:
      attempts_ = r.attempt;
      in_flight_ = true;
      if (r.kind == record_kind::step_started)
        started_steps_ = std::max(started_steps_, r.step + 1);
      break;
    case record_kind::step_done:
      results_[r.step] = r.detail;
      ++step_;
      attempts_ = 0;
      in_flight_ = false;
      break;
    case record_kind::undo_done:
      --step_;
      attempts_ = 0;
      in_flight_ = false;
      break;
    case record_kind::step_failed:
    case record_kind::undo_failed:
      in_flight_ = false;
      last_failure_ = r.at;
      error_ = r.detail;
      break;
    case record_kind::compensating:
      phase_ = saga_phase::compensating;
      error_ = r.detail;
      // Every step that may have taken effect is undone, the one that
      // failed (or whose outcome is unknown) included.
      step_ = started_steps_;
      attempts_ = 0;
      in_flight_ = false;
      break;
    case record_kind::finished:
      if (r.detail == "succeeded")
        phase_ = saga_phase::succeeded;
      else if (r.detail == "compensated")
        phase_ = saga_phase::compensated;
      else
        phase_ = saga_phase::stuck;
      break;
  }
}

saga_action saga::next(millis now) {
  saga_action out;
  if (finished())
    return out;
  auto n = static_cast<uint32_t>(spec_->steps.size());
  if (phase_ == saga_phase::forward) {
    if (step_ >= n) {
      if (!write({record_kind::finished, 0, 0, now, "succeeded", {}}))
        return {saga_action::wait, 0, 0, now, {}};
      return out;
    }
    auto& spec = spec_->steps[step_];
    auto give_up = [&](std::string why) {
      return write({record_kind::compensating, step_, attempts_, now,
                    std::move(why), {}});
    };
    bool compensate = false;
    if (past_pivot()) {
      // Past the point of no return: retry without limit, never undo.
    } else if (now >= started_at_ + spec_->timeout) {
      compensate = true;
      if (!give_up("saga timed out after " + runtime::format_duration(
                                                 spec_->timeout)
                   + (error_.empty() ? "" : " (last error: " + error_ + ")")))
        return {saga_action::wait, 0, 0, now, {}};
    } else if (attempts_ >= spec.retry.max_attempts) {
      compensate = true;
      if (!give_up("step " + spec.name + " failed " + std::to_string(attempts_)
                   + " times: " + (in_flight_ ? "no answer" : error_)))
        return {saga_action::wait, 0, 0, now, {}};
    }
    if (!compensate) {
      // A begun attempt with no logged outcome (the process died) is run
      // again at once under the same key; a failed one after its backoff.
      if (attempts_ > 0 && !in_flight_) {
        auto wake = last_failure_
                    + spec.retry.backoff(attempts_, seed(step_, attempts_, false));
        if (now < wake)
          return {saga_action::wait, step_, attempts_, wake, {}};
      }
      return {saga_action::execute, step_, attempts_ + 1, now + spec.timeout,
              key(step_, false)};
    }
  }
  // -- compensating ----------------------------------------------------------
  if (step_ == 0) {
    if (!write({record_kind::finished, 0, 0, now, "compensated", {}}))
      return {saga_action::wait, 0, 0, now, {}};
    return out;
  }
  auto undo = step_ - 1;
  auto& spec = spec_->steps[undo];
  if (attempts_ >= spec.compensation_retry.max_attempts) {
    if (!write({record_kind::finished, undo, attempts_, now, "stuck", {}}))
      return {saga_action::wait, 0, 0, now, {}};
    return out;
  }
  if (attempts_ > 0 && !in_flight_) {
    auto wake = last_failure_
                + spec.compensation_retry.backoff(attempts_,
                                                  seed(undo, attempts_, true));
    if (now < wake)
      return {saga_action::wait, undo, attempts_, wake, {}};
  }
  return {saga_action::compensate, undo, attempts_ + 1, now + spec.timeout,
          key(undo, true)};
}

bool saga::begin(const saga_action& a, millis now) {
  if (a.kind == saga_action::execute)
    return write({record_kind::step_started, a.step, a.attempt, now, {}, {}});
  if (a.kind == saga_action::compensate)
    return write({record_kind::undo_started, a.step, a.attempt, now, {}, {}});
  return false;
}

bool saga::succeeded(std::string result, millis now) {
  if (!in_flight_)
    return false;
  if (phase_ == saga_phase::forward)
    return write({record_kind::step_done, step_, attempts_, now,
                  std::move(result), {}});
  if (phase_ == saga_phase::compensating)
    return write({record_kind::undo_done, step_ - 1, attempts_, now,
                  std::move(result), {}});
  return false;
}

bool saga::failed(std::string error, millis now) {
  if (!in_flight_)
    return false;
  if (phase_ == saga_phase::forward)
    return write({record_kind::step_failed, step_, attempts_, now,
                  std::move(error), {}});
  if (phase_ == saga_phase::compensating)
    return write({record_kind::undo_failed, step_ - 1, attempts_, now,
                  std::move(error), {}});
  return false;
}

bool saga::abort(std::string reason, millis now) {
  if (phase_ != saga_phase::forward || past_pivot())
    return false;
  return write({record_kind::compensating, step_, attempts_, now,
                "aborted: " + reason, {}});
}

} // namespace cairn::sagas
