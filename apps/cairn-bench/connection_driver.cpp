#include "connection_driver.hpp"
#include "runtime/time.hpp"

#include "../common/tcp_connect.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace cairn::bench {

namespace {

using json = nlohmann::json;
using namespace std::chrono;

constexpr size_t max_sample_errors = 5;
constexpr std::string_view flush_line = "{\"op\":\"flush\"}\n";
constexpr std::string_view final_flush_line =
  "{\"op\":\"flush\",\"id\":\"bench-final\"}\n";

double seconds_since(clock_type::time_point t0) {
  return duration<double>(clock_type::now() - t0).count();
}

/// Returns the text after `"key"` and its ':' (whitespace skipped), or an
/// empty view when the key does not occur. Good enough for the top-level
/// keys of the server's replies; avoids a full parse on hot paths.
std::string_view value_after_key(std::string_view line, std::string_view key) {
  std::string quoted;
  quoted.reserve(key.size() + 2);
  quoted += '"';
  quoted += key;
  quoted += '"';
  auto pos = line.find(quoted);
  if (pos == std::string_view::npos)
    return {};
  line.remove_prefix(pos + quoted.size());
  while (!line.empty()
         && (line.front() == ' ' || line.front() == ':' || line.front() == '\t'))
    line.remove_prefix(1);
  return line;
}

void set_timeout(int fd, int opt, milliseconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
  setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

} // namespace

// -- construction -----------------------------------------------------------------

connection_driver::connection_driver(const bench_options& opts, uint32_t index,
                                     run_control& control)
  : opts_(opts), index_(index), control_(control) {
}

connection_driver::~connection_driver() {
  if (writer_.joinable() || reader_.joinable())
    join();
  tls_.reset();
  if (fd_ >= 0)
    ::close(fd_);
}

void connection_driver::connect() {
  fd_ = apps::tcp_connect(opts_.host, opts_.port, milliseconds(5000));
  if (opts_.tls.enabled)
    tls_ = std::make_unique<apps::tls_session>(fd_, opts_.host, opts_.port,
                                               opts_.tls, milliseconds(5000));
  apps::tcp_authenticate(fd_, tls_.get(), opts_.token, milliseconds(5000));
  set_timeout(fd_, SO_SNDTIMEO, milliseconds(200));
  set_timeout(fd_, SO_RCVTIMEO, milliseconds(200));
}

ssize_t connection_driver::send_some(const char* data, size_t n) {
  if (!tls_)
    return ::send(fd_, data, n, MSG_NOSIGNAL);
  try {
    auto w = tls_->write_some(data, n, milliseconds(200));
    if (w == 0) {
      errno = EAGAIN;
      return -1;
    }
    return static_cast<ssize_t>(w);
  } catch (const std::exception& e) {
    fail(e.what());
    errno = EPIPE;
    return -1;
  }
}

ssize_t connection_driver::recv_some(char* buf, size_t n) {
  if (!tls_)
    return ::recv(fd_, buf, n, 0);
  try {
    auto r = tls_->read_some(buf, n, milliseconds(200));
    if (r < 0)
      errno = EAGAIN;
    return r;
  } catch (const std::exception& e) {
    fail(e.what());
    errno = EPIPE;
    return -1;
  }
}

void connection_driver::prepare() {
  switch (opts_.mode) {
    case bench_mode::ff:
      pool_ = event_pool::event_lines(opts_.pool, index_, opts_.connections,
                                      opts_.series, opts_.seed, opts_.shape);
      break;
    case bench_mode::ack:
      pool_ = event_pool::ingest_requests(opts_.pool, opts_.batch, index_,
                                          opts_.connections, opts_.series,
                                          opts_.seed, opts_.shape);
      break;
    case bench_mode::query:
      query_line_ = opts_.query + "\n";
      break;
  }
  if (opts_.mode != bench_mode::query)
    pool_.patch_timestamps(runtime::wall_clock_now());
}

void connection_driver::start(clock_type::time_point t0) {
  t0_ = t0;
  reader_ = std::thread{[this] { read_loop(); }};
  writer_ = std::thread{[this] { write_loop(); }};
}

void connection_driver::join() {
  if (writer_.joinable())
    writer_.join();
  if (reader_.joinable())
    reader_.join();
}

// -- writer -------------------------------------------------------------------------

bool connection_driver::write_all(std::string_view data) {
  auto last_progress = clock_type::now();
  while (!data.empty()) {
    auto n = send_some(data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      last_progress = clock_type::now();
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      // Backpressure (or a signal): keep waiting unless told to give up.
      if (control_.abort.load() || failed_.load())
        return false;
      if (clock_type::now() - last_progress
          > duration<double>(opts_.timeout_s)) {
        fail("server stopped reading for "
             + std::to_string(static_cast<int>(opts_.timeout_s)) + " s");
        return false;
      }
      continue;
    }
    fail(std::string{"send failed: "} + std::strerror(errno));
    return false;
  }
  return true;
}

void connection_driver::push_pending(request_kind kind) {
  std::lock_guard guard{mtx_};
  pending_.push_back({kind, clock_type::now()});
}

bool connection_driver::wait_for_slot() {
  std::unique_lock guard{mtx_};
  while (pending_.size() >= opts_.inflight) {
    if (control_.abort.load() || failed_.load())
      return false;
    slot_freed_.wait_for(guard, milliseconds(100));
  }
  return true;
}

void connection_driver::write_loop() {
  const auto conns = opts_.connections;
  const bool ff = opts_.mode == bench_mode::ff;
  const bool query = opts_.mode == bench_mode::query;
  const uint64_t events_per_unit = ff || query ? 1 : opts_.batch;
  const size_t pool_units = query ? 1 : pool_.units();

  // This connection's share of --events (queries in query mode), in units.
  uint64_t quota = UINT64_MAX;
  if (opts_.events > 0) {
    auto share = opts_.events / conns + (index_ < opts_.events % conns ? 1 : 0);
    quota = (share + events_per_unit - 1) / events_per_unit;
  }
  const bool timed = opts_.events == 0;
  const auto deadline =
    t0_ + duration_cast<clock_type::duration>(duration<double>(opts_.duration_s));
  // Pacing, in units per second for this connection (0 = unlimited).
  const double unit_rate =
    opts_.rate / conns / static_cast<double>(events_per_unit);
  uint64_t units_per_write = ff ? opts_.batch : 1;
  if (unit_rate > 0) // about 200 writes per second at most
    units_per_write = std::clamp<uint64_t>(
      static_cast<uint64_t>(unit_rate / 200), 1, units_per_write);

  uint64_t sent = 0;
  uint64_t since_flush = 0;
  size_t next = 0;
  int64_t patched_second = runtime::wall_clock_now() / 1000;
  while (!control_.stop.load() && !control_.abort.load() && !failed_.load()) {
    if (sent >= quota || (timed && clock_type::now() >= deadline))
      break;
    uint64_t n = std::min<uint64_t>(units_per_write, quota - sent);
    n = std::min<uint64_t>(n, pool_units - next);
    if (ff && opts_.flush_every > 0)
      n = std::min<uint64_t>(n, opts_.flush_every - since_flush);
    if (unit_rate > 0) {
      auto due = t0_ + duration_cast<clock_type::duration>(
                   duration<double>(static_cast<double>(sent) / unit_rate));
      if (due > clock_type::now())
        std::this_thread::sleep_until(due);
    }
    if (!query) {
      // Keep event times current: refresh the pool's ts digits each second.
      auto now_ms = runtime::wall_clock_now();
      if (now_ms / 1000 != patched_second) {
        patched_second = now_ms / 1000;
        pool_.patch_timestamps(now_ms);
      }
    }
    if (!ff) {
      if (!wait_for_slot())
        break;
      push_pending(query ? request_kind::query : request_kind::ingest);
    }
    if (!write_all(query ? std::string_view{query_line_} : pool_.slice(next, n)))
      break;
    sent += n;
    since_flush += n;
    next = (next + n) % pool_units;
    if (ff && opts_.flush_every > 0 && since_flush >= opts_.flush_every) {
      since_flush = 0;
      push_pending(request_kind::flush);
      if (!write_all(flush_line))
        break;
    }
  }
  result_.send_seconds = seconds_since(t0_);
  if (query)
    result_.requests_sent = sent;
  else {
    result_.events_sent = sent * events_per_unit;
    result_.requests_sent = ff ? 0 : sent;
  }
  // Every mode ends with a flush: its reply is the last one, so the reader
  // knows when it is done, and in ff mode it carries the final counts.
  if (!control_.abort.load() && !failed_.load()) {
    push_pending(request_kind::final_flush);
    (void) write_all(final_flush_line);
  }
}

// -- reader ---------------------------------------------------------------------------

void connection_driver::note_error(std::string_view what) {
  if (result_.sample_errors.size() < max_sample_errors)
    result_.sample_errors.emplace_back(what.substr(0, 300));
}

void connection_driver::fail(std::string what) {
  std::lock_guard guard{failure_mtx_};
  if (result_.failure.empty())
    result_.failure = std::move(what);
  failed_.store(true);
  slot_freed_.notify_all();
}

bool connection_driver::on_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r')
    line.remove_suffix(1);
  if (line.empty())
    return false;
  // Rejection of a fire-and-forget event line: not a reply to a request.
  if (opts_.mode == bench_mode::ff) {
    auto v = value_after_key(line, "line");
    if (!v.empty() && v.front() >= '0' && v.front() <= '9') {
      ++result_.rejected_lines;
      note_error(line);
      return false;
    }
  }
  pending_request req;
  {
    std::lock_guard guard{mtx_};
    if (pending_.empty()) {
      ++result_.error_replies;
      note_error(std::string{"unexpected reply: "} + std::string{line});
      return false;
    }
    req = pending_.front();
    pending_.pop_front();
  }
  slot_freed_.notify_one();
  auto latency = duration_cast<nanoseconds>(clock_type::now() - req.sent);
  auto latency_ns = static_cast<uint64_t>(latency.count());

  if (req.kind == request_kind::query) {
    // Queries are the hot path here: check the reply without parsing it.
    result_.query_ns.record(latency_ns);
    auto ok = value_after_key(line, "ok");
    if (ok.empty() || ok.front() != 't') {
      ++result_.error_replies;
      note_error(line);
    } else if (value_after_key(line, "series").starts_with("[]")) {
      ++result_.empty_replies;
    }
    return false;
  }
  // flush or ingest replies carry counts; they are rare enough to parse.
  auto doc = json::parse(line, nullptr, false);
  if (!doc.is_object() || !doc.value("ok", false)) {
    ++result_.error_replies;
    note_error(line);
  } else {
    auto accepted = doc.value("accepted", uint64_t{0});
    auto rejected = doc.value("rejected", uint64_t{0});
    result_.accepted += accepted;
    result_.rejected += rejected;
    if (rejected > 0) {
      if (auto it = doc.find("errors"); it != doc.end() && it->is_array()
                                        && !it->empty())
        note_error((*it)[0].dump());
    }
  }
  switch (req.kind) {
    case request_kind::flush:
    case request_kind::ingest:
      result_.ack_ns.record(latency_ns);
      return false;
    case request_kind::final_flush:
      result_.final_flush_ms = static_cast<double>(latency_ns) / 1e6;
      result_.done_seconds = seconds_since(t0_);
      result_.completed = true;
      return true;
    case request_kind::query:
      break;
  }
  return false;
}

void connection_driver::read_loop() {
  std::string acc;
  std::string chunk(256 * 1024, '\0');
  auto last_progress = clock_type::now();
  for (;;) {
    if (control_.abort.load() || failed_.load())
      return;
    auto n = recv_some(chunk.data(), chunk.size());
    if (n > 0) {
      last_progress = clock_type::now();
      // Handle complete lines straight from the chunk when nothing is
      // carried over; otherwise append and split.
      std::string_view data{chunk.data(), static_cast<size_t>(n)};
      if (!acc.empty()) {
        acc.append(data);
        data = acc;
      }
      size_t start = 0;
      for (;;) {
        auto nl = data.find('\n', start);
        if (nl == std::string_view::npos)
          break;
        if (on_line(data.substr(start, nl - start)))
          return;
        start = nl + 1;
      }
      std::string rest{data.substr(start)};
      acc = std::move(rest);
      continue;
    }
    if (n == 0) {
      fail("server closed the connection");
      return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      // Give up only while a reply is owed and none came for a long time.
      bool owed;
      {
        std::lock_guard guard{mtx_};
        owed = !pending_.empty();
      }
      if (!owed)
        last_progress = clock_type::now();
      else if (clock_type::now() - last_progress
               > duration<double>(opts_.timeout_s)) {
        fail("no reply for " + std::to_string(static_cast<int>(opts_.timeout_s))
             + " s");
        return;
      }
      continue;
    }
    fail(std::string{"receive failed: "} + std::strerror(errno));
    return;
  }
}

} // namespace cairn::bench
