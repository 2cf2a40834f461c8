#include "actors/hint_queue.hpp"

#include <algorithm>

namespace cairn::actors {

uint64_t hint_queue::push(cqrs::hint_record rec, uint64_t events,
                          uint64_t announce) {
  entry e;
  e.seq = next_seq_++;
  e.bytes = rec.bytes();
  e.events = events;
  e.rec = std::move(rec);
  e.announce = announce;
  e.waiting_client = true;
  bytes_ += e.bytes;
  entries_.push_back(std::move(e));
  return entries_.back().seq;
}

void hint_queue::load(uint64_t seq, cqrs::hint_record rec) {
  entry e;
  e.seq = seq;
  e.bytes = rec.bytes();
  for (auto& b : rec.batches)
    e.events += b.size();
  e.rec = std::move(rec);
  e.durable = true;
  next_seq_ = std::max(next_seq_, seq + 1);
  bytes_ += e.bytes;
  // The store hands them over in seq order; keep the queue sorted anyway.
  auto pos = std::upper_bound(entries_.begin(), entries_.end(), seq,
                              [](uint64_t s, const entry& x) {
                                return s < x.seq;
                              });
  entries_.insert(pos, std::move(e));
}

hint_queue::entry* hint_queue::find_mut(uint64_t seq) {
  // Entries are sorted by seq.
  auto it = std::lower_bound(entries_.begin(), entries_.end(), seq,
                             [](const entry& x, uint64_t s) {
                               return x.seq < s;
                             });
  return it != entries_.end() && it->seq == seq ? &*it : nullptr;
}

const hint_queue::entry* hint_queue::find(uint64_t seq) const {
  return const_cast<hint_queue*>(this)->find_mut(seq);
}

void hint_queue::mark_durable(uint64_t seq) {
  if (auto* e = find_mut(seq))
    e->durable = true;
}

std::optional<hint_queue::entry> hint_queue::drop(uint64_t seq) {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [seq](const entry& x) { return x.seq == seq; });
  if (it == entries_.end())
    return std::nullopt;
  auto out = std::move(*it);
  bytes_ -= out.bytes;
  entries_.erase(it);
  return out;
}

size_t hint_queue::in_flight() const noexcept {
  return static_cast<size_t>(
    std::count_if(entries_.begin(), entries_.end(),
                  [](const entry& e) { return e.sent && !e.delivered; }));
}

std::vector<uint64_t> hint_queue::next_to_send(size_t credits) {
  std::vector<uint64_t> out;
  auto n = in_flight();
  for (auto& e : entries_) {
    if (n >= credits)
      break;
    if (e.sent || e.delivered)
      continue;
    e.sent = true;
    e.epoch = epoch_;
    ++n;
    out.push_back(e.seq);
  }
  return out;
}

void hint_queue::on_delivered(uint64_t seq) {
  if (auto* e = find_mut(seq)) {
    e->delivered = true;
    e->sent = false;
  }
}

bool hint_queue::on_failed(uint64_t epoch) {
  if (epoch != epoch_)
    return false;
  restart_epoch();
  return true;
}

void hint_queue::restart_epoch() {
  ++epoch_;
  for (auto& e : entries_)
    if (!e.delivered)
      e.sent = false;
}

hint_queue::popped hint_queue::pop_delivered() {
  popped out;
  while (!entries_.empty() && entries_.front().delivered
         && entries_.front().durable) {
    auto& e = entries_.front();
    out.upto = e.seq;
    ++out.count;
    out.bytes += e.bytes;
    if (e.waiting_client)
      out.answer.emplace_back(e.seq, e.events);
    bytes_ -= e.bytes;
    entries_.pop_front();
  }
  return out;
}

std::vector<uint64_t> hint_queue::settle(uint64_t announce_done) {
  std::vector<uint64_t> out;
  for (auto& e : entries_)
    if (e.waiting_client && e.durable && e.announce <= announce_done) {
      e.waiting_client = false;
      out.push_back(e.seq);
    }
  return out;
}

std::vector<uint32_t> hint_queue::partitions() const {
  std::vector<uint32_t> out;
  for (auto& e : entries_)
    out.insert(out.end(), e.rec.partitions.begin(), e.rec.partitions.end());
  return out;
}

} // namespace cairn::actors
