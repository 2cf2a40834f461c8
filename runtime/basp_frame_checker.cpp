#include "runtime/basp_frame_checker.hpp"

#include <algorithm>

namespace cairn::runtime {

std::string_view to_string(basp_frame_error e) noexcept {
  switch (e) {
    case basp_frame_error::none:
      return "none";
    case basp_frame_error::bad_operation:
      return "bad_operation";
    case basp_frame_error::bad_header:
      return "bad_header";
    case basp_frame_error::not_a_handshake:
      return "not_a_handshake";
    case basp_frame_error::too_large:
      return "too_large";
  }
  return "unknown";
}

namespace {

uint64_t load_be(const uint8_t* p, size_t n) noexcept {
  uint64_t x = 0;
  for (size_t i = 0; i < n; ++i)
    x = (x << 8) | p[i];
  return x;
}

void store_be(uint8_t* p, uint64_t x, size_t n) noexcept {
  for (size_t i = n; i-- > 0;) {
    p[i] = static_cast<uint8_t>(x & 0xff);
    x >>= 8;
  }
}

} // namespace

basp_header decode_basp_header(const uint8_t* bytes) noexcept {
  basp_header hdr;
  hdr.operation = bytes[0];
  hdr.flags = bytes[3];
  hdr.payload_len = static_cast<uint32_t>(load_be(bytes + 4, 4));
  hdr.operation_data = load_be(bytes + 8, 8);
  hdr.source_actor = load_be(bytes + 16, 8);
  hdr.dest_actor = load_be(bytes + 24, 8);
  return hdr;
}

std::array<uint8_t, basp_header_size>
encode_basp_header(const basp_header& hdr) noexcept {
  std::array<uint8_t, basp_header_size> out{};
  out[0] = hdr.operation;
  out[3] = hdr.flags;
  store_be(out.data() + 4, hdr.payload_len, 4);
  store_be(out.data() + 8, hdr.operation_data, 8);
  store_be(out.data() + 16, hdr.source_actor, 8);
  store_be(out.data() + 24, hdr.dest_actor, 8);
  return out;
}

basp_frame_error check_client_header(const basp_header& hdr, bool first,
                                     uint32_t max_payload,
                                     uint32_t max_handshake_payload) noexcept {
  using enum basp_frame_error;
  // The field rules are CAF 0.17.6's `valid(header)` (a header failing them
  // makes CAF drop the connection anyway), plus: handshakes must carry a
  // payload (CAF dereferences the missing payload of an empty one), and a
  // client never sends a server handshake.
  bool ok = false;
  switch (hdr.operation) {
    case basp_op::client_handshake:
      ok = hdr.source_actor == 0 && hdr.dest_actor == 0 && hdr.payload_len > 0;
      break;
    case basp_op::direct_message:
    case basp_op::routed_message:
      ok = hdr.dest_actor != 0 && hdr.payload_len > 0;
      break;
    case basp_op::monitor_message:
      ok = hdr.payload_len > 0 && hdr.operation_data == 0;
      break;
    case basp_op::down_message:
      ok = hdr.source_actor != 0 && hdr.dest_actor == 0 && hdr.payload_len > 0
           && hdr.operation_data == 0;
      break;
    case basp_op::heartbeat:
      ok = hdr.source_actor == 0 && hdr.dest_actor == 0 && hdr.payload_len == 0
           && hdr.operation_data == 0;
      break;
    default:
      return bad_operation; // server_handshake or no BASP operation at all
  }
  if (first && hdr.operation != basp_op::client_handshake)
    return not_a_handshake;
  if (hdr.payload_len > (first ? max_handshake_payload : max_payload))
    return too_large;
  return ok ? none : bad_header;
}

basp_frame_error basp_frame_checker::feed(std::span<const uint8_t> bytes) noexcept {
  if (error_ != basp_frame_error::none)
    return error_;
  auto* p = bytes.data();
  auto n = bytes.size();
  while (n > 0) {
    if (in_payload_) {
      // Skip payload bytes without looking at them.
      auto k = static_cast<size_t>(std::min<uint64_t>(payload_left_, n));
      p += k;
      n -= k;
      payload_left_ -= k;
      if (payload_left_ == 0) {
        in_payload_ = false;
        ++frames_;
      }
      continue;
    }
    // Collect the next header, possibly across calls.
    auto k = std::min(basp_header_size - have_, n);
    std::copy_n(p, k, buf_.data() + have_);
    have_ += k;
    p += k;
    n -= k;
    if (have_ < basp_header_size)
      break;
    have_ = 0;
    hdr_ = decode_basp_header(buf_.data());
    error_ = check_client_header(hdr_, frames_ == 0, max_payload_,
                                 max_handshake_payload_);
    if (error_ != basp_frame_error::none)
      return error_;
    if (hdr_.payload_len > 0) {
      in_payload_ = true;
      payload_left_ = hdr_.payload_len;
    } else {
      ++frames_;
    }
  }
  return basp_frame_error::none;
}

} // namespace cairn::runtime
