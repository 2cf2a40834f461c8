// The cluster gate in plain mode against a fake upstream (a listening socket
// standing in for CAF's internal port): what reaches the upstream, what is
// closed, and that connections are independent.
#include "runtime/basp_frame_checker.hpp"
#include "runtime/cluster_gate.hpp"

#include "runtime/tcp_client.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>

using namespace cairn::runtime;
using cairn::test::tcp_client;
using namespace std::chrono_literals;

namespace {

/// A listening loopback socket; accept() hands out blocking peers.
class fake_upstream {
public:
  fake_upstream() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(fd_, 16);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~fake_upstream() { ::close(fd_); }

  uint16_t port() const { return port_; }

  /// The next connection within `timeout`, or -1.
  int accept(std::chrono::milliseconds timeout = 3s) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0)
      return -1;
    return ::accept(fd_, nullptr, nullptr);
  }

private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

/// Reads exactly `n` bytes from `fd` (fewer on EOF or timeout).
std::string read_n(int fd, size_t n, std::chrono::milliseconds timeout = 3s) {
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out.size() < n) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
      break;
    char buf[65536];
    auto r = ::recv(fd, buf, std::min(sizeof(buf), n - out.size()), 0);
    if (r <= 0)
      break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

/// True if `fd` sees EOF (or a reset) within `timeout`.
bool sees_eof(int fd, std::chrono::milliseconds timeout = 3s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
      return false;
    char buf[4096];
    if (::recv(fd, buf, sizeof(buf), 0) <= 0)
      return true;
  }
}

std::string bytes(const basp_header& hdr, size_t payload = 0) {
  auto head = encode_basp_header(hdr);
  std::string out(head.begin(), head.end());
  out.append(payload, 'p');
  return out;
}

std::string handshake_frame() {
  basp_header h;
  h.operation = basp_op::client_handshake;
  h.payload_len = 20;
  return bytes(h, 20);
}

std::string heartbeat_frame() {
  basp_header h;
  h.operation = basp_op::heartbeat;
  return bytes(h);
}

struct gate_fixture {
  fake_upstream upstream;
  std::unique_ptr<cluster_gate> gate;

  gate_fixture() {
    cluster_gate_options opts;
    opts.upstream_port = upstream.port();
    opts.max_frame = 1 << 20;
    opts.handshake_timeout = 300ms;
    gate = std::make_unique<cluster_gate>(opts);
    gate->start();
  }
};

} // namespace

TEST_SUITE("runtime.cluster_gate") {
  TEST_CASE_FIXTURE(gate_fixture, "relays a valid stream both ways") {
    tcp_client c{gate->port()};
    auto hs = handshake_frame();
    c.send(hs + heartbeat_frame());
    int up = upstream.accept();
    REQUIRE(up >= 0);
    CHECK(read_n(up, hs.size() + 32) == hs + heartbeat_frame());
    std::string reply = "server bytes";
    REQUIRE(::send(up, reply.data(), reply.size(), 0) == ssize_t(reply.size()));
    CHECK(c.read_bytes(reply.size()) == reply);
    // The client closing closes the upstream side.
    ::shutdown(c.fd(), SHUT_RDWR);
    CHECK(sees_eof(up));
    ::close(up);
    CHECK(gate->stats().relayed == 1);
  }

  TEST_CASE_FIXTURE(gate_fixture, "an oversized frame closes its connection only") {
    tcp_client good{gate->port()};
    good.send(handshake_frame());
    int good_up = upstream.accept();
    REQUIRE(good_up >= 0);
    REQUIRE(read_n(good_up, 52).size() == 52);

    tcp_client bad{gate->port()};
    bad.send(handshake_frame());
    int bad_up = upstream.accept();
    REQUIRE(bad_up >= 0);
    REQUIRE(read_n(bad_up, 52).size() == 52);
    basp_header huge;
    huge.operation = basp_op::direct_message;
    huge.payload_len = 0xFFFFFFF0u;
    huge.dest_actor = 1;
    bad.send(bytes(huge));
    CHECK(bad.wait_eof(2s));
    // The header never reached the upstream: it sees EOF, not 32 bytes.
    CHECK(read_n(bad_up, 32, 2s).empty());
    ::close(bad_up);
    CHECK(gate->stats().frames_rejected == 1);

    // The other connection still relays in both directions.
    good.send(heartbeat_frame());
    CHECK(read_n(good_up, 32) == heartbeat_frame());
    REQUIRE(::send(good_up, "ok", 2, 0) == 2);
    CHECK(good.read_bytes(2) == "ok");
    ::close(good_up);
  }

  TEST_CASE_FIXTURE(gate_fixture, "garbage and silence never reach the upstream") {
    tcp_client garbage{gate->port()};
    garbage.send("GET / HTTP/1.1\r\nHost: cairn.example\r\n\r\n");
    CHECK(garbage.wait_eof(200ms));  // at once, not after the timeout

    tcp_client silent{gate->port()};
    tcp_client partial{gate->port()};
    partial.send(handshake_frame().substr(0, 40)); // header, half a payload
    auto t0 = std::chrono::steady_clock::now();
    CHECK(silent.wait_eof(3s));
    CHECK(partial.wait_eof(3s));
    auto waited = std::chrono::steady_clock::now() - t0;
    CHECK(waited >= 200ms);  // the handshake timeout, not at once
    CHECK(upstream.accept(200ms) == -1);
    auto st = gate->stats();
    CHECK(st.frames_rejected == 1);
    CHECK(st.handshake_timeouts == 2);
    CHECK(st.relayed == 0);

    // A well-behaved client after all that is relayed.
    tcp_client c{gate->port()};
    c.send(handshake_frame());
    int up = upstream.accept();
    REQUIRE(up >= 0);
    CHECK(read_n(up, 52).size() == 52);
    ::close(up);
    CHECK(c.wait_eof(2s));  // the upstream closing closes the client
  }

  TEST_CASE("stop closes relayed connections") {
    fake_upstream upstream;
    cluster_gate_options opts;
    opts.upstream_port = upstream.port();
    cluster_gate gate{opts};
    gate.start();
    tcp_client c{gate.port()};
    c.send(handshake_frame());
    int up = upstream.accept();
    REQUIRE(up >= 0);
    gate.stop();
    CHECK(c.wait_eof(2s));
    CHECK(sees_eof(up));
    ::close(up);
    gate.stop(); // idempotent
  }
}
