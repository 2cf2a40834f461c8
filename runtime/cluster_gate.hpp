// cluster_gate: the public side of a node's cluster port (docs/cluster.md,
// "Cluster gate").
//
// CAF publishes the node actor only on an internal loopback port; the gate
// owns the configured cluster port and stands between every client (peer
// nodes, cairn-console) and CAF. Per accepted connection, on its own strand:
//  1. TLS mode: the TLS server handshake (mutual TLS: the client certificate
//     must verify against the CA file; same certificate and key as the node);
//  2. the client's first BASP frame, which must be a client handshake no
//     larger than 64 KiB, read completely;
//  3. only then a connection to the internal CAF port, and bytes relayed both
//     ways. Every frame the client sends is checked by basp_frame_checker:
//     an unknown operation, a malformed header or a payload above
//     `max_frame` closes this connection before the header reaches CAF.
// Steps 1 and 2 must finish within `handshake_timeout`. A connection that
// fails any step is closed alone: CAF never sees it, established relays are
// untouched. In TLS mode OpenSSL runs on the gate's thread with Asio's error
// handling, not on CAF's multiplexer thread.
//
// With `tls_upstream` the same machinery is a node's **outbound tunnel** to
// one TLS peer: CAF's peer link dials the tunnel's loopback port in plain
// BASP, the tunnel does the TLS client side towards the peer's gate. So
// OpenSSL never runs on CAF's multiplexer thread, where CAF 0.17 leaves a
// failed connection's errors in the thread's error queue and the next read
// of every other TLS connection fails.
//
// Threading: start/stop/port/stats from any thread but an I/O thread; the
// gate runs one I/O thread of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace cairn::runtime {

struct cluster_gate_options {
  std::string host = "127.0.0.1"; ///< public address (cairn.cluster.host)
  uint16_t port = 0;              ///< public port (0 = ephemeral)
  std::string upstream_host = "127.0.0.1"; ///< where CAF listens
  uint16_t upstream_port = 0;
  uint32_t max_frame = 64u << 20; ///< largest BASP payload relayed
  std::chrono::milliseconds handshake_timeout{5000};
  /// Connections still in steps 1-2 beyond this are closed at once.
  size_t max_pending = 256;
  /// All three set: mutual TLS; all empty: plain TCP.
  std::string tls_certificate;
  std::string tls_key;
  std::string tls_ca_file;
  /// With the TLS files: plain toward clients, mutual TLS (client side)
  /// toward the upstream. A node's outbound tunnel to a TLS peer: CAF dials
  /// it on loopback, the tunnel dials the peer's cluster gate.
  bool tls_upstream = false;
  /// Prefix of log lines.
  std::string name = "cluster gate";
};

struct cluster_gate_stats {
  uint64_t accepted = 0;           ///< connections accepted
  uint64_t relayed = 0;            ///< connections that reached CAF
  uint64_t open = 0;               ///< connections open now
  uint64_t tls_failed = 0;         ///< TLS handshakes that failed
  uint64_t handshake_timeouts = 0; ///< closed by the handshake timeout
  uint64_t frames_rejected = 0;    ///< closed by basp_frame_checker
  uint64_t refused = 0;            ///< closed at once (max_pending)
};

class cluster_gate {
public:
  explicit cluster_gate(cluster_gate_options opts);
  ~cluster_gate();
  cluster_gate(const cluster_gate&) = delete;
  cluster_gate& operator=(const cluster_gate&) = delete;

  /// Loads the TLS files (TLS mode), binds, listens and starts the I/O
  /// thread. Throws std::runtime_error if a file cannot be loaded or the
  /// address cannot be bound.
  void start();

  /// The bound public port. Valid after start().
  uint16_t port() const noexcept;

  /// Stops accepting, closes every connection and joins the I/O thread.
  /// Idempotent.
  void stop();

  cluster_gate_stats stats() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace cairn::runtime
