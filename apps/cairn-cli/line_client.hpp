// A blocking NDJSON-over-TCP client connection for cairn-cli.
//
// `line_client` owns one TCP socket to a node's client port and speaks the
// line protocol of docs/protocol.md: whole lines out, whole lines in.
//
// Threading contract: one thread may send (`send_all`) while another thread
// reads (`read_line`) on the same object at the same time; the two paths
// share only the socket descriptor. Two concurrent senders or two concurrent
// readers are not allowed.
//
// With TLS (`tls.enabled`) the same calls go through an apps::tls_session,
// whose lock keeps the one-sender-one-reader contract valid.
//
// Transport failures (cannot connect, connection lost, timeouts while
// sending) throw `transport_error`; cairn-cli maps them to exit status 2.
#pragma once

#include "../common/tls_client.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cairn::cli {

/// A failure of the TCP connection itself (not an error reply).
class transport_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Outcome of `line_client::read_line`.
enum class read_status : uint8_t {
  /// A complete line was read (without its '\n' and a trailing '\r').
  line,
  /// The server closed the connection.
  eof,
  /// No complete line arrived within the timeout.
  timeout,
};

class line_client {
public:
  // -- construction -----------------------------------------------------------

  /// Connects to `host:port`, waiting at most `connect_timeout`, and
  /// presents `token` if not empty (docs/protocol.md, "Authentication").
  /// Throws `transport_error` with a readable message when no address
  /// accepts, std::runtime_error when the node refuses the token.
  line_client(const std::string& host, uint16_t port,
              std::chrono::milliseconds connect_timeout,
              const apps::tls_client_options& tls = {},
              const std::string& token = {});

  ~line_client();

  line_client(const line_client&) = delete;
  line_client& operator=(const line_client&) = delete;

  // -- I/O ----------------------------------------------------------------------

  /// Writes all of `data`, blocking while the server applies backpressure.
  /// Throws `transport_error` if the connection fails or makes no progress
  /// for `stall_timeout`.
  void send_all(std::string_view data, std::chrono::milliseconds stall_timeout);

  /// Reads the next line into `out`. A negative timeout waits forever.
  /// Throws `transport_error` on a socket error.
  [[nodiscard]] read_status read_line(std::string& out,
                                      std::chrono::milliseconds timeout);

  /// Sends `line` plus '\n' and returns the next reply line. Throws
  /// `transport_error` on failure, timeout, or if the server closes first.
  [[nodiscard]] std::string request(std::string_view line,
                                    std::chrono::milliseconds timeout);

  // -- properties ---------------------------------------------------------------

  /// "host:port" as given on the command line, for messages.
  const std::string& peer() const noexcept {
    return peer_;
  }

private:
  int fd_ = -1;
  std::unique_ptr<apps::tls_session> tls_;  ///< null: plain TCP
  std::string peer_;
  std::string in_;       // received bytes not yet returned as lines
  size_t in_pos_ = 0;    // start of the unconsumed part of in_
  size_t scan_pos_ = 0;  // where the search for '\n' resumes
};

} // namespace cairn::cli
