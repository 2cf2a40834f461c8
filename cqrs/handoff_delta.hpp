// handoff_delta: what a partition applied between the pre-copy of a handoff
// and its freeze (docs/sagas.md, "Pre-copy").
//
// A move first ships a snapshot of the partition while it still takes
// writes (the base), then freezes it and ships only the batches applied
// since the base, in the order they were applied. The target applies them
// to the base it holds and makes the result durable as one import, so the
// write pause covers the delta only. The delta names its base by the base
// export's CRC-32C: a target that does not hold that base (it restarted, or
// got another one) refuses the delta and the source ships a full snapshot.
//
// Encoding (docs/storage-format.md, "Handoff delta"): magic "CDLT", version
// byte, the base's CRC-32C (u32 LE), varint record count, then per record a
// varint length and a journal record (cqrs/journal_record.hpp, version 2,
// one series dictionary across the delta, reset at the first record), and a
// CRC-32C (u32 LE) of everything before it.
//
// Pure functions, no threads.
#pragma once

#include "cqrs/journal_record.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cairn::cqrs {

/// Version byte written by encode_handoff_delta.
inline constexpr uint8_t handoff_delta_version = 1;

/// True if `bytes` starts like a delta (its magic); a snapshot envelope
/// starts with "CSNP" and never matches.
[[nodiscard]] bool is_handoff_delta(std::string_view bytes) noexcept;

/// Appends the encoding of `records` (applied after the base whose export
/// had CRC `base_crc`) to `out`.
void encode_handoff_delta(uint32_t base_crc,
                          const std::vector<journal_record>& records,
                          std::string& out);

/// Decodes a delta spanning all of `in`. False (the outputs unspecified) if
/// the magic, version or CRC do not match, a record does not decode, or the
/// input is truncated or has trailing bytes.
[[nodiscard]] bool decode_handoff_delta(std::string_view in, uint32_t& base_crc,
                                        std::vector<journal_record>& records);

} // namespace cairn::cqrs
