// basp_frame_checker: checks the frames a client sends on the cluster port
// before any of its bytes reach CAF (docs/cluster.md, "Cluster gate").
//
// CAF 0.17's BASP broker reads a 32-byte header and then resizes its receive
// buffer to the header's payload length, up to 4 GiB, before a single payload
// byte has arrived; it has no option to cap that. The cluster gate therefore
// parses the client's byte stream itself: a header with an unknown operation,
// a header CAF would reject as malformed, a first frame that is not a client
// handshake, or a payload length above the cap ends the connection before the
// header is passed on.
//
// Wire form of a BASP header (CAF 0.17.6 `caf/io/basp/header.hpp`, serialized
// by CAF's binary serializer, integers in network byte order):
//
//     operation u8 | padding u8 | padding u8 | flags u8 | payload_len u32 |
//     operation_data u64 | source_actor u64 | dest_actor u64
//
// followed by payload_len payload bytes. Pure value type: no I/O, no threads;
// one instance per connection direction, used by one thread at a time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace cairn::runtime {

/// Why the checker refused a stream.
enum class basp_frame_error : uint8_t {
  /// Every byte seen so far belongs to an acceptable frame.
  none,
  /// The operation byte is not a BASP message type a client may send.
  bad_operation,
  /// The header's fields contradict its operation (CAF would drop it).
  bad_header,
  /// The first frame of the connection is not a client handshake.
  not_a_handshake,
  /// The payload length exceeds the configured cap.
  too_large,
};

/// "none", "bad_operation", "bad_header", "not_a_handshake", "too_large".
std::string_view to_string(basp_frame_error e) noexcept;

/// The fields of one decoded BASP header.
struct basp_header {
  uint8_t operation = 0;
  uint8_t flags = 0;
  uint32_t payload_len = 0;
  uint64_t operation_data = 0;
  uint64_t source_actor = 0;
  uint64_t dest_actor = 0;
};

/// BASP operations (caf::io::basp::message_type in CAF 0.17.6).
namespace basp_op {
inline constexpr uint8_t server_handshake = 0x00;
inline constexpr uint8_t client_handshake = 0x01;
inline constexpr uint8_t direct_message = 0x02;
inline constexpr uint8_t routed_message = 0x03;
inline constexpr uint8_t monitor_message = 0x04;
inline constexpr uint8_t down_message = 0x05;
inline constexpr uint8_t heartbeat = 0x06;
} // namespace basp_op

inline constexpr size_t basp_header_size = 32;

/// Decodes the 32 bytes at `bytes` (network byte order).
basp_header decode_basp_header(const uint8_t* bytes) noexcept;

/// Encodes `hdr` into 32 bytes (tests and tools).
std::array<uint8_t, basp_header_size>
encode_basp_header(const basp_header& hdr) noexcept;

/// The checks a header from a client must pass, `first` telling whether it
/// is the connection's first frame. Returns none if it is acceptable.
[[nodiscard]] basp_frame_error
check_client_header(const basp_header& hdr, bool first, uint32_t max_payload,
                    uint32_t max_handshake_payload) noexcept;

class basp_frame_checker {
public:
  /// `max_payload`: largest payload accepted after the handshake;
  /// `max_handshake_payload`: largest payload of the first frame (a client
  /// handshake carries one node id, a few dozen bytes).
  explicit basp_frame_checker(uint32_t max_payload,
                              uint32_t max_handshake_payload = 64 * 1024)
    : max_payload_(max_payload),
      max_handshake_payload_(max_handshake_payload) {
    // nop
  }

  /// Scans the next bytes of the client's stream (any split is fine).
  /// Returns none if all of them belong to acceptable frames; otherwise the
  /// first error, and every later call returns it again.
  [[nodiscard]] basp_frame_error feed(std::span<const uint8_t> bytes) noexcept;

  // -- properties -------------------------------------------------------------

  /// The first frame (the client handshake) arrived completely.
  bool handshake_done() const noexcept { return frames_ > 0; }

  /// Complete frames seen.
  uint64_t frames() const noexcept { return frames_; }

  /// The error feed returned, none if it never failed.
  basp_frame_error error() const noexcept { return error_; }

  /// The last header decoded (the offending one after an error).
  const basp_header& last_header() const noexcept { return hdr_; }

private:
  uint32_t max_payload_;
  uint32_t max_handshake_payload_;
  std::array<uint8_t, basp_header_size> buf_{};
  size_t have_ = 0;          ///< header bytes collected in buf_
  uint64_t payload_left_ = 0;
  bool in_payload_ = false;
  uint64_t frames_ = 0;
  basp_header hdr_;
  basp_frame_error error_ = basp_frame_error::none;
};

} // namespace cairn::runtime
