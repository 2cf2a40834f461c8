// tls_options: TLS on a client-facing port (the NDJSON port, the influx port,
// the HTTP / WebSocket port), docs/operations.md "TLS".
//
// Pure values, no OpenSSL header: the servers build their OpenSSL context
// from them once, at bind(). Empty `certificate` = plain TCP. With
// `client_ca` set, every client must present a certificate that this CA
// signed (mutual TLS); without it clients are not asked for one.
#pragma once

#include <string>

namespace cairn::runtime {

struct tls_options {
  std::string certificate;  ///< PEM chain of the server; empty = TLS off
  std::string key;          ///< PEM private key (unencrypted)
  std::string client_ca;    ///< PEM CA; set = client certificates required
  /// The option prefix named in errors ("cairn.tcp.tls-").
  std::string option = "cairn.tcp.tls-";

  bool enabled() const noexcept { return !certificate.empty(); }
};

} // namespace cairn::runtime
