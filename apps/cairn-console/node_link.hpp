// node_link: cairn-console's connection to one node's actor, with reconnect.
//
// A local event-based actor owns the connection: it connects asynchronously
// through the middleman (or the OpenSSL manager for TLS), monitors the
// remote node actor, and on a down message or a failed connect retries with
// exponential backoff (100 ms doubling to 2 s). Requests from the console's
// main thread go through it, so a request to a node that died fails at once
// ("connection lost") instead of waiting for its timeout (CAF drops messages
// to a dead proxy silently).
//
// `node_link` is the blocking facade the main thread uses (never call it from
// an actor): `call` sends one console request and waits for the reply.
#pragma once

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

namespace cairn::console {

/// Why a call did not produce a reply from the node.
enum class transport : uint8_t {
  /// The node replied (the reply may still say "ok": false).
  none,
  /// There is no connection; the request was not sent.
  not_connected,
  /// The connection broke while the request was in flight.
  lost,
  /// No reply within the timeout.
  timeout,
};

/// The outcome of one call.
struct call_result {
  transport failure = transport::none;
  /// The reply object (or {"ok":false,"error":...} describing the failure).
  nlohmann::json reply;
};

/// Connection state as seen by the link actor.
struct link_status {
  bool connected = false;
  /// Increases with every successful (re)connect.
  uint64_t generation = 0;
  /// The last connect or connection error (empty if none).
  std::string last_error;
};

class node_link {
public:
  /// Spawns the link actor, which starts connecting to host:port at once.
  node_link(caf::actor_system& sys, std::string host, uint16_t port, bool tls);
  ~node_link();

  node_link(const node_link&) = delete;
  node_link& operator=(const node_link&) = delete;

  /// Sends `request` (an object with "cmd") and waits up to `timeout`.
  call_result call(const nlohmann::json& request,
                   std::chrono::milliseconds timeout);

  /// The current connection state.
  link_status status();

  /// Waits until connected or `timeout` passes, polling `interrupted` every
  /// 50 ms (returning early when it returns true). Returns the status.
  template <class Interrupted>
  link_status wait_connected(std::chrono::milliseconds timeout,
                             Interrupted interrupted) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto st = status();
      if (st.connected || std::chrono::steady_clock::now() >= deadline
          || interrupted())
        return st;
      std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
  }

  const std::string& address() const noexcept { return address_; }

private:
  caf::actor_system& sys_;
  std::string address_;
  caf::actor actor_;
  caf::scoped_actor self_;
};

/// A readable text for `t`.
const char* to_string(transport t) noexcept;

} // namespace cairn::console
