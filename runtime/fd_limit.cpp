#include "runtime/fd_limit.hpp"

#include <sys/resource.h>

#include <algorithm>

namespace cairn::runtime {

fd_budget fit_fd_limit(size_t max_connections, const fd_reserve& reserve) {
  fd_budget out;
  out.max_connections = max_connections;
  out.needed = max_connections + reserve.total();
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return out;
  out.soft_before = out.soft = rl.rlim_cur;
  out.hard = rl.rlim_max;
  if (rl.rlim_cur != RLIM_INFINITY && out.needed > rl.rlim_cur) {
    auto want = rl.rlim_max == RLIM_INFINITY
                  ? static_cast<rlim_t>(out.needed)
                  : std::min<rlim_t>(rl.rlim_max, out.needed);
    if (want > rl.rlim_cur) {
      rlimit raised = rl;
      raised.rlim_cur = want;
      if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
        out.soft = want;
        out.raised = true;
      }
    }
  }
  if (out.soft != RLIM_INFINITY && out.needed > out.soft) {
    auto room = out.soft > reserve.total() ? out.soft - reserve.total() : 0;
    out.max_connections = std::max<size_t>(
      min_clamped_connections, std::min<size_t>(max_connections, room));
    out.clamped = out.max_connections < max_connections;
  }
  return out;
}

} // namespace cairn::runtime
