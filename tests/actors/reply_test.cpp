#include "actors/reply.hpp"

#include <doctest/doctest.h>

using namespace cairn;

TEST_SUITE("actors.reply") {

TEST_CASE("POST /api statuses follow the error code of the reply") {
  using actors::http_status_of_reply;
  CHECK(http_status_of_reply(R"({"ok":true,"node":"n1"})") == 200);
  // Rejected events inside a successful ingest stay 200.
  CHECK(http_status_of_reply(
          R"({"ok":true,"accepted":1,"rejected":1,"errors":[{"index":1,"code":"invalid_event"}]})")
        == 200);
  // A tag value that reads "ok":false is escaped inside its string.
  CHECK(http_status_of_reply(R"({"ok":true,"series":[{"tags":{"k":"\"ok\":false"}}]})")
        == 200);
  auto err = [](const char* code) {
    return actors::error_reply(actors::no_id(), [&] {
      cqrs::error_code c{};
      REQUIRE(cqrs::from_string(code, c));
      return c;
    }(), "m");
  };
  CHECK(http_status_of_reply(err("bad_request")) == 400);
  CHECK(http_status_of_reply(err("invalid_event")) == 400);
  CHECK(http_status_of_reply(err("unknown_op")) == 400);
  CHECK(http_status_of_reply(err("unauthorized")) == 401);
  CHECK(http_status_of_reply(err("unknown_subscription")) == 404);
  CHECK(http_status_of_reply(err("too_large")) == 413);
  CHECK(http_status_of_reply(err("rate_limited")) == 429);
  CHECK(http_status_of_reply(err("internal")) == 500);
  CHECK(http_status_of_reply(err("unavailable")) == 503);
  CHECK(http_status_of_reply(err("timeout")) == 504);
  CHECK(http_status_of_reply(R"({"ok":false,"line":3,"error":{"code":"too_many_series","message":"x"}})")
        == 400);
  // Unknown or missing codes are the server's fault.
  CHECK(http_status_of_reply(R"({"ok":false,"error":{"code":"what"}})") == 500);
  CHECK(http_status_of_reply(R"({"ok":false})") == 500);
}

TEST_CASE("every error code has a name that reads back") {
  for (int i = 0; i <= static_cast<int>(cqrs::error_code::unknown_subscription); ++i) {
    auto code = static_cast<cqrs::error_code>(i);
    cqrs::error_code back{};
    CHECK(cqrs::from_string(cqrs::to_string(code), back));
    CHECK(back == code);
    auto status = cqrs::http_status(code);
    CHECK((status >= 400 && status < 600));
  }
  cqrs::error_code none{};
  CHECK_FALSE(cqrs::from_string("nope", none));
}

} // TEST_SUITE
