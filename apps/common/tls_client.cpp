#include "tls_client.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <stdexcept>

namespace cairn::apps {

namespace {

using clock_type = std::chrono::steady_clock;

/// The last OpenSSL error as text (and clears the queue).
std::string openssl_error() {
  std::string out;
  while (auto e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty())
      out += "; ";
    out += buf;
  }
  return out.empty() ? std::string{std::strerror(errno)} : out;
}

/// Waits until `fd` is readable (`events` = POLLIN) or writable, at most
/// until `deadline` (time_point::max(): for ever) and at most 100 ms at a
/// time, so that a thread waiting for the other direction's progress looks
/// again soon. False once the deadline passed.
bool wait_for(int fd, short events, clock_type::time_point deadline) {
  auto now = clock_type::now();
  if (now >= deadline)
    return false;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline
                                                                    - now);
  pollfd pfd{fd, events, 0};
  ::poll(&pfd, 1, static_cast<int>(std::min<long long>(left.count(), 100)));
  return true;
}

clock_type::time_point deadline_of(std::chrono::milliseconds timeout) {
  return timeout.count() < 0 ? clock_type::time_point::max()
                             : clock_type::now() + timeout;
}

} // namespace

// -- options --------------------------------------------------------------------

bool tls_client_options::parse_flag(const std::string& name,
                                    const std::string& value) {
  if (name == "--tls")
    ;
  else if (name == "--tls-ca")
    ca_file = value;
  else if (name == "--tls-cert")
    certificate = value;
  else if (name == "--tls-key")
    key = value;
  else if (name == "--tls-server-name")
    server_name = value;
  else if (name == "--tls-insecure")
    insecure = true;
  else
    return false;
  enabled = true;
  return true;
}

bool tls_client_options::takes_value(const std::string& name) {
  return name == "--tls-ca" || name == "--tls-cert" || name == "--tls-key"
         || name == "--tls-server-name";
}


// -- session --------------------------------------------------------------------

struct tls_session::impl {
  int fd = -1;
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  std::mutex mtx;  ///< every OpenSSL call on `ssl`
  std::string peer;

  ~impl() {
    if (ssl != nullptr)
      SSL_free(ssl);
    if (ctx != nullptr)
      SSL_CTX_free(ctx);
  }

  [[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error("TLS connection to " + peer + " " + what);
  }
};

tls_session::tls_session(int fd, const std::string& host, uint16_t port,
                         const tls_client_options& opts,
                         std::chrono::milliseconds timeout)
  : impl_(std::make_unique<impl>()) {
  auto& s = *impl_;
  s.fd = fd;
  s.peer = host + ":" + std::to_string(port);
  s.ctx = SSL_CTX_new(TLS_client_method());
  if (s.ctx == nullptr)
    s.fail("failed: " + openssl_error());
  SSL_CTX_set_min_proto_version(s.ctx, TLS1_2_VERSION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
  // A server closing without close_notify ends the stream like a TCP FIN.
  SSL_CTX_set_options(s.ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
  auto load = [&](const char* flag, const std::string& path, int ok) {
    if (ok != 1)
      throw std::runtime_error(std::string{flag} + ": cannot load '" + path
                               + "': " + openssl_error());
  };
  if (!opts.insecure) {
    if (opts.ca_file.empty())
      SSL_CTX_set_default_verify_paths(s.ctx);
    else
      load("--tls-ca", opts.ca_file,
           SSL_CTX_load_verify_locations(s.ctx, opts.ca_file.c_str(), nullptr));
    SSL_CTX_set_verify(s.ctx, SSL_VERIFY_PEER, nullptr);
  }
  if (!opts.certificate.empty() || !opts.key.empty()) {
    if (opts.certificate.empty() || opts.key.empty())
      throw std::runtime_error("--tls-cert and --tls-key go together");
    load("--tls-cert", opts.certificate,
         SSL_CTX_use_certificate_chain_file(s.ctx, opts.certificate.c_str()));
    load("--tls-key", opts.key,
         SSL_CTX_use_PrivateKey_file(s.ctx, opts.key.c_str(), SSL_FILETYPE_PEM));
  }
  s.ssl = SSL_new(s.ctx);
  if (s.ssl == nullptr)
    s.fail("failed: " + openssl_error());
  // The name to check: an IP address is checked as one (and sent without
  // SNI, which carries host names only).
  auto name = opts.server_name.empty() ? host : opts.server_name;
  unsigned char addr[16];
  bool is_ip = inet_pton(AF_INET, name.c_str(), addr) == 1
               || inet_pton(AF_INET6, name.c_str(), addr) == 1;
  if (!is_ip)
    SSL_set_tlsext_host_name(s.ssl, name.c_str());
  if (!opts.insecure) {
    auto* param = SSL_get0_param(s.ssl);
    if (is_ip)
      X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
    else
      X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
  SSL_set_fd(s.ssl, fd);
  auto deadline = deadline_of(timeout);
  for (;;) {
    int rc = SSL_connect(s.ssl);
    if (rc == 1)
      return;
    int err = SSL_get_error(s.ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait_for(fd, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                    deadline))
        s.fail("failed: no TLS handshake within "
               + std::to_string(timeout.count()) + " ms");
      continue;
    }
    auto verify = SSL_get_verify_result(s.ssl);
    std::string why = openssl_error();
    if (verify != X509_V_OK)
      why += std::string{" ("} + X509_verify_cert_error_string(verify) + ")";
    else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN)
      why = "the server closed the connection (is the port TLS? does it "
            "require a client certificate: --tls-cert/--tls-key?)";
    s.fail("failed in the handshake: " + why);
  }
}

tls_session::~tls_session() = default;

size_t tls_session::write_some(const char* data, size_t n,
                               std::chrono::milliseconds timeout) {
  auto& s = *impl_;
  auto deadline = deadline_of(timeout);
  for (;;) {
    int rc;
    int err;
    {
      std::lock_guard<std::mutex> guard{s.mtx};
      rc = SSL_write(s.ssl, data, static_cast<int>(std::min<size_t>(n, 1 << 30)));
      err = rc > 0 ? SSL_ERROR_NONE : SSL_get_error(s.ssl, rc);
    }
    if (rc > 0)
      return static_cast<size_t>(rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait_for(s.fd, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                    deadline))
        return 0;
      continue;
    }
    s.fail("lost while sending: " + openssl_error());
  }
}

std::ptrdiff_t tls_session::read_some(char* buf, size_t n,
                                      std::chrono::milliseconds timeout) {
  auto& s = *impl_;
  auto deadline = deadline_of(timeout);
  for (;;) {
    int rc;
    int err;
    {
      std::lock_guard<std::mutex> guard{s.mtx};
      rc = SSL_read(s.ssl, buf, static_cast<int>(std::min<size_t>(n, 1 << 30)));
      err = rc > 0 ? SSL_ERROR_NONE : SSL_get_error(s.ssl, rc);
    }
    if (rc > 0)
      return rc;
    if (err == SSL_ERROR_ZERO_RETURN)
      return 0;
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait_for(s.fd, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                    deadline))
        return -1;
      continue;
    }
    if (err == SSL_ERROR_SYSCALL && (errno == 0 || errno == ECONNRESET)) {
      ERR_clear_error();
      return 0;  // closed without close_notify
    }
    s.fail("lost while reading: " + openssl_error());
  }
}

void tls_session::close() noexcept {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  if (impl_->ssl != nullptr)
    SSL_shutdown(impl_->ssl);
}

} // namespace cairn::apps
