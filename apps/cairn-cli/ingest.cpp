// `cairn-cli ingest FILE|-`: streams NDJSON event lines fire-and-forget,
// then sends a flush and reports the server's accepted/rejected counts.
//
// The main thread reads the input in large chunks and writes them to the
// socket (blocking while the server applies backpressure); a reader thread
// consumes replies at the same time — rejection lines for bad events and
// replies to any request lines in the input — so the server's reply stream
// never backs up and deadlocks the two directions. Blank lines are not sent;
// rejection line numbers are mapped back to input line numbers.
#include "commands.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include "line_client.hpp"
#include "../common/text_table.hpp"

namespace cairn::cli {

namespace {

constexpr const char* flush_id = "cairn-cli-flush";
constexpr size_t read_chunk = 256 * 1024;

/// Maps line numbers on the connection to line numbers of the input file,
/// which differ once blank lines are skipped. Written by the sending thread,
/// read by the reply thread.
class line_map {
public:
  /// Records that connection line `conn_line` and later ones are shifted
  /// by `skipped` blank input lines.
  void set_offset(int64_t conn_line, int64_t skipped) {
    std::lock_guard guard{mtx_};
    if (!marks_.empty() && marks_.back().first == conn_line)
      marks_.back().second = skipped;
    else
      marks_.emplace_back(conn_line, skipped);
  }

  int64_t input_line(int64_t conn_line) const {
    std::lock_guard guard{mtx_};
    auto it = std::upper_bound(
      marks_.begin(), marks_.end(), conn_line,
      [](int64_t line, const auto& mark) { return line < mark.first; });
    return conn_line + (it == marks_.begin() ? 0 : std::prev(it)->second);
  }

private:
  mutable std::mutex mtx_;
  std::vector<std::pair<int64_t, int64_t>> marks_;
};

/// What the reply thread found.
struct reply_summary {
  bool flush_seen = false;
  bool flush_ok = false;
  json flush_reply;
  int64_t error_lines = 0;   // rejections of fire-and-forget lines
  int64_t other_replies = 0; // replies to request lines in the input
  int64_t failed_requests = 0;
  std::string failure; // transport failure of the reader, if any
  json errors = json::array(); // first max_errors rejections, for --json
};

bool is_blank(const char* begin, const char* end) {
  for (auto* p = begin; p != end; ++p)
    if (*p != ' ' && *p != '\t' && *p != '\r')
      return false;
  return true;
}

} // namespace

int run_ingest(const cli_options& opts, const std::string& path) {
  int in_fd = 0;
  if (path != "-") {
    in_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (in_fd < 0) {
      std::cerr << "error: cannot open " << path << ": " << std::strerror(errno)
                << '\n';
      return exit_code::usage;
    }
  }
  line_client conn{opts.host, opts.port, opts.timeout, opts.tls, opts.token};
  auto start = std::chrono::steady_clock::now();

  // -- reply thread ------------------------------------------------------------
  line_map lines;
  reply_summary summary;
  std::atomic<bool> flush_sent{false};
  std::thread reader{[&] {
    std::string line;
    auto flush_deadline_left = opts.timeout * 6;
    try {
      for (;;) {
        // Before the flush, replies may be far apart: wait in slices.
        auto st = conn.read_line(line, std::chrono::milliseconds(200));
        if (st == read_status::eof) {
          summary.failure = "connection to " + conn.peer()
                            + " closed before the flush was answered";
          return;
        }
        if (st == read_status::timeout) {
          if (flush_sent.load()) {
            flush_deadline_left -= std::chrono::milliseconds(200);
            if (flush_deadline_left.count() <= 0) {
              summary.failure = "no flush reply from " + conn.peer();
              return;
            }
          }
          continue;
        }
        auto doc = json::parse(line, nullptr, false);
        if (!doc.is_object()) {
          std::cerr << "warning: malformed reply: " << line << '\n';
          continue;
        }
        if (auto id = doc.find("id"); id != doc.end() && *id == flush_id) {
          summary.flush_seen = true;
          summary.flush_ok = doc.value("ok", false);
          summary.flush_reply = std::move(doc);
          return;
        }
        if (auto ln = doc.find("line"); ln != doc.end() && ln->is_number()) {
          auto n = summary.error_lines++;
          auto input_line = lines.input_line(ln->get<int64_t>());
          const auto& err = doc.value("error", json::object());
          auto code = err.value("code", std::string{"?"});
          auto message = err.value("message", std::string{});
          if (n < opts.max_errors) {
            if (opts.json)
              summary.errors.push_back(json{{"line", input_line},
                                            {"code", code},
                                            {"message", message}});
            else
              std::cerr << "line " << input_line << ": " << code << ": "
                        << message << '\n';
          }
          continue;
        }
        // A reply to a request line that was part of the input.
        ++summary.other_replies;
        if (!doc.value("ok", false))
          ++summary.failed_requests;
        if (!opts.json)
          std::cout << line << '\n';
      }
    } catch (const std::exception& e) {
      summary.failure = e.what();
    }
  }};

  // -- sending -----------------------------------------------------------------
  int64_t input_lines = 0; // lines read from the input
  int64_t sent_lines = 0;  // lines written to the connection
  std::string send_error;
  try {
    std::string in;       // input bytes, possibly ending in a partial line
    std::string out;      // next write
    in.reserve(2 * read_chunk);
    out.reserve(2 * read_chunk);
    bool eof = false;
    while (!eof) {
      auto old = in.size();
      in.resize(old + read_chunk);
      auto n = ::read(in_fd, in.data() + old, read_chunk);
      if (n < 0 && errno == EINTR) {
        in.resize(old);
        continue;
      }
      if (n < 0)
        throw std::runtime_error(std::string{"cannot read input: "}
                                 + std::strerror(errno));
      in.resize(old + static_cast<size_t>(n));
      if (n == 0) {
        eof = true;
        if (!in.empty() && in.back() != '\n')
          in += '\n'; // a last line without newline
      }
      // Copy the complete, non-blank lines of `in` to `out`.
      const char* p = in.data();
      const char* end = p + in.size();
      out.clear();
      while (p < end) {
        auto* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
        if (nl == nullptr)
          break;
        ++input_lines;
        if (is_blank(p, nl))
          lines.set_offset(sent_lines + 1, input_lines - sent_lines);
        else {
          out.append(p, nl + 1);
          ++sent_lines;
        }
        p = nl + 1;
      }
      in.erase(0, static_cast<size_t>(p - in.data()));
      if (!out.empty())
        conn.send_all(out, opts.timeout * 6);
    }
    conn.send_all(std::string{R"({"op":"flush","id":")"} + flush_id + "\"}\n",
                  opts.timeout * 6);
    flush_sent.store(true);
  } catch (const std::exception& e) {
    send_error = e.what();
    flush_sent.store(true);
  }
  if (in_fd != 0)
    ::close(in_fd);
  reader.join();
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                            - start)
                .count();

  // -- report ------------------------------------------------------------------
  if (!send_error.empty() && !summary.flush_seen) {
    std::cerr << "error: " << send_error << '\n';
    if (!summary.failure.empty())
      std::cerr << "error: " << summary.failure << '\n';
    std::cerr << "sent " << sent_lines
              << " lines before the failure; their fate is unknown\n";
    return exit_code::transport;
  }
  if (!summary.flush_seen) {
    std::cerr << "error: " << summary.failure << '\n';
    std::cerr << "sent " << sent_lines
              << " lines; without a flush reply their fate is unknown\n";
    return exit_code::transport;
  }
  if (!summary.flush_ok)
    return report_error(summary.flush_reply);
  auto accepted = summary.flush_reply.value("accepted", int64_t{0});
  auto rejected = summary.flush_reply.value("rejected", int64_t{0});
  if (opts.json) {
    json out = {{"ok", rejected == 0 && summary.failed_requests == 0},
                {"lines", sent_lines},
                {"accepted", accepted},
                {"rejected", rejected},
                {"seconds", secs},
                {"errors", summary.errors}};
    if (summary.error_lines > opts.max_errors)
      out["errors_omitted"] = summary.error_lines - opts.max_errors;
    std::cout << out.dump() << '\n';
  } else {
    if (summary.error_lines > opts.max_errors)
      std::cerr << "... and " << summary.error_lines - opts.max_errors
                << " more rejected lines\n";
    char rate[64];
    std::snprintf(rate, sizeof(rate), "%.2f s, %.0f lines/s", secs,
                  secs > 0 ? static_cast<double>(sent_lines) / secs : 0.0);
    std::cout << "accepted " << accepted << ", rejected " << rejected << "  ("
              << sent_lines << " lines in " << rate << ")\n";
  }
  return rejected == 0 && summary.failed_requests == 0
           ? exit_code::ok
           : exit_code::server_error;
}

} // namespace cairn::cli
