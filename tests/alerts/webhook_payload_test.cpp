#include "alerts/webhook_payload.hpp"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

using namespace cairn::alerts;
using nlohmann::json;

TEST_SUITE("alerts.payload") {

TEST_CASE("the body has Alertmanager's webhook shape plus the key") {
  notice n;
  n.rule = "api-p99";
  n.group = "host=h1";
  n.status = "firing";
  n.key = "00112233445566778";
  n.labels = {{"alertname", "api-p99"}, {"host", "h1"}, {"severity", "critical"}};
  n.annotations = {{"summary", "p99 300 <b>"}};
  n.value = 300;
  n.starts_at = 1764633000123;
  auto j = json::parse(webhook_body(n, "http://r/x", "http://node"));
  CHECK(j["version"] == "4");
  CHECK(j["status"] == "firing");
  CHECK(j["receiver"] == "http://r/x");
  CHECK(j["groupLabels"]["alertname"] == "api-p99");
  CHECK(j["commonLabels"]["host"] == "h1");
  CHECK(j["truncatedAlerts"] == 0);
  CHECK(j["idempotencyKey"] == n.key);
  REQUIRE(j["alerts"].size() == 1);
  auto& a = j["alerts"][0];
  CHECK(a["status"] == "firing");
  CHECK(a["labels"]["severity"] == "critical");
  CHECK(a["annotations"]["summary"] == "p99 300 <b>");
  CHECK(a["startsAt"] == "2025-12-01T23:50:00.123Z");
  CHECK(a["endsAt"] == "0001-01-01T00:00:00Z");
  CHECK(a.contains("fingerprint"));
  CHECK(a.contains("generatorURL"));
}

TEST_CASE("HMAC-SHA256 signature (RFC 4231 test case 2)") {
  CHECK(hmac_signature("Jefe", "what do ya want for nothing?")
        == "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("backoff: 200 ms doubling to a 30 s cap, full jitter") {
  backoff_policy p;
  CHECK(backoff_ceiling(p, 0) == 200);
  CHECK(backoff_ceiling(p, 1) == 400);
  CHECK(backoff_ceiling(p, 5) == 6400);
  CHECK(backoff_ceiling(p, 8) == 30000);
  CHECK(backoff_ceiling(p, 200) == 30000);
  CHECK(backoff_delay(p, 3, 0.0) == 0);
  CHECK(backoff_delay(p, 3, 0.5) == 800);
  CHECK(backoff_delay(p, 3, 0.999) <= 1600);
  CHECK(backoff_delay(p, 3, 7) == 1600);
}

}
