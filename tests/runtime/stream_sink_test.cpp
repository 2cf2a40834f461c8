#include "runtime/stream_sink.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace cairn::runtime;

namespace {

std::vector<std::string> drain(stream_sink& s) {
  std::vector<std::string> out;
  std::string msg;
  while (s.next(msg))
    out.push_back(msg);
  return out;
}

} // namespace

TEST_SUITE("runtime.stream_sink") {
  TEST_CASE("wakes once until drained; messages before updates") {
    int wakes = 0;
    stream_sink s{1, 16, [&] { ++wakes; }};
    CHECK(s.update("a", "a1") == stream_sink::offer::queued);
    CHECK(wakes == 1);
    CHECK(s.send("snapshot"));
    CHECK(s.update("b", "b1") == stream_sink::offer::queued);
    CHECK(wakes == 1);  // the session was woken and has not drained yet
    CHECK(drain(s) == std::vector<std::string>{"snapshot", "a1", "b1"});
    CHECK(s.update("a", "a2") == stream_sink::offer::queued);
    CHECK(wakes == 2);  // drained: the next message wakes again
  }

  TEST_CASE("a waiting update is replaced by the newer one of its key") {
    stream_sink s{1, 16, [] {}};
    CHECK(s.update("a", "a1") == stream_sink::offer::queued);
    CHECK(s.update("b", "b1") == stream_sink::offer::queued);
    CHECK(s.update("a", "a2") == stream_sink::offer::coalesced);
    CHECK(s.update("a", "a3") == stream_sink::offer::coalesced);
    CHECK(s.backlog() == 2);
    // Order of first queueing is kept; the newest value wins.
    CHECK(drain(s) == std::vector<std::string>{"a3", "b1"});
    s.update("c", "c1");
    s.forget("c");
    CHECK(drain(s).empty());
  }

  TEST_CASE("a shared body is queued by reference and coalesces like text") {
    auto body = std::make_shared<const std::string>("\"ok\":true}");
    stream_sink a{1, 16, [] {}};
    stream_sink b{2, 16, [] {}};
    CHECK(a.update("1", "{\"id\":1,", body) == stream_sink::offer::queued);
    CHECK(b.update("7", "{\"id\":7,", body) == stream_sink::offer::queued);
    CHECK(body.use_count() == 3);  // one text, held by both queues
    CHECK(a.send("{\"id\":1,\"type\":\"snapshot\",", body));
    stream_message msg;
    REQUIRE(a.next(msg));  // messages before updates
    CHECK(msg.head == "{\"id\":1,\"type\":\"snapshot\",");
    CHECK(msg.body == body);
    CHECK(msg.size() == msg.head.size() + body->size());
    CHECK(msg.text() == "{\"id\":1,\"type\":\"snapshot\",\"ok\":true}");
    // A newer update of the key replaces head and body.
    auto newer = std::make_shared<const std::string>("\"ok\":false}");
    CHECK(a.update("1", "{\"id\":1,", newer) == stream_sink::offer::coalesced);
    REQUIRE(a.next(msg));
    CHECK(msg.text() == "{\"id\":1,\"ok\":false}");
    CHECK_FALSE(a.next(msg));
    // The string form joins head and body; a plain update has no body.
    CHECK(drain(b) == std::vector<std::string>{"{\"id\":7,\"ok\":true}"});
    b.update("7", "plain");
    REQUIRE(b.next(msg));
    CHECK(msg.head == "plain");
    CHECK(msg.body == nullptr);
    msg = {};
    CHECK(body.use_count() == 1);  // nothing queued holds it any more
  }

  TEST_CASE("a backlog overflow closes the client; closed sinks refuse") {
    int closes = 0;
    stream_sink s{7, 3, [] {}};
    s.on_close([&] { ++closes; });
    CHECK(s.send("1"));
    CHECK(s.send("2"));
    CHECK(s.send("3"));
    CHECK_FALSE(s.send("4"));  // a client that reads nothing is cut off
    CHECK(s.closed());
    CHECK(s.update("a", "x") == stream_sink::offer::closed);
    CHECK(drain(s).empty());
    CHECK(closes == 0);  // the session runs the callback once it closed
    s.mark_closed();
    s.mark_closed();
    CHECK(closes == 1);
    int late = 0;
    s.on_close([&] { ++late; });  // installed after the close: runs at once
    CHECK(late == 1);
    CHECK(s.id() == 7);
  }
}
