// Re-exports runtime/time.hpp into cairn::cqrs (the domain speaks in millis).
#pragma once

#include "runtime/time.hpp"

namespace cairn::cqrs {

using runtime::align_down;
using runtime::format_duration;
using runtime::millis;
using runtime::parse_duration;
using runtime::parse_time;
using runtime::wall_clock_now;

} // namespace cairn::cqrs
