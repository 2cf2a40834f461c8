// stream_sink: messages a server pushes to one client without a request —
// the live subscriptions of docs/protocol.md ("Live subscriptions") on a
// WebSocket of /v1/live or on an NDJSON connection that subscribed.
//
// Two kinds of message; every waiting `send` message is written before any
// waiting update (so a subscription's snapshot precedes its updates), each
// kind in queueing order:
//   send(text)         a message that must arrive (replies, snapshots,
//                      errors); never dropped. A client that lets more than
//                      `max_backlog` of them pile up is closed (a slow
//                      consumer never costs unbounded memory).
//   update(key, text)  a message that may be replaced by a newer one of the
//                      same key (a subscription id) while it waits: a slow
//                      client sees fewer, newer updates. At most one queued
//                      update per key.
//   update(key, head, body)
//                      the same, as `head` followed by `body`, a shared
//                      immutable text: a live update fanned out to many
//                      clients is built once, each client adds only its own
//                      head (`{"id":..,"type":"update",`) and holds a
//                      reference to the body while it waits.
// The session that owns the connection pulls with `next` on its own strand
// after `wake` (a callback it installs) told it that something is queued:
// as one string, or as a `stream_message` (head and shared body apart, for
// a gathered write without a copy).
//
// Threading: send, update, close, closed and on_close may be called from any
// thread (a mutex guards the queue); next and mark_closed only by the owning
// session. `wake` and the on_close callback are called without the lock
// held, on the calling thread.
#pragma once

#include "runtime/auth/principal.hpp"

#include <cstdint>
#include <deque>
#include <memory>
#include <functional>
#include <mutex>
#include <string>
#include <utility>

namespace cairn::runtime {

/// A text shared read-only by the messages of many clients.
using shared_text = std::shared_ptr<const std::string>;

/// One queued message: `head` then, if set, `body`.
struct stream_message {
  std::string head;
  shared_text body;

  size_t size() const noexcept { return head.size() + (body ? body->size() : 0); }
  /// Head and body as one string.
  std::string text() const { return body ? head + *body : head; }
};

class stream_sink {
public:
  /// What update() did with a message.
  enum class offer : uint8_t {
    /// Queued (nothing of its key was waiting).
    queued,
    /// Replaced a waiting message of the same key (which is dropped).
    coalesced,
    /// The client is gone; dropped.
    closed,
  };

  /// `wake` is called when the first message is queued after the session
  /// had pulled everything (and on close); it should post a pull to the
  /// session's strand.
  stream_sink(uint64_t id, size_t max_backlog, std::function<void()> wake);

  stream_sink(const stream_sink&) = delete;
  stream_sink& operator=(const stream_sink&) = delete;

  // -- producers (any thread) -------------------------------------------------

  /// Queues a message that is never coalesced. Returns false if the client
  /// is gone, or if this overflowed the backlog (the client is then closed).
  bool send(std::string text);

  /// The same, as `head` + `*body` (body not copied; null: head alone).
  bool send(std::string head, shared_text body);

  /// Queues `text` as the newest update of `key`.
  offer update(const std::string& key, std::string text);

  /// Queues `head` + `*body` as the newest update of `key` (body not
  /// copied; null: head alone).
  offer update(const std::string& key, std::string head, shared_text body);

  /// Drops the waiting update of `key`, if any (an unsubscribed id).
  void forget(const std::string& key);

  /// Closes the connection at once (queued messages are dropped).
  /// Idempotent.
  void close();

  /// Closes the connection once what is queued now has been written
  /// (an error reply before a policy close). Idempotent.
  void close_after_queued();

  /// True once close_after_queued() was called.
  bool finishing() const;

  /// True once the connection closed (or close() was called).
  bool closed() const;

  /// Installs the callback run once when the connection closes (at once if
  /// it is closed already).
  void on_close(std::function<void()> f);

  /// A stable id of this client (unique per server).
  uint64_t id() const noexcept { return id_; }

  /// Who the client acts as (docs/protocol.md, "Authentication"): set from
  /// the upgrade's header or by the first message's `auth`; null before.
  std::shared_ptr<const auth::principal> principal() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return principal_;
  }
  void set_principal(std::shared_ptr<const auth::principal> who) {
    std::lock_guard<std::mutex> guard{mtx_};
    principal_ = std::move(who);
  }

  // -- the owning session -----------------------------------------------------

  /// Takes the next message; false if none is queued (the next producer
  /// wakes the session again).
  bool next(std::string& out);

  /// The same, head and shared body apart.
  bool next(stream_message& out);

  /// The connection is gone: drop what is queued, refuse more, run the
  /// on_close callback.
  void mark_closed();

  /// Messages queued now (both kinds).
  size_t backlog() const;

private:
  void fire_close();

  uint64_t id_;
  size_t max_backlog_;
  std::function<void()> wake_;
  mutable std::mutex mtx_;
  std::deque<stream_message> control_;
  struct keyed_update {
    std::string key;
    stream_message msg;
  };
  std::deque<keyed_update> updates_;
  bool pulling_ = false;  ///< the session was woken and has not drained
  bool closed_ = false;
  bool finishing_ = false;
  bool close_fired_ = false;
  std::function<void()> on_close_;
  std::shared_ptr<const auth::principal> principal_;
};

} // namespace cairn::runtime
