// connection_context: what the actor side sees of one client connection.
//
// The TCP server cuts the byte stream into chunks of complete lines and hands
// each chunk, with a shared_ptr to this context, to the processing side (the
// parser actors). The processing side answers each chunk exactly once with
// `complete(seq, text)`, from any thread; the server writes the texts in
// chunk order and resumes reading when the window has room (backpressure:
// an unanswered connection stops being read, so TCP slows the client).
//
// A connection may also carry a stream (runtime/stream_sink) for messages
// the node pushes without a request (live subscriptions on the NDJSON
// port, docs/protocol.md): `stream()` turns it on.
//
// Thread-safe: `complete`, `stream` and the counters may be used from any
// thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "runtime/auth/principal.hpp"
#include "runtime/stream_sink.hpp"

#include <mutex>

namespace cairn::runtime {

class connection_context {
public:
  using completion = std::function<void(uint64_t seq, std::string text)>;

  connection_context(uint64_t id, std::string peer, completion on_complete)
    : id_(id), peer_(std::move(peer)), on_complete_(std::move(on_complete)) {
  }

  uint64_t id() const noexcept { return id_; }
  const std::string& peer() const noexcept { return peer_; }

  /// Delivers the reply text of chunk `seq` (zero or more complete lines,
  /// each ending in '\n'). Must be called exactly once per chunk. Safe after
  /// the connection closed (the text is dropped).
  void complete(uint64_t seq, std::string text) {
    on_complete_(seq, std::move(text));
  }

  /// Installs the connection's stream (by the server, before the context is
  /// handed out). Without one, stream() returns null.
  void set_stream(std::shared_ptr<stream_sink> sink) {
    sink_ = std::move(sink);
  }

  /// The connection's stream, marking the connection as streaming (the
  /// server then never closes it as idle); null if it cannot stream.
  std::shared_ptr<stream_sink> stream() {
    if (sink_)
      streaming_.store(true, std::memory_order_release);
    return sink_;
  }

  /// The stream without marking it (the server's own use).
  std::shared_ptr<stream_sink> stream_if_open() const { return sink_; }

  /// True once stream() handed the stream out.
  bool streaming() const noexcept {
    return streaming_.load(std::memory_order_acquire);
  }

  /// Who the connection acts as (docs/protocol.md, "Authentication"):
  /// null until the processing side set one (the `auth` op, or the HTTP
  /// server's Bearer token).
  std::shared_ptr<const auth::principal> principal() const {
    std::lock_guard<std::mutex> guard{principal_mtx_};
    return principal_;
  }
  void set_principal(std::shared_ptr<const auth::principal> who) {
    std::lock_guard<std::mutex> guard{principal_mtx_};
    principal_ = std::move(who);
  }

  /// Asks the server to close the connection once the replies of the chunks
  /// completed so far are written (reads nothing more): an unauthenticated
  /// client. Set before completing the chunk.
  void request_close() noexcept {
    close_requested_.store(true, std::memory_order_release);
  }
  bool close_requested() const noexcept {
    return close_requested_.load(std::memory_order_acquire);
  }

  /// True for the HTTP API's contexts: their requests were counted against
  /// the rate limit by the HTTP side already (set before handing it out).
  bool charged_upstream = false;

  /// Fire-and-forget events accepted / rejected since the last flush. Only
  /// the processing side touches these.
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> rejected{0};

private:
  uint64_t id_;
  std::string peer_;
  completion on_complete_;
  std::shared_ptr<stream_sink> sink_;
  std::atomic<bool> streaming_{false};
  mutable std::mutex principal_mtx_;
  std::shared_ptr<const auth::principal> principal_;
  std::atomic<bool> close_requested_{false};
};

/// What the bytes of a chunk are (docs/integrations.md for the last two).
enum class chunk_format : uint8_t {
  /// NDJSON events and requests (docs/protocol.md).
  ndjson,
  /// Influx line protocol: events only, no requests. `precision` applies.
  influx,
  /// One Prometheus remote_write body (snappy block + protobuf WriteRequest),
  /// not lines.
  remote_write,
};

/// One chunk of complete lines from a connection.
struct chunk {
  std::shared_ptr<connection_context> conn;
  /// Per-connection sequence number, starting at 0, without gaps.
  uint64_t seq = 0;
  /// 1-based number of the first line of `data` on this connection.
  uint64_t first_line = 1;
  /// Complete lines, each ending in '\n' (a final '\r' before '\n' is part
  /// of the line and is ignored by the parser as whitespace).
  std::string data;
  /// True if `data` contains the bytes "op" and so may hold a request. The
  /// server dispatches such a chunk only when no other chunk of the
  /// connection is in flight, and dispatches nothing else until it completes
  /// (a barrier), so flush and queries see everything sent before them.
  bool barrier = false;
  chunk_format format = chunk_format::ndjson;
  /// For `influx`: the timestamp precision, a cqrs::influx_precision value
  /// (0 = ns).
  uint8_t precision = 0;
  /// False if the client reads no replies (line protocol over TCP): the
  /// processing side then logs problems rate-limited, counts them and
  /// completes the chunk with an empty text.
  bool replies = true;
};

} // namespace cairn::runtime
