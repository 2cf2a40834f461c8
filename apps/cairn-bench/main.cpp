// cairn-bench: load generator for a Cairn node's client port with latency
// histograms. Parses options, checks the node with a ping, runs one
// `connection_driver` per connection, and prints a summary (docs/clients.md).
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "bench_options.hpp"
#include "connection_driver.hpp"

#include "../common/tcp_connect.hpp"
#include "../common/tls_client.hpp"

namespace {

using namespace cairn::bench;
using json = nlohmann::ordered_json;

run_control g_control;

extern "C" void on_signal(int) {
  if (g_control.stop.exchange(true))
    g_control.abort.store(true);
}

std::string with_commas(uint64_t v) {
  auto digits = std::to_string(v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0)
      out += ',';
    out += digits[i];
  }
  return out;
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

/// Sends a ping on a fresh connection; returns the reply or throws.
json ping_node(const bench_options& opts) {
  int fd = cairn::apps::tcp_connect(opts.host, opts.port, std::chrono::milliseconds(5000));
  std::string_view ping = "{\"op\":\"ping\"}\n";
  std::string reply;
  char buf[4096];
  if (opts.tls.enabled) {
    // TLS errors (a wrong CA, a missing client certificate) surface here,
    // once, before any load connection is opened.
    try {
      cairn::apps::tls_session tls{fd, opts.host, opts.port, opts.tls,
                                   std::chrono::milliseconds(5000)};
      size_t off = 0;
      while (off < ping.size()) {
        auto w = tls.write_some(ping.data() + off, ping.size() - off,
                                std::chrono::milliseconds(5000));
        if (w == 0)
          break;
        off += w;
      }
      while (off == ping.size() && reply.find('\n') == std::string::npos) {
        auto n = tls.read_some(buf, sizeof(buf), std::chrono::milliseconds(5000));
        if (n <= 0)
          break;
        reply.append(buf, static_cast<size_t>(n));
      }
      tls.close();
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
    fd = -1;
  }
  timeval tv{5, 0};
  if (fd >= 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  auto sent = fd < 0 ? ssize_t{-1} : ::send(fd, ping.data(), ping.size(), MSG_NOSIGNAL);
  while (sent == static_cast<ssize_t>(ping.size())
         && reply.find('\n') == std::string::npos) {
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0)
      break;
    reply.append(buf, static_cast<size_t>(n));
  }
  if (fd >= 0)
    ::close(fd);
  auto nl = reply.find('\n');
  if (nl == std::string::npos)
    throw std::runtime_error("no reply to ping from " + opts.host + ":"
                             + std::to_string(opts.port));
  auto doc = json::parse(reply.substr(0, nl), nullptr, false);
  if (!doc.is_object() || !doc.value("ok", false))
    throw std::runtime_error("bad ping reply: " + reply.substr(0, nl));
  return doc;
}

/// Latency percentiles in `unit_ns` units.
json percentiles(const latency_histogram& h, std::initializer_list<double> qs,
                 double unit_ns) {
  json out = {{"count", h.count()}};
  for (double q : qs) {
    std::string name = "p" + fixed(q * 100, q * 100 == static_cast<int>(q * 100) ? 0 : 1);
    out[name] = static_cast<double>(h.quantile(q)) / unit_ns;
  }
  out["max"] = static_cast<double>(h.max()) / unit_ns;
  return out;
}

std::string percentile_line(const json& p, int decimals) {
  std::string out;
  for (const auto& [k, v] : p.items())
    if (k != "count")
      out += "  " + k + " " + fixed(v.get<double>(), decimals);
  return out;
}

} // namespace

int main(int argc, char** argv) {
  int status = 0;
  auto parsed = parse_bench_options(argc, argv, status);
  if (!parsed)
    return status;
  const auto& opts = *parsed;
  const bool query_mode = opts.mode == bench_mode::query;

  // -- check the node and connect -----------------------------------------------
  json node;
  std::vector<std::unique_ptr<connection_driver>> drivers;
  try {
    node = ping_node(opts);
    if (node.value("status", std::string{"ready"}) != "ready")
      std::cerr << "warning: node status is '" << node.value("status", "")
                << "'\n";
    for (uint32_t i = 0; i < opts.connections; ++i) {
      drivers.push_back(std::make_unique<connection_driver>(opts, i, g_control));
      drivers.back()->connect();
    }
  } catch (const std::exception& e) {
    std::cerr << "cairn-bench: " << e.what() << '\n';
    return 2;
  }
  for (auto& d : drivers)
    d->prepare();

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  // -- run ------------------------------------------------------------------------
  auto cpu0 = cpu_seconds();
  auto t0 = clock_type::now();
  for (auto& d : drivers)
    d->start(t0);
  for (auto& d : drivers)
    d->join();
  auto wall = std::chrono::duration<double>(clock_type::now() - t0).count();
  auto cpu = cpu_seconds() - cpu0;

  // -- aggregate --------------------------------------------------------------------
  connection_result total;
  std::vector<std::string> failures;
  std::vector<std::string> samples;
  double final_flush_ms = 0;
  bool all_completed = true;
  for (auto& d : drivers) {
    const auto& r = d->result();
    total.events_sent += r.events_sent;
    total.requests_sent += r.requests_sent;
    total.accepted += r.accepted;
    total.rejected += r.rejected;
    total.rejected_lines += r.rejected_lines;
    total.error_replies += r.error_replies;
    total.empty_replies += r.empty_replies;
    total.ack_ns.merge(r.ack_ns);
    total.query_ns.merge(r.query_ns);
    total.send_seconds = std::max(total.send_seconds, r.send_seconds);
    total.done_seconds = std::max(total.done_seconds, r.done_seconds);
    final_flush_ms = std::max(final_flush_ms, r.final_flush_ms);
    all_completed = all_completed && r.completed;
    if (!r.failure.empty())
      failures.push_back(r.failure);
    for (const auto& s : r.sample_errors)
      if (samples.size() < 10)
        samples.push_back(s);
  }
  const bool aborted = g_control.abort.load();
  const bool mismatch = !query_mode && all_completed
                        && total.accepted != total.events_sent;
  const auto send_rate = total.send_seconds > 0
                           ? static_cast<double>(total.events_sent)
                               / total.send_seconds
                           : 0.0;
  const auto e2e_rate = total.done_seconds > 0
                          ? static_cast<double>(total.accepted)
                              / total.done_seconds
                          : 0.0;
  const auto qps = total.send_seconds > 0 ? static_cast<double>(total.query_ns.count())
                                               / total.send_seconds
                                          : 0.0;
  auto ack = percentiles(total.ack_ns, {0.5, 0.99, 0.999}, 1e6);
  auto qlat = percentiles(total.query_ns, {0.5, 0.9, 0.99, 0.999}, 1e3);
  const bool ok = failures.empty() && !aborted && all_completed && !mismatch
                  && total.rejected == 0 && total.rejected_lines == 0
                  && total.error_replies == 0;

  // -- report -----------------------------------------------------------------------
  if (opts.json) {
    json out = {{"ok", ok},
                {"mode", to_string(opts.mode)},
                {"node", node.value("node", json{})},
                {"version", node.value("version", json{})},
                {"connections", opts.connections},
                {"series", opts.series},
                {"batch", opts.batch},
                {"rate", opts.rate},
                {"ts_spread_ms", opts.shape.ts_spread_ms},
                {"value_decades", opts.shape.value_decades},
                {"wall_seconds", wall},
                {"cpu_seconds", cpu},
                {"cpu_percent_of_core", wall > 0 ? 100 * cpu / wall : 0}};
    if (query_mode) {
      out["queries"] = total.query_ns.count();
      out["queries_per_second"] = qps;
      out["query_errors"] = total.error_replies;
      out["empty_replies"] = total.empty_replies;
      out["query_latency_us"] = qlat;
    } else {
      out["events_sent"] = total.events_sent;
      out["send_seconds"] = total.send_seconds;
      out["events_per_second"] = send_rate;
      out["accepted"] = total.accepted;
      out["rejected"] = total.rejected;
      out["rejected_lines"] = total.rejected_lines;
      out["error_replies"] = total.error_replies;
      out["done_seconds"] = total.done_seconds;
      out["accepted_per_second"] = e2e_rate;
      out["final_flush_ms"] = final_flush_ms;
      out["mismatch"] = mismatch;
      out["ack_latency_ms"] = ack;
    }
    out["failures"] = failures;
    out["errors"] = samples;
    std::cout << out.dump() << '\n';
  } else {
    std::ostringstream head;
    head << "cairn-bench  mode " << to_string(opts.mode) << "  connections "
         << opts.connections;
    if (!query_mode)
      head << "  series " << opts.series << "  batch " << opts.batch;
    head << "  rate " << (opts.rate > 0 ? with_commas(static_cast<uint64_t>(opts.rate)) + "/s" : "max")
         << "  node " << node.value("node", std::string{"?"}) << " "
         << node.value("version", std::string{"?"});
    std::cout << head.str() << '\n';
    if (query_mode) {
      std::cout << "queries      " << with_commas(total.query_ns.count()) << " in "
                << fixed(total.send_seconds, 2) << " s  "
                << with_commas(static_cast<uint64_t>(qps)) << " queries/s  (errors "
                << total.error_replies << ", empty replies " << total.empty_replies
                << ")\n";
      std::cout << "latency us  " << percentile_line(qlat, 1) << '\n';
    } else {
      auto bpe = drivers.empty() ? 0.0 : drivers[0]->bytes_per_event();
      std::cout << "sent         " << with_commas(total.events_sent)
                << " events in " << fixed(total.send_seconds, 2) << " s  "
                << with_commas(static_cast<uint64_t>(send_rate)) << " events/s  ("
                << fixed(bpe, 0) << " B/event, "
                << fixed(send_rate * bpe / 1e6, 1) << " MB/s)\n";
      if (!all_completed)
        std::cout << "acknowledged (incomplete: not every final flush was "
                     "answered) ";
      else
        std::cout << "acknowledged ";
      std::cout << with_commas(total.accepted) << " accepted, "
                << with_commas(total.rejected) << " rejected, after "
                << fixed(total.done_seconds, 2) << " s  "
                << with_commas(static_cast<uint64_t>(e2e_rate))
                << " events/s end-to-end  (final flush " << fixed(final_flush_ms, 1)
                << " ms)\n";
      if (total.ack_ns.count() > 0)
        std::cout << "ack ms       " << with_commas(total.ack_ns.count())
                  << (opts.mode == bench_mode::ff ? " flushes" : " requests")
                  << percentile_line(ack, 3) << '\n';
    }
    std::cout << "bench cpu    " << fixed(cpu, 2) << " s  ("
              << fixed(wall > 0 ? 100 * cpu / wall : 0, 0)
              << " % of one core over " << fixed(wall, 2) << " s)\n";
    if (mismatch)
      std::cerr << "MISMATCH: sent " << with_commas(total.events_sent)
                << " events but the server accepted " << with_commas(total.accepted)
                << " (rejected " << with_commas(total.rejected) << ")\n";
    if (total.rejected > 0 || total.rejected_lines > 0)
      std::cerr << "REJECTED: " << with_commas(total.rejected) << " events ("
                << with_commas(total.rejected_lines) << " rejection lines)\n";
    if (total.error_replies > 0)
      std::cerr << "ERRORS: " << total.error_replies << " error replies\n";
    for (const auto& f : failures)
      std::cerr << "FAILED: " << f << '\n';
    if (!all_completed && failures.empty() && !aborted)
      std::cerr << "FAILED: not every connection got its final flush reply\n";
    for (const auto& s : samples)
      std::cerr << "  e.g. " << s << '\n';
    if (aborted)
      std::cerr << "interrupted\n";
  }
  if (aborted)
    return 130;
  if (!failures.empty())
    return 2;
  return ok ? 0 : 1;
}
