// hint_queue: the bookkeeping of one peer's hinted-handoff queue, without
// CAF (docs/cluster.md, "Hinted handoff" and "The completeness invariant").
//
// Hints are kept in acceptance order. A hint is *durable* once the hint
// store wrote it, *acknowledged* (to the client) once it is durable and the
// announcement it needs is done, *sent* while a delivery attempt is out and
// *delivered* once the owner applied it. Deliveries go out in order, at most
// `credits` at a time, in *epochs*: a failed delivery starts a new epoch in
// which every hint the owner did not apply is sent again, and answers from
// an older epoch can only mark a hint delivered (the owner did apply it),
// never disturb the accounting of the current one. The delivered prefix
// (delivered and durable) leaves the queue.
//
// Owned by one peer_link actor; not thread-safe. The link keeps what is
// CAF's (promises, requests) and calls these functions.
#pragma once

#include "cqrs/hint_record.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

namespace cairn::actors {

class hint_queue {
public:
  struct entry {
    uint64_t seq = 0;
    cqrs::hint_record rec;
    size_t bytes = 0;
    uint64_t events = 0;
    bool durable = false;
    bool sent = false;       ///< out in epoch `epoch`, no answer yet
    bool delivered = false;  ///< the owner applied it
    uint64_t epoch = 0;
    /// The announcement that must be done before its client is answered.
    uint64_t announce = 0;
    /// A client waits for this hint (false for hints loaded at start-up).
    bool waiting_client = false;
  };

  /// What delivered_prefix() removed.
  struct popped {
    uint64_t upto = 0;  ///< highest seq removed (0 = none)
    size_t count = 0;
    size_t bytes = 0;
    /// Removed hints whose client still waited (the owner applied the write,
    /// so the client may be answered even before the announcement is done).
    std::vector<std::pair<uint64_t, uint64_t>> answer;  ///< (seq, events)
  };

  // -- adding -------------------------------------------------------------------

  /// Adds a hint accepted now (not durable yet); a client waits for it.
  /// Returns its seq (1, 2, ... continuing after loaded ones).
  uint64_t push(cqrs::hint_record rec, uint64_t events, uint64_t announce);

  /// Adds a hint found in the store at start-up (durable, nobody waits).
  void load(uint64_t seq, cqrs::hint_record rec);

  // -- the store's answers ----------------------------------------------------

  /// The store wrote hint `seq`.
  void mark_durable(uint64_t seq);

  /// The store failed to write `seq`: it leaves the queue. Returns its
  /// entry (its client must be told), or nothing if unknown.
  std::optional<entry> drop(uint64_t seq);

  // -- delivery -----------------------------------------------------------------

  /// Marks the next hints to send (in order, up to `credits` in flight in
  /// all) as sent in the current epoch and returns their seqs.
  std::vector<uint64_t> next_to_send(size_t credits);

  /// The owner applied `seq` (whatever epoch it was sent in).
  void on_delivered(uint64_t seq);

  /// A delivery sent in `epoch` failed. True if that was the current epoch:
  /// then a new one starts and every undelivered hint is sent again; false
  /// for a stale answer (ignored).
  bool on_failed(uint64_t epoch);

  /// The connection is gone: a new epoch, nothing in flight.
  void restart_epoch();

  /// Removes the delivered prefix (delivered and durable).
  popped pop_delivered();

  // -- answering clients --------------------------------------------------------

  /// Seqs of hints whose client may be answered now (durable and announced
  /// up to `announce_done`); each is returned once.
  std::vector<uint64_t> settle(uint64_t announce_done);

  // -- properties ---------------------------------------------------------------

  const entry* find(uint64_t seq) const;
  /// Partitions of every hint in the queue (unsorted, with repeats).
  std::vector<uint32_t> partitions() const;
  size_t in_flight() const noexcept;
  size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  size_t bytes() const noexcept { return bytes_; }
  uint64_t epoch() const noexcept { return epoch_; }
  uint64_t next_seq() const noexcept { return next_seq_; }
  const std::deque<entry>& entries() const noexcept { return entries_; }

private:
  entry* find_mut(uint64_t seq);

  std::deque<entry> entries_;
  uint64_t next_seq_ = 1;
  uint64_t epoch_ = 0;
  size_t bytes_ = 0;
};

} // namespace cairn::actors
