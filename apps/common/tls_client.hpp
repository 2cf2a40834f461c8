// tls_client: the client side of TLS for the protocol clients (cairn-cli,
// cairn-bench) on a socket that tcp_connect opened (docs/operations.md,
// "TLS").
//
// OpenSSL directly, no Asio, like the rest of these small synchronous
// programs. The server certificate is checked against `ca_file` (the
// system's store if empty) and against the host name or IP address the
// client connected to (`server_name` overrides it, e.g. when connecting by
// IP to a certificate that names a host); `insecure` skips both checks.
// A client certificate is presented when `certificate` and `key` are set.
//
// Threading contract: one thread may call write_some while another calls
// read_some (the clients' writer and reader threads). OpenSSL does not allow
// that on one SSL object, so every OpenSSL call holds a mutex; the waiting
// for the socket (poll) happens outside it. Two concurrent writers or two
// concurrent readers are not allowed.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

namespace cairn::apps {

struct tls_client_options {
  bool enabled = false;
  std::string ca_file;      ///< PEM CA of the server; empty = system store
  std::string certificate;  ///< client certificate (PEM), optional
  std::string key;          ///< its private key (PEM)
  std::string server_name;  ///< name checked and sent as SNI; empty = host
  bool insecure = false;    ///< no certificate or name check at all

  /// Reads a client flag into these options: --tls, --tls-ca=PEM,
  /// --tls-cert=PEM, --tls-key=PEM, --tls-server-name=NAME,
  /// --tls-insecure (every one but --tls implies --tls). `name` is the
  /// flag without its value, `value` its value. False if `name` is none of
  /// these.
  bool parse_flag(const std::string& name, const std::string& value);

  /// True if `name` takes a value (all but --tls and --tls-insecure).
  static bool takes_value(const std::string& name);
};

class tls_session {
public:
  /// Runs the client handshake on the connected socket `fd` (which it sets
  /// non-blocking; the caller still owns and closes it) within `timeout`.
  /// Throws std::runtime_error with a readable message ("TLS handshake with
  /// H:P failed: certificate verify failed (...)").
  tls_session(int fd, const std::string& host, uint16_t port,
              const tls_client_options& opts,
              std::chrono::milliseconds timeout);
  ~tls_session();
  tls_session(const tls_session&) = delete;
  tls_session& operator=(const tls_session&) = delete;

  /// Writes some of `data` (at least one byte) and returns how many; 0 if
  /// nothing could be written within `timeout`. Throws std::runtime_error
  /// when the connection fails.
  size_t write_some(const char* data, size_t n,
                    std::chrono::milliseconds timeout);

  /// Reads up to `n` bytes: returns how many (> 0), 0 at the end of the
  /// stream, -1 if nothing arrived within `timeout` (negative = wait for
  /// ever). Throws std::runtime_error when the connection fails.
  std::ptrdiff_t read_some(char* buf, size_t n,
                           std::chrono::milliseconds timeout);

  /// Sends close_notify (best effort, does not wait for the server's).
  void close() noexcept;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace cairn::apps
