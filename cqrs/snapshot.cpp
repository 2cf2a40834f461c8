#include "cqrs/snapshot.hpp"

#include "cqrs/idempotency_window.hpp"
#include "cqrs/journal_record.hpp"
#include "cqrs/series_store.hpp"
#include "runtime/journal.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

namespace cairn::cqrs {

// -- envelope -----------------------------------------------------------------

namespace {

constexpr char magic[4] = {'C', 'S', 'N', 'P'};

/// magic + version + partition + covered seq + taken at.
constexpr size_t fixed_header_size = 4 + 1 + 4 + 8 + 8;
constexpr size_t length_size = 8;
constexpr size_t crc_size = 4;

void append_fixed(std::string& out, uint64_t x, int bytes) {
  for (int i = 0; i < bytes; ++i)
    out.push_back(static_cast<char>(x >> (8 * i)));
}

void patch_fixed64(std::string& out, size_t pos, uint64_t x) {
  for (int i = 0; i < 8; ++i)
    out[pos + static_cast<size_t>(i)] = static_cast<char>(x >> (8 * i));
}

uint64_t get_fixed(const char* p, int bytes) {
  uint64_t x = 0;
  for (int i = bytes - 1; i >= 0; --i)
    x = (x << 8) | static_cast<uint8_t>(p[i]);
  return x;
}

void append_header(const snapshot_header& header, std::string& out) {
  out.append(magic, 4);
  out.push_back(static_cast<char>(snapshot_version));
  append_fixed(out, header.partition, 4);
  append_fixed(out, header.covered_seq, 8);
  append_fixed(out, static_cast<uint64_t>(header.taken_at), 8);
}

void append_crc(std::string& out, size_t start) {
  auto crc = crc32c(std::string_view{out}.substr(start));
  append_fixed(out, crc, 4);
}

} // namespace

std::string_view to_string(snapshot_result r) noexcept {
  switch (r) {
    case snapshot_result::ok:
      return "ok";
    case snapshot_result::bad_magic:
      return "bad_magic";
    case snapshot_result::bad_version:
      return "bad_version";
    case snapshot_result::bad_checksum:
      return "bad_checksum";
    case snapshot_result::truncated:
      return "truncated";
    case snapshot_result::malformed:
      return "malformed";
  }
  return "unknown";
}

void encode_snapshot(const snapshot_header& header, std::string_view projection,
                     std::string_view idempotency, std::string& out) {
  auto start = out.size();
  out.reserve(start + fixed_header_size + 2 * length_size + projection.size()
              + idempotency.size() + crc_size);
  append_header(header, out);
  append_fixed(out, projection.size(), 8);
  out.append(projection);
  append_fixed(out, idempotency.size(), 8);
  out.append(idempotency);
  append_crc(out, start);
}

void encode_snapshot(const snapshot_header& header, const series_store& store,
                     const idempotency_window& keys, std::string& out) {
  auto start = out.size();
  append_header(header, out);
  // Lengths are patched in after encoding each part in place.
  auto projection_len_pos = out.size();
  append_fixed(out, 0, 8);
  store.encode(out);
  patch_fixed64(out, projection_len_pos,
                out.size() - projection_len_pos - length_size);
  auto keys_len_pos = out.size();
  append_fixed(out, 0, 8);
  keys.encode(out);
  patch_fixed64(out, keys_len_pos, out.size() - keys_len_pos - length_size);
  append_crc(out, start);
}

snapshot_result decode_snapshot(std::string_view in, snapshot_view& out) {
  if (auto n = std::min<size_t>(in.size(), 4);
      n > 0 && std::memcmp(in.data(), magic, n) != 0)
    return snapshot_result::bad_magic;
  if (in.size() < 5)
    return snapshot_result::truncated;
  if (static_cast<uint8_t>(in[4]) != snapshot_version)
    return snapshot_result::bad_version;
  if (in.size() < fixed_header_size + length_size)
    return snapshot_result::truncated;
  const char* p = in.data();
  out.header.partition = static_cast<uint32_t>(get_fixed(p + 5, 4));
  out.header.covered_seq = get_fixed(p + 9, 8);
  out.header.taken_at = static_cast<millis>(get_fixed(p + 17, 8));
  size_t pos = fixed_header_size;
  auto projection_len = get_fixed(p + pos, 8);
  pos += length_size;
  if (projection_len > in.size() - pos)
    return snapshot_result::truncated;
  out.projection = in.substr(pos, projection_len);
  pos += projection_len;
  if (in.size() - pos < length_size)
    return snapshot_result::truncated;
  auto keys_len = get_fixed(p + pos, 8);
  pos += length_size;
  if (keys_len > in.size() - pos)
    return snapshot_result::truncated;
  out.idempotency = in.substr(pos, keys_len);
  pos += keys_len;
  if (in.size() - pos < crc_size)
    return snapshot_result::truncated;
  auto stored_crc = static_cast<uint32_t>(get_fixed(p + pos, 4));
  if (crc32c(in.substr(0, pos)) != stored_crc)
    return snapshot_result::bad_checksum;
  if (in.size() != pos + crc_size)
    return snapshot_result::malformed;
  return snapshot_result::ok;
}

// -- recovery -----------------------------------------------------------------

namespace {

/// Tries the snapshot of `partition` at `seq`; on failure returns the reason.
std::string try_snapshot(const runtime::journal& j, uint32_t partition,
                         uint64_t seq, series_store& store,
                         idempotency_window& keys) {
  auto bytes = j.read_snapshot(partition, seq);
  if (!bytes)
    return "unreadable";
  snapshot_view view;
  if (auto r = decode_snapshot(*bytes, view); r != snapshot_result::ok)
    return std::string{to_string(r)};
  if (view.header.partition != partition || view.header.covered_seq != seq)
    return "header names partition " + std::to_string(view.header.partition)
           + " seq " + std::to_string(view.header.covered_seq);
  // Decode the keys into a copy first: both parts succeed or neither does.
  auto restored_keys = keys;
  if (!restored_keys.decode(view.idempotency))
    return "idempotency window does not decode";
  if (!store.decode(view.projection))
    return "projection does not decode (version mismatch or malformed)";
  keys = std::move(restored_keys);
  return {};
}

} // namespace

restore_report restore_partition(const runtime::journal& j, uint32_t partition,
                                 series_store& store, idempotency_window& keys,
                                 restore_options opts) {
  restore_report report;
  // 1. The newest snapshot that reads, checks and decodes.
  auto seqs = j.snapshot_seqs(partition);
  for (auto seq : seqs) {
    auto reason = try_snapshot(j, partition, seq, store, keys);
    if (reason.empty()) {
      report.snapshot_seq = seq;
      break;
    }
    ++report.snapshots_rejected;
    spdlog::warn("partition {}: snapshot covering seq {} rejected ({}); "
                 "falling back to the previous snapshot",
                 partition, seq, reason);
  }
  if (!seqs.empty() && report.snapshot_seq == 0)
    spdlog::warn("partition {}: no valid snapshot among {}; replaying the "
                 "whole journal",
                 partition, seqs.size());
  // 2. Replay the journal after it, in seq order.
  uint64_t expected = report.snapshot_seq + 1;
  journal_record rec;
  // Records name series through the dictionary the partition's records
  // build up since their last reset; the record after a snapshot is a reset
  // (docs/storage-format.md), so replay starts from an empty one.
  series_dictionary dict;
  auto fail = [&](std::string message) {
    report.ok = false;
    report.error = std::move(message);
    spdlog::error("{}", report.error);
    return false;
  };
  auto replay = [&](uint64_t seq, std::string_view bytes) {
    if (seq != expected) {
      auto message = "partition " + std::to_string(partition)
                     + ": journal records " + std::to_string(expected) + ".."
                     + std::to_string(seq - 1) + " are missing";
      if (!opts.skip_corrupt)
        return fail(message + " (set skip-corrupt=true to start anyway)");
      spdlog::warn("{}; skipped (skip-corrupt)", message);
      report.records_skipped += seq - expected;
    }
    expected = seq + 1;
    if (auto r = decode_record(bytes, rec, dict); r != decode_result::ok) {
      auto message = "partition " + std::to_string(partition)
                     + ": corrupt journal record at seq " + std::to_string(seq)
                     + " (" + std::string{to_string(r)} + ")";
      if (r == decode_result::malformed && report.records_skipped > 0)
        message += " - it names series defined by a skipped record; records "
                   "decode again from the next dictionary reset";
      if (!opts.skip_corrupt)
        return fail(message + " (set skip-corrupt=true to skip it)");
      spdlog::warn("{}; skipped (skip-corrupt)", message);
      ++report.records_skipped;
      return true;
    }
    if (!rec.idempotency_key.empty()) {
      keys.expire(rec.accepted_at);
      keys.insert(std::move(rec.idempotency_key), rec.accepted_at);
    }
    store.apply(rec.events);
    ++report.records_replayed;
    report.events_replayed += rec.events.size();
    return true;
  };
  // Replayed history older than the lateness horizon is sealed as it is
  // applied (series_store::set_clock), so recovery never holds the whole
  // journal as open buckets.
  store.set_clock(wall_clock_now());
  (void) store.seal(wall_clock_now());
  try {
    j.scan(partition, report.snapshot_seq + 1, replay);
  } catch (const std::exception& ex) {
    // LevelDB itself reported corruption or an I/O error.
    fail("partition " + std::to_string(partition)
         + ": cannot read the journal: " + ex.what());
  }
  (void) store.seal(wall_clock_now());
  report.next_seq = std::max(expected, report.snapshot_seq + 1);
  return report;
}

} // namespace cairn::cqrs
