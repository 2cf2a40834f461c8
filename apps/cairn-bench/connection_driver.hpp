// One benchmark connection: a writer thread that sends pre-generated load
// as fast as allowed, and a reader thread that consumes every reply at the
// same time, so the server's replies never back up and the two directions
// never deadlock.
//
// The writer records each request it sends (flush, ingest or query) in a
// FIFO before writing it; replies come back in request order (protocol.md),
// so the reader pops the FIFO for each reply and records the latency.
// Fire-and-forget rejection lines (they carry "line") are counted apart. The
// run of a connection ends when the reply to its final flush arrives.
//
// Threading: construct, `connect` and `prepare` on the main thread; `start`
// launches the two threads; `join` waits for them; then read `result()`.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "../common/tls_client.hpp"
#include "bench_options.hpp"
#include "event_pool.hpp"
#include "latency_histogram.hpp"

namespace cairn::bench {

using clock_type = std::chrono::steady_clock;

/// Flags shared by all connections and the signal handler.
struct run_control {
  /// Stop sending load, flush, finish normally (first Ctrl-C).
  std::atomic<bool> stop{false};
  /// Give up at once (second Ctrl-C).
  std::atomic<bool> abort{false};
};

/// What one connection did.
struct connection_result {
  uint64_t events_sent = 0;     // ff/ack: events written
  uint64_t requests_sent = 0;   // ingest or query requests (not flushes)
  uint64_t accepted = 0;        // from flush / ingest replies
  uint64_t rejected = 0;        // from flush / ingest replies
  uint64_t rejected_lines = 0;  // fire-and-forget rejection lines seen
  uint64_t error_replies = 0;   // replies with "ok":false, unexpected lines
  uint64_t empty_replies = 0;   // query mode: "series":[]
  latency_histogram ack_ns;     // periodic flushes (ff) or ingest requests
  latency_histogram query_ns;   // query mode
  double send_seconds = 0;      // start → last load byte written
  double done_seconds = 0;      // start → final flush answered
  double final_flush_ms = 0;    // final flush sent → answered
  std::vector<std::string> sample_errors; // the first few, for the report
  std::string failure;          // transport failure, empty if none
  bool completed = false;       // the final flush was answered
};

class connection_driver {
public:
  connection_driver(const bench_options& opts, uint32_t index,
                    run_control& control);
  ~connection_driver();

  connection_driver(const connection_driver&) = delete;
  connection_driver& operator=(const connection_driver&) = delete;

  /// Connects; throws std::runtime_error on failure.
  void connect();

  /// Builds the event pool (or the query line).
  void prepare();

  /// Starts both threads; the run's clock starts at `t0`.
  void start(clock_type::time_point t0);

  /// Waits for both threads.
  void join();

  const connection_result& result() const noexcept {
    return result_;
  }

  /// Bytes per event of the pool (0 in query mode).
  double bytes_per_event() const noexcept {
    return pool_.bytes_per_event();
  }

private:
  enum class request_kind : uint8_t { flush, final_flush, ingest, query };

  struct pending_request {
    request_kind kind;
    clock_type::time_point sent;
  };

  // -- writer -------------------------------------------------------------------
  void write_loop();
  [[nodiscard]] bool write_all(std::string_view data);
  void push_pending(request_kind kind);
  [[nodiscard]] bool wait_for_slot();

  // -- reader -------------------------------------------------------------------
  void read_loop();
  /// Returns true once the final flush reply was handled.
  bool on_line(std::string_view line);
  void note_error(std::string_view what);
  void fail(std::string what);

  const bench_options& opts_;
  uint32_t index_;
  run_control& control_;
  int fd_ = -1;
  /// TLS (--tls): every send and recv goes through it; null = plain TCP.
  std::unique_ptr<apps::tls_session> tls_;

  /// ::send / ::recv, or their TLS forms: > 0 bytes, 0 (recv) end of
  /// stream, -1 with errno (EAGAIN after the 200 ms socket timeout).
  ssize_t send_some(const char* data, size_t n);
  ssize_t recv_some(char* buf, size_t n);
  event_pool pool_;
  std::string query_line_;
  clock_type::time_point t0_;
  std::thread writer_;
  std::thread reader_;

  std::mutex mtx_;
  std::condition_variable slot_freed_;
  std::deque<pending_request> pending_;
  std::atomic<bool> failed_{false};
  std::mutex failure_mtx_;

  connection_result result_;
};

} // namespace cairn::bench
