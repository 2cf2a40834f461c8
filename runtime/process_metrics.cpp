#include "runtime/process_metrics.hpp"

#include <caf/config.hpp>

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace cairn::runtime {

namespace {

// Seconds since the epoch at which the machine booted (/proc/stat btime).
double boot_time_seconds() {
  std::ifstream in{"/proc/stat"};
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double t = 0;
      in >> t;
      return t;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

int64_t count_open_fds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr)
    return 0;
  int64_t n = 0;
  while (auto* e = readdir(d))
    if (e->d_name[0] != '.')
      ++n;
  closedir(d);
  return n - 1; // the directory stream's own descriptor
}

} // namespace

process_figures read_process_figures() {
  process_figures out;
  static const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  static const double boot = boot_time_seconds();
  static const long page = sysconf(_SC_PAGESIZE);
  std::ifstream in{"/proc/self/stat"};
  std::string text{std::istreambuf_iterator<char>{in}, {}};
  // Field 2 (comm) is in parentheses and may hold spaces: parse after it.
  if (auto close = text.rfind(')'); close != std::string::npos) {
    std::istringstream fields{text.substr(close + 2)};
    // Fields from 3 on: state ppid pgrp session tty_nr tpgid flags minflt
    // cminflt majflt cmajflt utime(14) stime(15) cutime cstime priority nice
    // num_threads(20) itrealvalue starttime(22) vsize(23) rss(24).
    std::string field;
    double utime = 0, stime = 0, start = 0;
    int64_t threads = 0, vsize = 0, rss = 0;
    for (int i = 3; i <= 24 && fields >> field; ++i) {
      switch (i) {
        case 14: utime = std::stod(field); break;
        case 15: stime = std::stod(field); break;
        case 20: threads = std::stoll(field); break;
        case 22: start = std::stod(field); break;
        case 23: vsize = std::stoll(field); break;
        case 24: rss = std::stoll(field); break;
        default: break;
      }
    }
    out.cpu_seconds = (utime + stime) / ticks;
    out.start_time_seconds = boot + start / ticks;
    out.threads = threads;
    out.virtual_bytes = vsize;
    out.resident_bytes = rss * page;
  }
  out.open_fds = count_open_fds();
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0)
    out.max_fds = static_cast<int64_t>(lim.rlim_cur);
  return out;
}

void register_process_metrics(metrics_registry& m, std::string_view version) {
  constexpr int64_t micro = 1'000'000;
  auto& cpu = m.counter("process_cpu_seconds_total",
                        "Total user and system CPU time spent in seconds", {},
                        micro);
  auto& resident = m.gauge("process_resident_memory_bytes",
                           "Resident memory size in bytes");
  auto& virt = m.gauge("process_virtual_memory_bytes",
                       "Virtual memory size in bytes");
  auto& fds = m.gauge("process_open_fds", "Number of open file descriptors");
  auto& max_fds = m.gauge("process_max_fds",
                          "Maximum number of open file descriptors");
  auto& start = m.gauge("process_start_time_seconds",
                        "Start time of the process since unix epoch in seconds",
                        {}, 1000);
  auto& threads = m.gauge("process_threads", "Number of OS threads");
  m.gauge("cairn_build_info",
          "Cairn's version and what it was built with; always 1",
          {{"version", std::string{version}},
           {"caf", std::to_string(CAF_MAJOR_VERSION) + "."
                     + std::to_string(CAF_MINOR_VERSION) + "."
                     + std::to_string(CAF_PATCH_VERSION)},
           {"compiler", __VERSION__}})
    .store(1);
  m.on_collect([cpu = &cpu, resident = &resident, virt = &virt, fds = &fds,
                max_fds = &max_fds, start = &start, threads = &threads] {
    auto f = read_process_figures();
    cpu->store(static_cast<int64_t>(f.cpu_seconds * micro));
    resident->store(f.resident_bytes);
    virt->store(f.virtual_bytes);
    fds->store(f.open_fds);
    max_fds->store(f.max_fds);
    start->store(static_cast<int64_t>(f.start_time_seconds * 1000));
    threads->store(f.threads);
  });
}

} // namespace cairn::runtime
