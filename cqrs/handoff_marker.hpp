// handoff_marker: the durable bookkeeping of a partition handoff at one node.
//
// A partition being handed off (docs/sagas.md, "Partition handoff") keeps
// one small value under the journal's meta key ('m', partition, 1)
// (runtime::journal::handoff_slot): at the source, "frozen with token T for
// target N since t" (the partition comes back frozen after a restart); at the
// target, "imported with token T at t" (a retried import with T is answered
// complete, a live owner is never clobbered by another token). The encoding
// is specified in docs/storage-format.md ("Handoff marker").
//
// Pure functions, no threads.
#pragma once

#include "cqrs/time.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace cairn::cqrs {

struct handoff_marker {
  enum class kind_t : uint8_t {
    /// The source: writes are held, the export is prepared.
    frozen = 1,
    /// The target: the partition's state came from an import.
    imported = 2,
  };
  kind_t kind = kind_t::frozen;
  /// The saga's token (saga id + partition).
  std::string token;
  /// Frozen: the member the partition goes to (informational).
  std::string target;
  /// Wall clock (epoch ms) of the freeze or of the completed import.
  millis at = 0;

  friend bool operator==(const handoff_marker&, const handoff_marker&) = default;
};

/// Version byte written by encode_handoff_marker.
inline constexpr uint8_t handoff_marker_version = 1;

/// Appends the encoding of `m` to `out`.
void encode_handoff_marker(const handoff_marker& m, std::string& out);

/// Decodes a marker spanning all of `in`; false (and `out` unspecified) if
/// the version is unknown, the CRC does not match, the kind is unknown or
/// the input is truncated or has trailing bytes.
[[nodiscard]] bool decode_handoff_marker(std::string_view in,
                                         handoff_marker& out);

} // namespace cairn::cqrs
