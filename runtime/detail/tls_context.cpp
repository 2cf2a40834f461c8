#include "runtime/detail/tls_context.hpp"

#include <openssl/ssl.h>

#include <stdexcept>
#include <string>

namespace cairn::runtime::detail {

namespace ssl = boost::asio::ssl;
using error_code = boost::system::error_code;

std::shared_ptr<ssl::context> make_server_tls_context(const tls_options& opts) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2
                   | ssl::context::no_sslv3 | ssl::context::no_tlsv1
                   | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  auto load = [&opts](const char* what, const std::string& path, auto&& f) {
    error_code ec;
    f(ec);
    if (ec)
      throw std::runtime_error(opts.option + what + ": cannot load '" + path
                               + "': " + ec.message());
  };
  load("certificate", opts.certificate, [&](error_code& ec) {
    ctx->use_certificate_chain_file(opts.certificate, ec);
  });
  if (opts.key.empty())
    throw std::runtime_error(opts.option + "key: required with " + opts.option
                             + "certificate");
  load("key", opts.key, [&](error_code& ec) {
    ctx->use_private_key_file(opts.key, ssl::context::pem, ec);
  });
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
    throw std::runtime_error(opts.option + "key: '" + opts.key
                             + "' does not match " + opts.option
                             + "certificate '" + opts.certificate + "'");
  if (!opts.client_ca.empty()) {
    load("client-ca", opts.client_ca, [&](error_code& ec) {
      ctx->load_verify_file(opts.client_ca, ec);
    });
    // Tell clients which CA we accept (so that one with several
    // certificates picks the right one).
    if (auto* names = SSL_load_client_CA_file(opts.client_ca.c_str()))
      SSL_CTX_set_client_CA_list(ctx->native_handle(), names);
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  } else {
    ctx->set_verify_mode(ssl::verify_none);
  }
  return ctx;
}

} // namespace cairn::runtime::detail
