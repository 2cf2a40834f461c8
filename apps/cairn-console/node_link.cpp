#include "node_link.hpp"

#include "actors/messages.hpp"

#include <caf/actor_cast.hpp>
#include <caf/atom.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/response_promise.hpp>
#include <caf/sec.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>

#include <map>
#include <set>
#include <thread>

namespace cairn::console {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

using retry_atom = caf::atom_constant<caf::atom("lretry")>;

constexpr auto min_backoff = 100ms;
constexpr auto max_backoff = 2000ms;

/// A short readable form of a CAF error ("cannot connect to node", ...).
std::string describe(const caf::error& err) {
  if (err.category() == caf::atom("system")) {
    auto text = to_string(static_cast<caf::sec>(err.code()));
    for (auto& c : text)
      if (c == '_')
        c = ' ';
    return text;
  }
  return to_string(err);
}

std::string transport_reply(transport t, const std::string& message) {
  return json{{"ok", false},
              {"error", message},
              {"transport", to_string(t)}}
    .dump();
}

struct link_state {
  std::string host;
  uint16_t port = 0;
  bool tls = false;
  caf::actor node;
  bool connecting = false;
  bool retry_scheduled = false;
  uint64_t generation = 0;
  std::string last_error;
  std::chrono::milliseconds backoff = min_backoff;
  uint64_t next_id = 0;
  std::map<uint64_t, caf::response_promise> pending;
  static inline const char* name = "cairn.console.link";
};

using link_pointer = caf::stateful_actor<link_state>*;

void try_connect(link_pointer self);

void schedule_retry(link_pointer self) {
  auto& st = self->state;
  if (st.retry_scheduled)
    return;
  st.retry_scheduled = true;
  self->delayed_send(self, st.backoff, retry_atom::value);
  st.backoff = std::min(st.backoff * 2, max_backoff);
}

void try_connect(link_pointer self) {
  auto& st = self->state;
  if (st.connecting || st.node)
    return;
  st.connecting = true;
  auto& sys = self->system();
  auto mm = st.tls ? sys.openssl_manager().actor_handle()
                   : sys.middleman().actor_handle();
  self->request(mm, 5s, caf::connect_atom::value, st.host, st.port)
    .then(
      [self](const caf::node_id&, caf::strong_actor_ptr& ptr,
             const std::set<std::string>&) {
        auto& st = self->state;
        st.connecting = false;
        if (!ptr) {
          st.last_error = "no actor published on " + st.host + ":"
                          + std::to_string(st.port);
          schedule_retry(self);
          return;
        }
        st.node = caf::actor_cast<caf::actor>(std::move(ptr));
        self->monitor(st.node);
        ++st.generation;
        st.backoff = min_backoff;
        st.last_error.clear();
      },
      [self](caf::error& err) {
        auto& st = self->state;
        st.connecting = false;
        st.last_error = describe(err);
        schedule_retry(self);
      });
}

caf::behavior link_impl(link_pointer self, std::string host, uint16_t port,
                        bool tls) {
  auto& st = self->state;
  st.host = std::move(host);
  st.port = port;
  st.tls = tls;
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source != st.node.address())
      return;
    st.node = nullptr;
    st.last_error = "connection lost";
    if (dm.reason && dm.reason != caf::exit_reason::normal)
      st.last_error += " (" + describe(dm.reason) + ")";
    for (auto& [id, rp] : st.pending)
      rp.deliver(transport_reply(transport::lost, st.last_error));
    st.pending.clear();
    st.backoff = min_backoff;
    schedule_retry(self);
  });
  try_connect(self);
  return {
    [self](actors::request_atom, std::string& text,
           uint32_t timeout_ms) -> caf::result<std::string> {
      auto& st = self->state;
      if (!st.node) {
        try_connect(self);
        return transport_reply(transport::not_connected,
                               "not connected to " + st.host + ":"
                                 + std::to_string(st.port)
                                 + (st.last_error.empty()
                                      ? std::string{}
                                      : ": " + st.last_error));
      }
      auto id = st.next_id++;
      auto rp = self->make_response_promise();
      st.pending.emplace(id, rp);
      self
        ->request(st.node, std::chrono::milliseconds{timeout_ms},
                  actors::request_atom::value, std::move(text))
        .then(
          [self, id](std::string& reply) {
            auto& st = self->state;
            if (auto i = st.pending.find(id); i != st.pending.end()) {
              i->second.deliver(std::move(reply));
              st.pending.erase(i);
            }
          },
          [self, id](caf::error& err) {
            auto& st = self->state;
            auto i = st.pending.find(id);
            if (i == st.pending.end())
              return;
            auto t = err == caf::sec::request_timeout ? transport::timeout
                                                      : transport::lost;
            i->second.deliver(transport_reply(t, describe(err)));
            st.pending.erase(i);
          });
      return caf::delegated<std::string>{};
    },
    [self](caf::get_atom) {
      auto& st = self->state;
      return caf::make_message(static_cast<bool>(st.node), st.generation,
                               st.last_error);
    },
    [self](retry_atom) {
      self->state.retry_scheduled = false;
      try_connect(self);
    },
  };
}

} // namespace

const char* to_string(transport t) noexcept {
  switch (t) {
    case transport::none:
      return "none";
    case transport::not_connected:
      return "not_connected";
    case transport::lost:
      return "lost";
    case transport::timeout:
      return "timeout";
  }
  return "?";
}

node_link::node_link(caf::actor_system& sys, std::string host, uint16_t port,
                     bool tls)
  : sys_(sys),
    address_(host + ":" + std::to_string(port)),
    actor_(sys.spawn(link_impl, std::move(host), port, tls)),
    self_(sys) {
  // nop
}

node_link::~node_link() {
  caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown);
}

call_result node_link::call(const json& request,
                            std::chrono::milliseconds timeout) {
  call_result out;
  self_
    ->request(actor_, timeout + 2s, actors::request_atom::value,
              request.dump(), static_cast<uint32_t>(timeout.count()))
    .receive(
      [&](std::string& text) {
        out.reply = json::parse(text, nullptr, false);
        if (out.reply.is_discarded() || !out.reply.is_object()) {
          out.reply = {{"ok", false},
                       {"error", "malformed reply from the node: " + text}};
          return;
        }
        auto t = out.reply.find("transport");
        if (t != out.reply.end() && t->is_string()) {
          auto s = t->get<std::string>();
          out.failure = s == "not_connected" ? transport::not_connected
                        : s == "lost"        ? transport::lost
                                             : transport::timeout;
        }
      },
      [&](caf::error& err) {
        out.failure = transport::timeout;
        out.reply = {{"ok", false}, {"error", describe(err)}};
      });
  return out;
}

link_status node_link::status() {
  link_status out;
  self_->request(actor_, 2s, caf::get_atom::value)
    .receive(
      [&](bool connected, uint64_t generation, std::string& error) {
        out.connected = connected;
        out.generation = generation;
        out.last_error = std::move(error);
      },
      [&](caf::error& err) { out.last_error = describe(err); });
  return out;
}

} // namespace cairn::console
