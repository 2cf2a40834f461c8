// ws_write_gate: Beast's writes and the session's own frames never overlap
// (runtime/detail/ws_write_gate.hpp). The stream below is a fake that only
// records each async_write_some; the test completes them by hand, so every
// interleaving is chosen, not timed.
#include "runtime/detail/ws_write_gate.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
using error_code = boost::system::error_code;

/// Records writes; `complete(i)` runs the i-th one's handler.
struct fake_stream {
  using executor_type = asio::io_context::executor_type;

  asio::io_context* ioc;
  std::vector<std::string>* log;
  std::vector<std::function<void(error_code, size_t)>>* pending;

  executor_type get_executor() noexcept { return ioc->get_executor(); }

  template <class B, class H>
  void async_write_some(const B& buffers, H&& handler) {
    std::string bytes(asio::buffer_size(buffers), '\0');
    asio::buffer_copy(asio::buffer(bytes), buffers);
    log->push_back("lower:" + bytes);
    auto h = std::make_shared<std::decay_t<H>>(std::forward<H>(handler));
    pending->push_back([h](error_code ec, size_t n) { (*h)(ec, n); });
  }

  template <class B, class H>
  void async_read_some(const B&, H&&) {
  }
};

struct fixture {
  asio::io_context ioc;
  std::vector<std::string> log;
  std::vector<std::function<void(error_code, size_t)>> pending;
  cairn::runtime::detail::ws_write_gate<fake_stream> gate{
    fake_stream{&ioc, &log, &pending}};

  /// Completes the oldest pending write of the stream below.
  void complete_next(size_t n) {
    REQUIRE(!pending.empty());
    auto h = std::move(pending.front());
    pending.erase(pending.begin());
    h(error_code{}, n);
  }
};

} // namespace

TEST_SUITE("runtime.ws_write_gate") {

TEST_CASE_FIXTURE(fixture, "a write of Beast's waits for the session's frame") {
  gate.raw_begin();  // the session's frame is half written
  bool done = false;
  std::string pong = "PONG";
  gate.async_write_some(asio::buffer(pong), [&](error_code, size_t) { done = true; });
  CHECK(log.empty());          // not started while the frame is unfinished
  CHECK(gate.lower_busy());    // and the session sees the gate as taken
  gate.raw_end();              // the frame is complete
  REQUIRE(log == std::vector<std::string>{"lower:PONG"});
  CHECK(!done);
  complete_next(4);
  CHECK(done);
  CHECK(!gate.lower_busy());
}

TEST_CASE_FIXTURE(fixture, "the session is told when Beast's write is over") {
  std::string ping = "PING";
  std::vector<std::string> order;
  gate.async_write_some(asio::buffer(ping),
                        [&](error_code, size_t) { order.push_back("beast"); });
  CHECK(gate.lower_busy());
  gate.notify_idle([&] { order.push_back("session"); });
  complete_next(4);
  CHECK(order == std::vector<std::string>{"beast", "session"});
  CHECK(!gate.lower_busy());
}

TEST_CASE_FIXTURE(fixture, "a composed write of Beast's is one busy span") {
  // Beast's frame written in two write_some calls: the second starts from
  // the completion of the first, and the session is told only after it.
  std::string frame = "FRAME";
  std::vector<std::string> order;
  gate.async_write_some(asio::buffer(frame), [&](error_code, size_t) {
    order.push_back("part 1");
    gate.async_write_some(asio::buffer(frame.data() + 2, 3),
                          [&](error_code, size_t) { order.push_back("part 2"); });
  });
  gate.notify_idle([&] { order.push_back("session"); });
  complete_next(2);
  CHECK(order == std::vector<std::string>{"part 1"});
  CHECK(gate.lower_busy());
  complete_next(3);
  CHECK(order == std::vector<std::string>{"part 1", "part 2", "session"});
  CHECK(log == std::vector<std::string>{"lower:FRAME", "lower:AME"});
}

TEST_CASE_FIXTURE(fixture, "without the session's frame Beast writes at once") {
  std::string close = "CLOSE";
  gate.async_write_some(asio::buffer(close), [](error_code, size_t) {});
  CHECK(log == std::vector<std::string>{"lower:CLOSE"});
  complete_next(5);
  gate.raw_begin();
  gate.raw_end();  // nothing waited: nothing started
  CHECK(log.size() == 1);
}

}
