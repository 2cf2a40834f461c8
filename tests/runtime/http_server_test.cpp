#include "runtime/http_server.hpp"

#include "tcp_client.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

using namespace cairn::runtime;
using namespace std::chrono_literals;
using cairn::test::tcp_client;

namespace {

struct response {
  int status = 0;
  std::string headers;
  std::string body;
};

/// Sends one raw HTTP/1.1 request on `c` and reads one response (needs
/// Content-Length, which the server always sets).
response roundtrip(tcp_client& c, const std::string& method,
                   const std::string& target, const std::string& body = {},
                   bool close = false) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n";
  if (!body.empty() || method == "POST")
    req += "Content-Type: application/json\r\nContent-Length: "
           + std::to_string(body.size()) + "\r\n";
  if (close)
    req += "Connection: close\r\n";
  req += "\r\n" + body;
  c.send(req);
  response res;
  // Status line and headers.
  std::vector<std::string> head;
  for (;;) {
    auto l = c.read_lines(1, 5s);
    if (l.empty())
      return res;
    if (!l[0].empty() && l[0].back() == '\r')
      l[0].pop_back();
    if (l[0].empty())
      break;
    head.push_back(l[0]);
  }
  REQUIRE(!head.empty());
  res.status = std::stoi(head[0].substr(9, 3));
  size_t length = 0;
  for (auto& h : head) {
    res.headers += h + "\n";
    auto lower = h;
    for (auto& ch : lower)
      ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lower.rfind("content-length:", 0) == 0)
      length = std::stoul(h.substr(15));
  }
  res.body = c.read_bytes(length, 5s);
  return res;
}

struct fixture {
  fixture() {
    root = std::filesystem::temp_directory_path() / "cairn-http-test-web";
    std::filesystem::remove_all(root);
    std::filesystem::create_directories(root / "js");
    std::ofstream{root / "index.html"} << "<html>cairn</html>\n";
    std::ofstream{root / "js" / "app.js"} << "console.log(1);\n";
    std::ofstream{root.parent_path() / "cairn-http-secret.txt"} << "secret\n";
    auto& c = metrics.counter("cairn_test_total", "A test counter");
    c += 7;
    http_server_options opts;
    opts.port = 0;
    opts.web_root = root.string();
    opts.readiness = [this]() -> std::string {
      return ready.load() ? "" : "not ready: recovering";
    };
    server = std::make_unique<http_server>(
      opts, metrics, [this](std::string body, http_server::reply_fn reply) {
        ++calls;
        // Answer from another thread, like an actor would.
        std::thread{[body = std::move(body), reply = std::move(reply)] {
          std::this_thread::sleep_for(2ms);
          reply(200, R"({"ok":true,"echo":)" + body + "}");
        }}.detach();
      });
    server->route("/api/v1/", true, [](http_request req,
                                       http_server::response_fn reply) {
      http_response out;
      out.status = req.path == "/api/v1/missing" ? 404 : 200;
      out.content_type = "text/plain";
      out.body = req.method + " " + req.path + " ?" + req.query + " ["
                 + std::string{req.header("x-test")} + "] " + req.body;
      out.headers.emplace_back("X-Route", "v1");
      std::thread{[out = std::move(out), reply = std::move(reply)]() mutable {
        reply(std::move(out));
      }}.detach();
    });
    server->route("/write", false,
                  [](http_request, http_server::response_fn reply) {
                    reply(http_response{204, "text/plain", "", {}});
                  });
    server->start();
  }
  ~fixture() {
    server->stop();
    std::filesystem::remove_all(root);
  }
  std::filesystem::path root;
  metrics_registry metrics;
  std::atomic<int> calls{0};
  std::atomic<bool> ready{false};
  std::unique_ptr<http_server> server;
};

} // namespace

TEST_SUITE("runtime.http_server") {

TEST_CASE_FIXTURE(fixture, "GET /metrics and /healthz on one keep-alive connection") {
  tcp_client c{server->port()};
  auto m = roundtrip(c, "GET", "/metrics");
  CHECK(m.status == 200);
  CHECK(m.body.find("# TYPE cairn_test_total counter\ncairn_test_total 7\n")
        != std::string::npos);
  auto h = roundtrip(c, "GET", "/healthz");
  CHECK(h.status == 200);
  CHECK(h.body == "ok");
}

TEST_CASE_FIXTURE(fixture, "/readyz follows readiness, /healthz does not") {
  tcp_client c{server->port()};
  auto r = roundtrip(c, "GET", "/readyz");
  CHECK(r.status == 503);
  CHECK(r.body == "not ready: recovering\n");
  CHECK(r.headers.find("Retry-After: 1") != std::string::npos);
  CHECK(roundtrip(c, "GET", "/healthz").status == 200);
  ready = true;
  r = roundtrip(c, "GET", "/readyz");
  CHECK(r.status == 200);
  CHECK(r.body == "ok");
}

TEST_CASE_FIXTURE(fixture, "wrong methods get 405 with Allow, WebSocket paths 426") {
  server->stop();
  http_server_options opts;
  opts.port = 0;
  opts.web_root = root.string();
  http_server ws_server{opts, metrics, [](std::string, http_server::reply_fn r) {
                          r(200, "{}");
                        }};
  ws_server.websocket("/v1/live", [](const std::shared_ptr<stream_sink>&,
                                     std::string) {});
  ws_server.start();
  tcp_client c{ws_server.port()};
  struct expectation {
    const char* method;
    const char* path;
    const char* allow;
  };
  for (auto e : {expectation{"GET", "/api", "Allow: POST"},
                 expectation{"POST", "/metrics", "Allow: GET, HEAD"},
                 expectation{"PUT", "/healthz", "Allow: GET, HEAD"},
                 expectation{"POST", "/readyz", "Allow: GET, HEAD"},
                 expectation{"DELETE", "/index.html", "Allow: GET, HEAD"},
                 expectation{"POST", "/v1/live", "Allow: GET"}}) {
    CAPTURE(e.method);
    CAPTURE(e.path);
    auto r = roundtrip(c, e.method, e.path);
    CHECK(r.status == 405);
    CHECK(r.headers.find(e.allow) != std::string::npos);
  }
  auto r = roundtrip(c, "GET", "/v1/live");
  CHECK(r.status == 426);
  CHECK(r.headers.find("Upgrade: websocket") != std::string::npos);
  CHECK(roundtrip(c, "POST", "/nothing/here").status == 404);
  ws_server.stop();
}

TEST_CASE_FIXTURE(fixture, "POST /api is answered asynchronously") {
  tcp_client c{server->port()};
  auto r = roundtrip(c, "POST", "/api", R"({"op":"ping"})");
  CHECK(r.status == 200);
  CHECK(r.body == R"({"ok":true,"echo":{"op":"ping"}})");
  CHECK(r.headers.find("application/json") != std::string::npos);
  auto r2 = roundtrip(c, "POST", "/api", R"({"op":"stats"})");
  CHECK(r2.body == R"({"ok":true,"echo":{"op":"stats"}})");
  CHECK(calls.load() == 2);
  CHECK(roundtrip(c, "GET", "/api").status == 405);
}

TEST_CASE_FIXTURE(fixture, "routes: prefix and exact paths, headers, query, any method") {
  tcp_client c{server->port()};
  c.send("POST /api/v1/write?db=x&precision=s HTTP/1.1\r\nHost: h\r\n"
         "X-Test: yes\r\nContent-Length: 3\r\n\r\nabc");
  auto lines = c.read_lines(1, 5s);
  REQUIRE(!lines.empty());
  CHECK(lines[0].rfind("HTTP/1.1 200", 0) == 0);
  c.read_lines(5, 1s);  // the rest of the header
  tcp_client c2{server->port()};
  auto r = roundtrip(c2, "GET", "/api/v1/query?query=up");
  CHECK(r.status == 200);
  CHECK(r.body == "GET /api/v1/query ?query=up [] ");
  CHECK(r.headers.find("X-Route: v1") != std::string::npos);
  CHECK(roundtrip(c2, "GET", "/api/v1/missing").status == 404);
  CHECK(roundtrip(c2, "POST", "/write", "x").status == 204);
  // Exact routes do not match longer paths; /api keeps its own handler.
  CHECK(roundtrip(c2, "GET", "/writes").status == 404);
  CHECK(roundtrip(c2, "POST", "/api", R"({"op":"ping"})").body
        == R"({"ok":true,"echo":{"op":"ping"}})");
}

TEST_CASE_FIXTURE(fixture, "static files, index.html and 404") {
  tcp_client c{server->port()};
  auto idx = roundtrip(c, "GET", "/");
  CHECK(idx.status == 200);
  CHECK(idx.body == "<html>cairn</html>\n");
  CHECK(idx.headers.find("text/html") != std::string::npos);
  auto js = roundtrip(c, "GET", "/js/app.js?v=1");
  CHECK(js.status == 200);
  CHECK(js.body == "console.log(1);\n");
  CHECK(js.headers.find("javascript") != std::string::npos);
  CHECK(roundtrip(c, "GET", "/nope.html").status == 404);
  CHECK(roundtrip(c, "GET", "/js/").status == 404);
}

TEST_CASE_FIXTURE(fixture, "path traversal is refused") {
  tcp_client c{server->port()};
  CHECK(roundtrip(c, "GET", "/../cairn-http-secret.txt").status == 404);
  CHECK(roundtrip(c, "GET", "/js/../../cairn-http-secret.txt").status == 404);
  CHECK(roundtrip(c, "GET", "/%2e%2e/cairn-http-secret.txt").status == 404);
  CHECK(roundtrip(c, "GET", "/js/..").status == 404);
  // The connection is still fine.
  CHECK(roundtrip(c, "GET", "/healthz").status == 200);
}

TEST_CASE_FIXTURE(fixture, "Connection: close is honored") {
  tcp_client c{server->port()};
  auto r = roundtrip(c, "GET", "/healthz", {}, true);
  CHECK(r.status == 200);
  CHECK(c.wait_eof());
}

TEST_CASE("idle keep-alive, slow headers and too many connections") {
  metrics_registry metrics;
  http_server_options opts;
  opts.port = 0;
  opts.idle_timeout = 300ms;
  opts.read_timeout = 300ms;
  opts.max_connections = 4;
  http_server server{opts, metrics, [](std::string, http_server::reply_fn reply) {
                       reply(200, R"({"ok":true})");
                     }};
  server.start();
  tcp_client keep{server.port()};
  CHECK(roundtrip(keep, "GET", "/healthz").status == 200);
  tcp_client idle{server.port()};
  tcp_client slow{server.port()};
  slow.send("GET /healthz HTTP/1.1\r\n");
  tcp_client active{server.port()};
  // A fifth connection is over the limit: 503, closed.
  {
    tcp_client extra{server.port()};
    auto lines = extra.read_lines(1, 2s);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].rfind("HTTP/1.1 503", 0) == 0);
    CHECK(extra.wait_eof(2s));
  }
  for (int i = 0; i < 8; ++i) {
    CHECK(roundtrip(active, "GET", "/healthz").status == 200);
    try {
      slow.send("X");  // bytes, but the header never ends
    } catch (const std::runtime_error&) {
    }
    std::this_thread::sleep_for(80ms);
  }
  // 640 ms in: the active client was served throughout; the rest are gone.
  CHECK(keep.wait_eof(2s));
  CHECK(idle.wait_eof(2s));
  CHECK(slow.wait_eof(2s));
  // Their slots are free again.
  tcp_client again{server.port()};
  CHECK(roundtrip(again, "GET", "/healthz").status == 200);
  server.stop();
}

} // TEST_SUITE

namespace {

/// A masked client text frame (RFC 6455 5.2), payload < 126 bytes.
std::string client_text_frame(const std::string& payload) {
  std::string out;
  out.push_back(static_cast<char>(0x81));
  out.push_back(static_cast<char>(0x80 | payload.size()));
  const char mask[4] = {0x11, 0x22, 0x33, 0x44};
  out.append(mask, 4);
  for (size_t i = 0; i < payload.size(); ++i)
    out.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
  return out;
}

/// Reads one unmasked server text frame (payload < 65536 bytes).
std::string read_server_frame(tcp_client& c) {
  auto head = c.read_bytes(2, 5s);
  REQUIRE(head.size() == 2);
  CHECK(static_cast<uint8_t>(head[0]) == 0x81);
  size_t n = static_cast<uint8_t>(head[1]) & 0x7F;
  if (n == 126) {
    auto ext = c.read_bytes(2, 5s);
    REQUIRE(ext.size() == 2);
    n = (size_t{static_cast<uint8_t>(ext[0])} << 8) | static_cast<uint8_t>(ext[1]);
  }
  return c.read_bytes(n, 5s);
}

} // namespace

TEST_SUITE("runtime.http_server") {

// The fan-out path of live updates (docs/architecture.md, "Live
// subscriptions"): many sinks fed from another thread with one shared
// body wake their sessions through the sharded wake queue (two I/O
// threads: two shards), and every client gets its own head + the body,
// message before update, as whole frames.
TEST_CASE("WebSocket sinks fed a shared body from another thread") {
  metrics_registry metrics;
  http_server_options opts;
  opts.port = 0;
  opts.io_threads = 2;
  opts.ws_ping_interval = std::chrono::seconds{0};
  http_server server{opts, metrics, [](std::string, http_server::reply_fn r) {
                       r(200, "{}");
                     }};
  std::mutex mtx;
  std::vector<std::pair<std::string, std::shared_ptr<stream_sink>>> sinks;
  server.websocket("/v1/live", [&](const std::shared_ptr<stream_sink>& sink,
                                   std::string text) {
    std::lock_guard<std::mutex> guard{mtx};
    sinks.emplace_back(std::move(text), sink);
  });
  server.start();
  constexpr int clients = 40;
  std::vector<std::unique_ptr<tcp_client>> cs;
  for (int i = 0; i < clients; ++i) {
    auto c = std::make_unique<tcp_client>(server.port());
    c->send("GET /v1/live HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n");
    auto status = c->read_lines(1, 5s);
    REQUIRE(status.size() == 1);
    CHECK(status[0].rfind("HTTP/1.1 101", 0) == 0);
    for (;;) {
      auto l = c->read_lines(1, 5s);
      REQUIRE(l.size() == 1);
      if (l[0] == "\r" || l[0].empty())
        break;
    }
    c->send(client_text_frame(std::to_string(i)));
    cs.push_back(std::move(c));
  }
  for (int tries = 0; tries < 500; ++tries) {
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (sinks.size() == clients)
        break;
    }
    std::this_thread::sleep_for(10ms);
  }
  std::lock_guard<std::mutex> guard{mtx};
  REQUIRE(sinks.size() == clients);
  auto snapshot = std::make_shared<const std::string>("\"ok\":true,\"n\":0}");
  auto update = std::make_shared<const std::string>(std::string(300, 'x') + "\"}");
  std::thread producer{[&] {
    for (auto& [id, sink] : sinks) {
      CHECK(sink->send("{\"id\":" + id + ",\"type\":\"snapshot\",", snapshot));
      CHECK(sink->update(id, "{\"id\":" + id + ",\"u\":\"", update)
            == stream_sink::offer::queued);
    }
  }};
  producer.join();
  for (int i = 0; i < clients; ++i) {
    CAPTURE(i);
    auto id = std::to_string(i);
    CHECK(read_server_frame(*cs[static_cast<size_t>(i)])
          == "{\"id\":" + id + ",\"type\":\"snapshot\",\"ok\":true,\"n\":0}");
    CHECK(read_server_frame(*cs[static_cast<size_t>(i)])
          == "{\"id\":" + id + ",\"u\":\"" + *update);
  }
  sinks.clear();
  // Written: no queue and no write in flight holds the body any more.
  for (int tries = 0; tries < 200 && update.use_count() > 1; ++tries)
    std::this_thread::sleep_for(5ms);
  CHECK(update.use_count() == 1);
  server.stop();
}

}
