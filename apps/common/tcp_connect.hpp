// tcp_connect: how the protocol clients (cairn-cli, cairn-bench) open their
// connection to a node: resolve the host, try each address with a connect
// timeout, and hand back a blocking socket with TCP_NODELAY set.
//
// Plain POSIX sockets, no Asio: the clients are small synchronous programs.
// Any thread may call it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace cairn::apps {

/// Connects to `host`:`port`, giving each resolved address up to `timeout`.
/// Returns the connected socket (blocking, close-on-exec, TCP_NODELAY); the
/// caller owns it and closes it. Throws std::runtime_error with a readable
/// message ("cannot resolve ...", "cannot connect to host:port: ...", with a
/// hint when the connection was refused) if no address accepts.
[[nodiscard]] int tcp_connect(const std::string& host, uint16_t port,
                              std::chrono::milliseconds timeout);

class tls_session;

/// Presents `token` on a fresh NDJSON connection `fd` (docs/protocol.md,
/// "Authentication"), through `tls` when not null (after its handshake):
/// sends {"op":"auth","token":...} and reads its reply line, waiting at
/// most `timeout`. Throws std::runtime_error ("the node refused the token:
/// ...") if the node refuses it or does not answer. Nothing is sent when
/// `token` is empty.
void tcp_authenticate(int fd, tls_session* tls, const std::string& token,
                      std::chrono::milliseconds timeout);

/// The token the clients use: `option` (--token) if not empty, else the
/// environment variable CAIRN_TOKEN, else empty.
std::string client_token(const std::string& option);

} // namespace cairn::apps
