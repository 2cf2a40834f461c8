#include "alerts/webhook_payload.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace cairn::alerts {

using nlohmann::json;

std::string rfc3339(millis t) {
  if (t == 0)
    return "0001-01-01T00:00:00Z";
  auto secs = static_cast<std::time_t>(t / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(t % 1000));
  return buf;
}

std::string webhook_body(const notice& n, const std::string& receiver_name,
                         const std::string& external_url) {
  json labels = n.labels;
  json annotations = n.annotations;
  json group_labels = json::object();
  group_labels["alertname"] = n.rule;
  json alert{{"status", n.status},
             {"labels", labels},
             {"annotations", annotations},
             {"startsAt", rfc3339(n.starts_at)},
             {"endsAt", rfc3339(n.ends_at)},
             {"generatorURL", external_url},
             {"fingerprint", n.key.substr(0, 16)},
             {"value", n.value}};
  json body{{"version", "4"},
            {"groupKey", "{}:{alertname=\"" + n.rule + "\"}"
                           + (n.group.empty() ? "" : "{" + n.group + "}")},
            {"truncatedAlerts", 0},
            {"status", n.status},
            {"receiver", receiver_name},
            {"groupLabels", group_labels},
            {"commonLabels", labels},
            {"commonAnnotations", annotations},
            {"externalURL", external_url},
            {"alerts", json::array({alert})},
            {"idempotencyKey", n.key}};
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string hmac_signature(const std::string& secret, const std::string& body) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), md,
       &len);
  std::string out = "sha256=";
  char hex[3];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(hex, sizeof hex, "%02x", md[i]);
    out += hex;
  }
  return out;
}

millis backoff_ceiling(const backoff_policy& p, uint32_t n) {
  double c = static_cast<double>(p.initial) * std::pow(p.factor, n);
  if (!(c < static_cast<double>(p.cap)))
    return p.cap;
  return static_cast<millis>(c);
}

millis backoff_delay(const backoff_policy& p, uint32_t n, double u) {
  u = std::clamp(u, 0.0, 1.0);
  return static_cast<millis>(u * static_cast<double>(backoff_ceiling(p, n)));
}

} // namespace cairn::alerts
