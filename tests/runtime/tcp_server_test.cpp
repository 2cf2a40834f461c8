#include "runtime/tcp_server.hpp"

#include "tcp_client.hpp"

#include <doctest/doctest.h>

#include <sys/resource.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

using namespace cairn::runtime;
using namespace std::chrono_literals;
using cairn::test::tcp_client;

namespace {

/// Stands in for the parser actors: completes chunks on its own thread, in
/// random order, with small random delays. Replies one line per input line:
/// "<line>" for events, "B<line>" for lines with "op". Checks the barrier
/// contract while doing so.
class fake_processor {
public:
  explicit fake_processor(bool shuffle = true, int max_delay_us = 500)
    : shuffle_(shuffle), max_delay_us_(max_delay_us),
      worker_([this] { loop(); }) {
  }

  ~fake_processor() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      stop_ = true;
      hold_ = false;
    }
    cv_.notify_all();
    worker_.join();
  }

  tcp_server::chunk_handler handler() {
    return [this](chunk c) { on_chunk(std::move(c)); };
  }

  /// While held, chunks pile up uncompleted.
  void hold(bool on) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      hold_ = on;
    }
    cv_.notify_all();
  }

  size_t received() const { return received_.load(); }
  size_t barrier_violations() const { return violations_.load(); }
  size_t max_outstanding() const { return max_outstanding_.load(); }

private:
  void on_chunk(chunk c) {
    std::lock_guard<std::mutex> guard{mtx_};
    ++received_;
    // A barrier arrives only when nothing else is in flight, and nothing
    // arrives while a barrier is in flight.
    if (barrier_out_ || (c.barrier && outstanding_ > 0))
      ++violations_;
    if (c.barrier)
      barrier_out_ = true;
    ++outstanding_;
    if (outstanding_ > max_outstanding_)
      max_outstanding_ = outstanding_;
    pending_.push_back(std::move(c));
    cv_.notify_all();
  }

  void loop() {
    std::mt19937 rng{42};
    for (;;) {
      chunk c;
      {
        std::unique_lock<std::mutex> guard{mtx_};
        cv_.wait(guard, [&] { return stop_ || (!hold_ && !pending_.empty()); });
        if (stop_ && (pending_.empty() || hold_))
          return;
        size_t i = shuffle_ ? rng() % pending_.size() : 0;
        c = std::move(pending_[i]);
        pending_.erase(pending_.begin() + static_cast<ptrdiff_t>(i));
      }
      if (max_delay_us_ > 0)
        std::this_thread::sleep_for(
          std::chrono::microseconds(rng() % max_delay_us_));
      std::string out;
      auto line = c.first_line;
      size_t pos = 0;
      while (pos < c.data.size()) {
        auto nl = c.data.find('\n', pos);
        auto text = c.data.substr(pos, nl - pos);
        out += (text.find("\"op\"") != std::string::npos ? "B" : "")
               + std::to_string(line++) + "\n";
        pos = nl + 1;
      }
      {
        std::lock_guard<std::mutex> guard{mtx_};
        --outstanding_;
        if (c.barrier)
          barrier_out_ = false;
      }
      c.conn->complete(c.seq, std::move(out));
    }
  }

  bool shuffle_;
  int max_delay_us_;
  std::mutex mtx_;
  std::condition_variable cv_;
  std::vector<chunk> pending_;
  bool stop_ = false;
  bool hold_ = false;
  size_t outstanding_ = 0;
  bool barrier_out_ = false;
  std::atomic<size_t> received_{0};
  std::atomic<size_t> violations_{0};
  std::atomic<size_t> max_outstanding_{0};
  std::thread worker_;
};

tcp_server_options small_options() {
  tcp_server_options opts;
  opts.port = 0;
  opts.max_line = 1000;
  opts.max_chunk = 256;
  opts.window = 4;
  return opts;
}

std::string event(size_t i) {
  return R"({"metric":"m","value":)" + std::to_string(i) + "}\n";
}

} // namespace

TEST_SUITE("runtime.tcp_server") {

TEST_CASE("replies come back in line order despite out-of-order completion") {
  fake_processor proc;
  tcp_server server{small_options(), proc.handler()};
  server.start();
  REQUIRE(server.port() != 0);
  tcp_client client{server.port()};
  std::string all;
  const size_t n = 3000;
  for (size_t i = 1; i <= n; ++i)
    all += event(i);
  std::thread writer{[&] { client.send(all); }};
  auto lines = client.read_lines(n);
  writer.join();
  REQUIRE(lines.size() == n);
  for (size_t i = 0; i < n; ++i)
    REQUIRE(lines[i] == std::to_string(i + 1));
  CHECK(proc.received() > 10);  // cut into many chunks
  CHECK(proc.max_outstanding() <= 4);
  CHECK(proc.barrier_violations() == 0);
  server.stop();
}

TEST_CASE("barrier chunks run alone and requests keep their line numbers") {
  fake_processor proc;
  tcp_server server{small_options(), proc.handler()};
  server.start();
  tcp_client client{server.port()};
  std::string all;
  std::vector<std::string> expected;
  for (size_t i = 1; i <= 600; ++i) {
    if (i % 7 == 0) {
      all += R"({"op":"flush"})" "\n";
      expected.push_back("B" + std::to_string(i));
    } else {
      all += event(i);
      expected.push_back(std::to_string(i));
    }
  }
  std::thread writer{[&] { client.send(all); }};
  auto lines = client.read_lines(expected.size());
  writer.join();
  CHECK(lines == expected);
  CHECK(proc.barrier_violations() == 0);
  server.stop();
}

TEST_CASE("oversized lines are answered in order and the connection survives") {
  fake_processor proc;
  tcp_server server{small_options(), proc.handler()};
  server.start();
  tcp_client client{server.port()};
  // Line 2 is too long but arrives complete; line 4 is too long and arrives
  // in pieces, larger than a read, without its newline for a while.
  client.send(event(1) + std::string(5000, 'x') + "\n" + event(3));
  client.send(std::string(70000, 'y'));
  std::this_thread::sleep_for(20ms);
  client.send(std::string(70000, 'y'));
  client.send("yyy\n" + event(5));
  client.send(R"({"op":"ping"})" "\n");
  auto lines = client.read_lines(6);
  REQUIRE(lines.size() == 6);
  CHECK(lines[0] == "1");
  CHECK(lines[1]
        == R"({"ok":false,"line":2,"error":{"code":"too_large","message":"line exceeds 1000 bytes"}})");
  CHECK(lines[2] == "3");
  CHECK(lines[3]
        == R"({"ok":false,"line":4,"error":{"code":"too_large","message":"line exceeds 1000 bytes"}})");
  CHECK(lines[4] == "5");
  CHECK(lines[5] == "B6");
  CHECK(server.stats().lines_too_large == 2);
  server.stop();
}

TEST_CASE("EOF: a final unterminated line is a line, replies are flushed") {
  fake_processor proc;
  tcp_server server{small_options(), proc.handler()};
  server.start();
  tcp_client client{server.port()};
  client.send(event(1) + R"({"op":"flush"})");
  client.shutdown_write();
  auto lines = client.read_lines(3);
  CHECK(lines == std::vector<std::string>{"1", "B2"});
  CHECK(client.wait_eof());
}

TEST_CASE("EOF inside an oversized final line still answers it") {
  fake_processor proc;
  tcp_server server{small_options(), proc.handler()};
  server.start();
  tcp_client client{server.port()};
  client.send(event(1) + std::string(1500, 'z'));
  client.shutdown_write();
  auto lines = client.read_lines(2);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "1");
  CHECK(lines[1].find(R"("line":2,"error":{"code":"too_large")")
        != std::string::npos);
  CHECK(client.wait_eof());
}

TEST_CASE("line-protocol mode: chunks carry the format, no barriers, nothing written back") {
  std::mutex mtx;
  std::vector<chunk> seen;
  auto opts = small_options();
  opts.format = chunk_format::influx;
  opts.replies = false;
  tcp_server server{opts, [&](chunk c) {
                      auto conn = c.conn;
                      auto seq = c.seq;
                      {
                        std::lock_guard<std::mutex> guard{mtx};
                        seen.push_back(std::move(c));
                      }
                      // Even a processor that answers is not written back.
                      conn->complete(seq, "should not be sent\n");
                    }};
  server.start();
  tcp_client client{server.port()};
  // Line 2 holds the bytes "op" (a barrier in NDJSON); line 3 is too long.
  client.send("m v=1\nm,op=x s=\"\\\"op\\\"\"\n" + std::string(5000, 'x')
              + "\nm v=4\n");
  client.shutdown_write();
  CHECK(client.wait_eof());
  CHECK(client.rest().empty());
  server.stop();
  std::lock_guard<std::mutex> guard{mtx};
  REQUIRE(!seen.empty());
  std::string data;
  for (auto& c : seen) {
    CHECK(c.format == chunk_format::influx);
    CHECK_FALSE(c.replies);
    CHECK_FALSE(c.barrier);
    data += c.data;
  }
  CHECK(data.find("m v=4") != std::string::npos);
  CHECK(data.find("xxx") == std::string::npos);
  CHECK(seen.back().first_line == (seen.size() == 1 ? 1 : 4));
  CHECK(server.stats().lines_too_large == 1);
}

TEST_CASE("connections beyond max_connections are refused") {
  fake_processor proc;
  auto opts = small_options();
  opts.max_connections = 1;
  tcp_server server{opts, proc.handler()};
  server.start();
  tcp_client first{server.port()};
  first.send(event(1));
  REQUIRE(first.read_lines(1) == std::vector<std::string>{"1"});
  tcp_client second{server.port()};
  auto lines = second.read_lines(1);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0]
        == R"({"ok":false,"error":{"code":"unavailable","message":"too many connections"}})");
  CHECK(second.wait_eof());
  CHECK(server.stats().connections_refused == 1);
  // The first connection still works.
  first.send(event(2));
  CHECK(first.read_lines(1) == std::vector<std::string>{"2"});
}

TEST_CASE("a connection whose chunks are not completed stops being read") {
  fake_processor proc;
  proc.hold(true);
  auto opts = small_options();
  opts.max_chunk = 64 * 1024;
  tcp_server server{opts, proc.handler()};
  server.start();
  tcp_client client{server.port()};
  client.set_nonblocking();
  // Write until the kernel buffers are full (the server must stop reading).
  std::string block;
  while (block.size() < 64 * 1024)
    block += event(block.size());
  size_t written = 0;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  int stalls = 0;
  while (std::chrono::steady_clock::now() < deadline && written < (64u << 20)) {
    auto n = ::send(client.fd(), block.data(), block.size(), MSG_NOSIGNAL);
    if (n > 0) {
      written += static_cast<size_t>(n);
      stalls = 0;
    } else {
      if (++stalls > 50)
        break;  // blocked for ~250 ms: backpressure reached the client
      std::this_thread::sleep_for(5ms);
    }
  }
  auto read = server.stats().bytes_read;
  MESSAGE("client wrote ", written, " bytes, server read ", read);
  CHECK(written < (64u << 20));
  // window * chunk + one read of read-ahead, with slack.
  CHECK(read <= 4 * opts.max_chunk + 4 * 64 * 1024);
  CHECK(proc.received() <= 4);
  // Completing the held chunks resumes reading.
  proc.hold(false);
  for (int i = 0; i < 300 && server.stats().bytes_read <= read; ++i)
    std::this_thread::sleep_for(10ms);  // up to 3 s on a loaded machine
  CHECK(server.stats().bytes_read > read);
  server.stop(100ms);
}

TEST_CASE("stop() lets chunks in flight complete and closes connections") {
  fake_processor proc{false, 200000};  // 0..200 ms per chunk
  tcp_server server{small_options(), proc.handler()};
  server.start();
  tcp_client client{server.port()};
  client.send(R"({"op":"flush"})" "\n");
  // Dispatched, not yet completed (waiting on the count, not a fixed sleep:
  // under load 20 ms did not always suffice to read the line).
  for (int i = 0; i < 500 && proc.received() == 0; ++i)
    std::this_thread::sleep_for(1ms);
  REQUIRE(proc.received() == 1);
  server.stop(2s);
  auto lines = client.read_lines(1, 1s);
  CHECK(lines == std::vector<std::string>{"B1"});
  CHECK(client.wait_eof(1s));
  server.stop();  // idempotent
}

TEST_CASE("completions after the connection or the server died are harmless") {
  std::mutex mtx;
  std::vector<chunk> kept;
  {
    tcp_server server{small_options(), [&](chunk c) {
                        std::lock_guard<std::mutex> guard{mtx};
                        kept.push_back(std::move(c));
                      }};
    server.start();
    {
      tcp_client client{server.port()};
      client.send(event(1));
      for (int i = 0; i < 200; ++i) {
        std::this_thread::sleep_for(5ms);
        std::lock_guard<std::mutex> guard{mtx};
        if (!kept.empty())
          break;
      }
    }  // client gone
    std::this_thread::sleep_for(20ms);
    std::lock_guard<std::mutex> guard{mtx};
    REQUIRE(kept.size() == 1);
    kept[0].conn->complete(kept[0].seq, "1\n");
    server.stop(10ms);
  }
  // Server destroyed; the context is still usable.
  kept[0].conn->complete(kept[0].seq, "1\n");
}

TEST_CASE("a port in use fails bind() with one line naming the option") {
  fake_processor proc;
  tcp_server first{small_options(), proc.handler()};
  first.start();
  auto opts = small_options();
  opts.port = first.port();
  opts.option = "cairn.tcp.port";
  tcp_server second{opts, proc.handler()};
  std::string what;
  try {
    second.bind();
  } catch (const std::runtime_error& e) {
    what = e.what();
  }
  CHECK(what
        == "cannot listen on 127.0.0.1:" + std::to_string(first.port())
             + " (cairn.tcp.port): Address already in use");
  // A server that was never started stops at once.
  second.stop();
  first.stop();
}

TEST_CASE("idle and slow connections time out; an active one is served") {
  fake_processor proc{false, 0};
  auto opts = small_options();
  opts.idle_timeout = 400ms;
  opts.line_timeout = 400ms;
  tcp_server server{opts, proc.handler()};
  server.start();
  tcp_client idle{server.port()};
  tcp_client slow{server.port()};
  tcp_client active{server.port()};
  // The slow sender completes two lines, then dribbles a third.
  slow.send(event(1) + event(2) + R"({"metric":"m",)");
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    active.send(event(static_cast<size_t>(i + 1)));
    REQUIRE(active.read_lines(1).size() == 1);
    try {
      slow.send(" ");  // bytes arrive, but the line never completes
    } catch (const std::runtime_error&) {
      // closed by the server: expected after the line timeout
    }
    std::this_thread::sleep_for(80ms);
  }
  // 800 ms in: the active one was never cut off, both others are gone.
  active.send(event(99));
  CHECK(active.read_lines(1) == std::vector<std::string>{"11"});  // line 11
  CHECK(idle.wait_eof(2s));
  auto lines = slow.read_lines(3, 2s);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0] == "1");  // lines completed before the timeout are answered
  CHECK(lines[1] == "2");
  CHECK(lines[2].find(R"("code":"timeout")") != std::string::npos);
  CHECK(lines[2].find(R"("line":3)") != std::string::npos);
  CHECK(slow.wait_eof(2s));
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  CHECK(server.stats().connections_timed_out >= 2);
  server.stop();
}

TEST_CASE("a partial line waiting on backpressure does not time out") {
  fake_processor proc{false, 0};
  auto opts = small_options();
  opts.window = 1;
  opts.line_timeout = 300ms;
  opts.idle_timeout = 0ms;
  tcp_server server{opts, proc.handler()};
  server.start();
  tcp_client client{server.port()};
  proc.hold(true);
  // Two chunks' worth of lines (the window holds one) and a partial line:
  // the server stops reading, so the partial line cannot be the client's
  // fault.
  std::string data;
  size_t n = 0;
  while (data.size() < 2 * opts.max_chunk)
    data += event(++n);
  client.send(data + R"({"metric":"m",)");
  std::this_thread::sleep_for(800ms);
  proc.hold(false);
  client.send("\"value\":1}\n");
  auto lines = client.read_lines(n + 1, 5s);
  REQUIRE(lines.size() == n + 1);
  CHECK(lines.back() == std::to_string(n + 1));
  CHECK(server.stats().connections_timed_out == 0);
  server.stop();
}

TEST_CASE("a connection with a chunk in flight is not idle") {
  fake_processor proc{false, 0};
  auto opts = small_options();
  opts.idle_timeout = 200ms;
  tcp_server server{opts, proc.handler()};
  server.start();
  tcp_client client{server.port()};
  proc.hold(true);
  client.send(event(1));
  std::this_thread::sleep_for(600ms);
  proc.hold(false);
  // The reply still arrives: the connection waited for the processing side.
  CHECK(client.read_lines(1, 2s) == std::vector<std::string>{"1"});
  // Then, idle, it is closed.
  CHECK(client.wait_eof(2s));
  server.stop();
}

TEST_CASE("out of descriptors: accept backs off instead of spinning") {
  fake_processor proc{false, 0};
  auto opts = small_options();
  opts.max_connections = 10000;
  tcp_server server{opts, proc.handler()};
  server.start();
  tcp_client first{server.port()};
  first.send(event(1));
  REQUIRE(first.read_lines(1).size() == 1);
  // Client sockets are created while descriptors are plenty; then the soft
  // limit drops to what is open now, so every accept fails with EMFILE.
  std::vector<int> socks;
  for (int i = 0; i < 8; ++i)
    socks.push_back(::socket(AF_INET, SOCK_STREAM, 0));
  rlimit old{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &old) == 0);
  int highest = 0;
  for (int fd = 0; fd < 4096; ++fd)
    if (::fcntl(fd, F_GETFD) != -1)
      highest = fd;
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(highest + 1);
  REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
  // Fill the holes below the limit: no descriptor is left to accept into.
  std::vector<int> fillers;
  for (int fd; (fd = ::dup(0)) >= 0;)
    fillers.push_back(fd);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int fd : socks)
    CHECK(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  std::this_thread::sleep_for(1s);
  rusage after{};
  getrusage(RUSAGE_SELF, &after);
  auto cpu_us = [](const rusage& r) {
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000000LL
           + r.ru_utime.tv_usec + r.ru_stime.tv_usec;
  };
  auto used = cpu_us(after) - cpu_us(before);
  MESSAGE("CPU while out of descriptors: ", used / 1000, " ms in 1 s");
  CHECK(used < 300000);  // a spinning accept loop burns the whole second
  // Nothing could be accepted meanwhile (every accept failed).
  CHECK(server.stats().connections_accepted == 1);
  // The open connection is still served.
  first.send(event(2));
  CHECK(first.read_lines(1, 2s) == std::vector<std::string>{"2"});
  // Descriptors back: the queued connections are accepted within the
  // backoff cap (1 s).
  REQUIRE(setrlimit(RLIMIT_NOFILE, &old) == 0);
  for (int fd : fillers)
    ::close(fd);
  auto deadline = std::chrono::steady_clock::now() + 3s;
  while (server.stats().connections_accepted < 1 + socks.size()
         && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  CHECK(server.stats().connections_accepted == 1 + socks.size());
  for (int fd : socks)
    ::close(fd);
  server.stop();
}

} // TEST_SUITE
