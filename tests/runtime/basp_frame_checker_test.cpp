#include "runtime/basp_frame_checker.hpp"

#include <caf/binary_serializer.hpp>
#include <caf/io/basp/header.hpp>
#include <caf/io/basp/message_type.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace cairn::runtime;

namespace {

static_assert(caf::io::basp::header_size == basp_header_size);
static_assert(static_cast<uint8_t>(caf::io::basp::message_type::client_handshake)
              == basp_op::client_handshake);
static_assert(static_cast<uint8_t>(caf::io::basp::message_type::heartbeat)
              == basp_op::heartbeat);
static_assert(static_cast<uint8_t>(caf::io::basp::message_type::down_message)
              == basp_op::down_message);

constexpr uint32_t cap = 1 << 20;

std::vector<uint8_t> frame(const basp_header& hdr, size_t payload_bytes) {
  auto head = encode_basp_header(hdr);
  std::vector<uint8_t> out(head.begin(), head.end());
  out.resize(out.size() + payload_bytes, 0xAB);
  return out;
}

basp_header handshake(uint32_t len = 24) {
  basp_header h;
  h.operation = basp_op::client_handshake;
  h.payload_len = len;
  return h;
}

basp_header direct(uint32_t len, uint64_t dest = 7) {
  basp_header h;
  h.operation = basp_op::direct_message;
  h.payload_len = len;
  h.source_actor = 3;
  h.dest_actor = dest;
  return h;
}

basp_header heartbeat() {
  basp_header h;
  h.operation = basp_op::heartbeat;
  return h;
}

std::vector<uint8_t> concat(std::initializer_list<std::vector<uint8_t>> xs) {
  std::vector<uint8_t> out;
  for (auto& x : xs)
    out.insert(out.end(), x.begin(), x.end());
  return out;
}

} // namespace

TEST_SUITE("runtime.basp_frame_checker") {
  TEST_CASE("our header encoding is CAF's binary serialization") {
    caf::io::basp::header hdr{caf::io::basp::message_type::direct_message,
                              0x02, 0xFFFFFFF0u, 0x0102030405060708ull,
                              42, 4711};
    std::vector<char> buf;
    caf::binary_serializer sink{nullptr, buf};
    REQUIRE(!sink(hdr));
    REQUIRE(buf.size() == basp_header_size);
    auto ours = decode_basp_header(reinterpret_cast<const uint8_t*>(buf.data()));
    CHECK(ours.operation == basp_op::direct_message);
    CHECK(ours.flags == 0x02);
    CHECK(ours.payload_len == 0xFFFFFFF0u);
    CHECK(ours.operation_data == 0x0102030405060708ull);
    CHECK(ours.source_actor == 42);
    CHECK(ours.dest_actor == 4711);
    auto back = encode_basp_header(ours);
    CHECK(std::equal(back.begin(), back.end(),
                     reinterpret_cast<const uint8_t*>(buf.data())));
  }

  TEST_CASE("a valid stream passes however it is split") {
    auto stream = concat({frame(handshake(), 24), frame(heartbeat(), 0),
                          frame(direct(1000), 1000), frame(direct(cap), cap),
                          frame(heartbeat(), 0)});
    for (size_t step : {size_t{1}, size_t{7}, size_t{32}, size_t{4096},
                        stream.size()}) {
      CAPTURE(step);
      basp_frame_checker chk{cap};
      CHECK_FALSE(chk.handshake_done());
      bool ok = true;
      for (size_t off = 0; ok && off < stream.size(); off += step) {
        auto n = std::min(step, stream.size() - off);
        ok = chk.feed({stream.data() + off, n}) == basp_frame_error::none;
      }
      CHECK(ok);
      CHECK(chk.handshake_done());
      CHECK(chk.frames() == 5);
    }
  }

  TEST_CASE("the handshake is done only when its payload arrived") {
    auto hs = frame(handshake(24), 24);
    basp_frame_checker chk{cap};
    REQUIRE(chk.feed({hs.data(), 40}) == basp_frame_error::none);
    CHECK_FALSE(chk.handshake_done());
    REQUIRE(chk.feed({hs.data() + 40, hs.size() - 40})
            == basp_frame_error::none);
    CHECK(chk.handshake_done());
  }

  TEST_CASE("a payload length above the cap is refused at its header") {
    basp_frame_checker chk{cap};
    REQUIRE(chk.feed(frame(handshake(), 24)) == basp_frame_error::none);
    auto huge = frame(direct(0xFFFFFFF0u), 0);
    CHECK(chk.feed(huge) == basp_frame_error::too_large);
    CHECK(chk.last_header().payload_len == 0xFFFFFFF0u);
    // Sticky: nothing after an error is accepted.
    CHECK(chk.feed(frame(heartbeat(), 0)) == basp_frame_error::too_large);
    CHECK(chk.error() == basp_frame_error::too_large);

    basp_frame_checker edge{cap};
    REQUIRE(edge.feed(frame(handshake(), 24)) == basp_frame_error::none);
    CHECK(edge.feed(frame(direct(cap + 1), 0)) == basp_frame_error::too_large);
  }

  TEST_CASE("a large first frame is refused even below the cap") {
    basp_frame_checker chk{cap, 64 * 1024};
    CHECK(chk.feed(frame(handshake(64 * 1024 + 1), 0))
          == basp_frame_error::too_large);
    basp_frame_checker huge{cap};
    CHECK(huge.feed(frame(handshake(0xFFFFFFF0u), 0))
          == basp_frame_error::too_large);
  }

  TEST_CASE("garbage and unknown operations are refused") {
    std::string http = "GET / HTTP/1.1\r\nHost: cairn.example\r\n\r\n";
    REQUIRE(http.size() >= basp_header_size);
    basp_frame_checker chk{cap};
    CHECK(chk.feed({reinterpret_cast<const uint8_t*>(http.data()), http.size()})
          == basp_frame_error::bad_operation);

    basp_frame_checker tls{cap};
    // The start of a TLS ClientHello: record type 0x16.
    std::vector<uint8_t> hello(32, 0);
    hello[0] = 0x16;
    hello[1] = 0x03;
    CHECK(tls.feed(hello) == basp_frame_error::bad_operation);

    basp_frame_checker later{cap};
    REQUIRE(later.feed(frame(handshake(), 24)) == basp_frame_error::none);
    auto bad = heartbeat();
    bad.operation = 0x07;
    CHECK(later.feed(frame(bad, 0)) == basp_frame_error::bad_operation);

    basp_frame_checker server{cap};
    auto sh = handshake();
    sh.operation = basp_op::server_handshake;
    sh.operation_data = 3;
    CHECK(server.feed(frame(sh, 24)) == basp_frame_error::bad_operation);
  }

  TEST_CASE("the first frame must be a client handshake") {
    basp_frame_checker chk{cap};
    CHECK(chk.feed(frame(heartbeat(), 0)) == basp_frame_error::not_a_handshake);
    basp_frame_checker msg{cap};
    CHECK(msg.feed(frame(direct(10), 10)) == basp_frame_error::not_a_handshake);
  }

  TEST_CASE("headers CAF would reject as malformed are refused") {
    auto after_handshake = [](const basp_header& h) {
      basp_frame_checker chk{cap};
      REQUIRE(chk.feed(frame(handshake(), 24)) == basp_frame_error::none);
      return chk.feed(frame(h, 0));
    };
    // A handshake without payload (CAF would read a missing payload).
    basp_frame_checker empty{cap};
    CHECK(empty.feed(frame(handshake(0), 0)) == basp_frame_error::bad_header);
    auto hs = handshake();
    hs.dest_actor = 1;
    basp_frame_checker routed_hs{cap};
    CHECK(routed_hs.feed(frame(hs, 0)) == basp_frame_error::bad_header);
    CHECK(after_handshake(direct(10, 0)) == basp_frame_error::bad_header);
    CHECK(after_handshake(direct(0)) == basp_frame_error::bad_header);
    auto hb = heartbeat();
    hb.payload_len = 4;
    CHECK(after_handshake(hb) == basp_frame_error::bad_header);
    basp_header down;
    down.operation = basp_op::down_message;
    down.payload_len = 8;
    CHECK(after_handshake(down) == basp_frame_error::bad_header); // no source
    down.source_actor = 5;
    CHECK(after_handshake(down) == basp_frame_error::none);
    basp_header mon;
    mon.operation = basp_op::monitor_message;
    mon.payload_len = 8;
    mon.operation_data = 1;
    CHECK(after_handshake(mon) == basp_frame_error::bad_header);
  }

  TEST_CASE("to_string names every error") {
    CHECK(to_string(basp_frame_error::none) == "none");
    CHECK(to_string(basp_frame_error::too_large) == "too_large");
    CHECK(to_string(basp_frame_error::bad_operation) == "bad_operation");
    CHECK(to_string(basp_frame_error::bad_header) == "bad_header");
    CHECK(to_string(basp_frame_error::not_a_handshake) == "not_a_handshake");
  }
}
