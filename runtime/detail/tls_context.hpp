// tls_context: the OpenSSL server context of a client-facing port, built
// once from tls_options (runtime/tls_options.hpp) when the server binds.
//
// TLS 1.2 or newer; the certificate chain and key must load and match; with
// a client CA the peer must present a certificate it signed
// (verify_peer | verify_fail_if_no_peer_cert). No host name check on client
// certificates: the CA is the trust boundary.
//
// Threading: build before the I/O threads start; the context is then only
// read (OpenSSL contexts are safe to share between sessions).
#pragma once

// Boost 1.74 asio/awaitable.hpp uses std::exchange without <utility> in C++20.
#include <utility>

#include "runtime/tls_options.hpp"

#include <boost/asio/ssl/context.hpp>

#include <memory>

namespace cairn::runtime::detail {

/// The server context for `opts` (which must be enabled()). Throws
/// std::runtime_error ("<option>certificate: cannot load '<path>': <why>")
/// naming the option whose file is missing or unusable.
[[nodiscard]] std::shared_ptr<boost::asio::ssl::context>
make_server_tls_context(const tls_options& opts);

} // namespace cairn::runtime::detail
