#include "runtime/metrics.hpp"

#include <string_view>

namespace cairn::runtime {

namespace {

// HELP text escaping of the exposition format: backslash and newline.
void append_escaped_help(std::string& out, std::string_view help) {
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

} // namespace

std::atomic<int64_t>& metrics_registry::counter(const std::string& name,
                                                const std::string& help) {
  return add(name, help, true);
}

std::atomic<int64_t>& metrics_registry::gauge(const std::string& name,
                                              const std::string& help) {
  return add(name, help, false);
}

std::atomic<int64_t>& metrics_registry::add(const std::string& name,
                                            const std::string& help,
                                            bool counter) {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto& e : entries_)
    if (e.name == name)
      return e.value;
  // std::deque never moves its elements on emplace_back: references stay valid.
  auto& e = entries_.emplace_back();
  e.name = name;
  e.help = help;
  e.counter = counter;
  return e.value;
}

void metrics_registry::add_renderer(std::function<std::string()> render) {
  std::lock_guard<std::mutex> guard{mtx_};
  renderers_.push_back(std::move(render));
}

std::string metrics_registry::render_prometheus() const {
  std::unique_lock<std::mutex> guard{mtx_};
  std::string out;
  out.reserve(entries_.size() * 96);
  for (auto& e : entries_) {
    out += "# HELP ";
    out += e.name;
    out += ' ';
    append_escaped_help(out, e.help);
    out += "\n# TYPE ";
    out += e.name;
    out += e.counter ? " counter\n" : " gauge\n";
    out += e.name;
    out += ' ';
    out += std::to_string(e.value.load(std::memory_order_relaxed));
    out += '\n';
  }
  auto renderers = renderers_;
  guard.unlock();
  for (auto& r : renderers)
    out += r();
  return out;
}

std::vector<std::pair<std::string, int64_t>> metrics_registry::snapshot() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<std::pair<std::string, int64_t>> out;
  out.reserve(entries_.size());
  for (auto& e : entries_)
    out.emplace_back(e.name, e.value.load(std::memory_order_relaxed));
  return out;
}

} // namespace cairn::runtime
