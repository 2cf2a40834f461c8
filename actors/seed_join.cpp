#include "actors/seed_join.hpp"

#include "actors/messages.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/remote_actor.hpp>
#include <caf/scoped_actor.hpp>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <stdexcept>
#include <thread>

namespace cairn::actors {

using nlohmann::json;

bool wants_seed_join(const runtime::node_config& cfg) {
  if (cfg.cluster_seeds.empty() || !cfg.cluster_nodes.empty())
    return false;
  std::error_code ec;
  return !cfg.storage_enabled
         || !std::filesystem::exists(cfg.storage_path + "/cluster-map.json",
                                     ec);
}

namespace {

struct answer {
  bool admitted = false;
  bool final = false;  ///< refused for good: do not ask again
  std::string text;    ///< the error, or the map's JSON
};

answer ask(caf::actor_system& sys, bool tls, const std::string& seed,
           const std::string& request) {
  auto colon = seed.rfind(':');
  auto host = seed.substr(0, colon);
  auto port = static_cast<uint16_t>(std::stoul(seed.substr(colon + 1)));
  auto node = tls ? caf::openssl::remote_actor(sys, host, port)
                  : sys.middleman().remote_actor(host, port);
  if (!node)
    return {false, false, "cannot connect: " + sys.render(node.error())};
  answer out;
  caf::scoped_actor self{sys};
  self->request(*node, std::chrono::seconds{30}, request_atom::value, request)
    .receive(
      [&](std::string& reply) {
        auto j = json::parse(reply, nullptr, false);
        if (!j.is_object()) {
          out.text = "the answer is not a JSON object";
        } else if (j.value("ok", false) && j.contains("map")
                   && j["map"].is_object()) {
          out.admitted = true;
          out.text = j["map"].dump();
        } else {
          // Protocol errors are {"error":{"code":C,"message":M}}; the
          // console's own ones {"error":"text"}.
          auto e = j.value("error", json{});
          auto code = e.is_object() ? e.value("code", std::string{})
                                    : std::string{};
          auto text = e.is_object()   ? e.value("message", e.dump())
                      : e.is_string() ? e.get<std::string>()
                                      : j.dump();
          out.text = (code.empty() ? "" : code + ": ") + text;
          out.final = code == "bad_request";
        }
      },
      [&](caf::error& err) { out.text = sys.render(err); });
  return out;
}

} // namespace

cqrs::partition_map join_through_seeds(const runtime::node_config& cfg,
                                       std::chrono::seconds patience) {
  caf::actor_system_config jcfg;
  register_message_types(jcfg);
  jcfg.set("scheduler.max-threads", 2);
  jcfg.load<caf::io::middleman>();
  bool tls = cfg.tls_enabled();
  if (tls) {
    jcfg.openssl_certificate = cfg.tls_certificate;
    jcfg.openssl_key = cfg.tls_key;
    jcfg.openssl_cafile = cfg.tls_ca_file;
    jcfg.load<caf::openssl::manager>();
  }
  caf::actor_system sys{jcfg};
  auto address = cfg.advertised_cluster_address();
  auto request = json{{"cmd", "sagas"},
                      {"request",
                       {{"op", "saga.join"},
                        {"node", cfg.member_name()},
                        {"address", address},
                        {"partitions", cfg.cluster_partitions > 0
                                         ? cfg.cluster_partitions
                                         : cfg.partitions}}}}
                   .dump();
  auto deadline = std::chrono::steady_clock::now() + patience;
  std::string last;
  for (;;) {
    for (auto& seed : cfg.cluster_seeds) {
      spdlog::info("joining the cluster through seed {} as {} at {}", seed,
                   cfg.member_name(), address);
      auto a = ask(sys, tls, seed, request);
      if (a.admitted) {
        std::string error;
        auto map = cqrs::partition_map_from_json(json::parse(a.text), &error);
        if (!map)
          throw std::runtime_error("seed " + seed + " answered the join with "
                                   "a map that does not decode: " + error);
        if (!map->index_of(cfg.member_name()))
          throw std::runtime_error("seed " + seed + " answered the join with "
                                   "a map that does not list "
                                   + cfg.member_name());
        spdlog::info("admitted by seed {}: partition map v{} of {} members",
                     seed, map->version(), map->nodes().size());
        return *map;
      }
      last = "seed " + seed + ": " + a.text;
      spdlog::warn("join through {} failed: {}", seed, a.text);
      if (a.final)
        throw std::runtime_error("option cairn.cluster.seeds: the cluster "
                                 "refused the join (" + last + ")");
    }
    if (std::chrono::steady_clock::now() >= deadline)
      throw std::runtime_error("option cairn.cluster.seeds: no seed admitted "
                               "this node within "
                               + std::to_string(patience.count())
                               + " s (" + last + ")");
    std::this_thread::sleep_for(std::chrono::seconds{1});
  }
}

} // namespace cairn::actors
