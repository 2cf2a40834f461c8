#include "cqrs/idempotency_window.hpp"

#include "cqrs/detail/binary.hpp"

#include <algorithm>
#include <utility>

namespace cairn::cqrs {

namespace {

/// Version byte of the encoding (docs/storage-format.md).
constexpr uint8_t window_format_version = 1;

} // namespace

idempotency_window::idempotency_window(size_t max_keys, millis window)
  : max_keys_(std::max<size_t>(max_keys, 1)),
    window_(std::max<millis>(window, 0)) {
  // nop
}

idempotency_window::idempotency_window(const idempotency_window& other)
  : max_keys_(other.max_keys_), window_(other.window_), order_(other.order_) {
  rebuild_index();
}

idempotency_window&
idempotency_window::operator=(const idempotency_window& other) {
  if (this != &other) {
    max_keys_ = other.max_keys_;
    window_ = other.window_;
    order_ = other.order_;
    rebuild_index();
  }
  return *this;
}

// Moving a deque steals its node storage: the elements (short strings'
// inline buffers included) keep their addresses, so the views in the moved
// index stay valid.
idempotency_window::idempotency_window(idempotency_window&& other) noexcept
  : max_keys_(other.max_keys_),
    window_(other.window_),
    order_(std::move(other.order_)),
    index_(std::move(other.index_)) {
  other.index_.clear();
  other.order_.clear();
}

idempotency_window&
idempotency_window::operator=(idempotency_window&& other) noexcept {
  if (this != &other) {
    max_keys_ = other.max_keys_;
    window_ = other.window_;
    order_ = std::move(other.order_);
    index_ = std::move(other.index_);
    other.index_.clear();
    other.order_.clear();
  }
  return *this;
}

idempotency_window::~idempotency_window() = default;

bool idempotency_window::contains(std::string_view key) const {
  return index_.count(key) > 0;
}

void idempotency_window::insert(std::string key, millis now) {
  if (key.empty() || contains(key))
    return;
  if (!order_.empty())
    now = std::max(now, order_.back().at);
  order_.push_back(entry{std::move(key), now});
  index_.insert(std::string_view{order_.back().key});
  while (order_.size() > max_keys_)
    pop_oldest();
}

void idempotency_window::expire(millis now) {
  if (window_ <= 0)
    return;
  while (!order_.empty() && order_.front().at <= now - window_)
    pop_oldest();
}

void idempotency_window::clear() {
  index_.clear();
  order_.clear();
}

void idempotency_window::pop_oldest() {
  index_.erase(std::string_view{order_.front().key});
  order_.pop_front();
}

void idempotency_window::rebuild_index() {
  index_.clear();
  index_.reserve(order_.size());
  for (const auto& e : order_)
    index_.insert(std::string_view{e.key});
}

// Encoding: version byte, varint count, then per key (oldest first)
// svarint time delta to the previous key (first: absolute), varint length,
// key bytes.
void idempotency_window::encode(std::string& out) const {
  out.push_back(static_cast<char>(window_format_version));
  detail::put_varint(out, order_.size());
  millis prev = 0;
  for (const auto& e : order_) {
    detail::put_svarint(out, e.at - prev);
    prev = e.at;
    detail::put_varint(out, e.key.size());
    out.append(e.key);
  }
}

bool idempotency_window::decode(std::string_view in) {
  if (in.empty() || static_cast<uint8_t>(in[0]) != window_format_version)
    return false;
  in.remove_prefix(1);
  detail::reader r{in};
  uint64_t count = 0;
  if (!r.varint(count) || count > in.size())
    return false;
  std::deque<entry> keys;
  millis prev = 0;
  for (uint64_t i = 0; i < count; ++i) {
    int64_t delta = 0;
    uint64_t len = 0;
    std::string_view key;
    if (!r.svarint(delta) || !r.varint(len) || !r.bytes(len, key)
        || key.empty())
      return false;
    auto at = prev + delta;
    if (i > 0 && at < prev)
      return false;
    prev = at;
    keys.push_back(entry{std::string{key}, at});
  }
  if (!in.empty())
    return false;
  while (keys.size() > max_keys_)
    keys.pop_front();
  // Duplicates cannot come from encode; reject them as malformed.
  std::unordered_set<std::string_view> index;
  index.reserve(keys.size());
  for (const auto& e : keys)
    if (!index.insert(std::string_view{e.key}).second)
      return false;
  order_ = std::move(keys);
  index_ = std::move(index);
  return true;
}

bool operator==(const idempotency_window& x, const idempotency_window& y) {
  if (x.order_.size() != y.order_.size())
    return false;
  for (size_t i = 0; i < x.order_.size(); ++i)
    if (x.order_[i].key != y.order_[i].key || x.order_[i].at != y.order_[i].at)
      return false;
  return true;
}

size_t idempotency_window::memory_usage() const noexcept {
  // Entries in deque chunks, long keys on the heap, one hash node each
  // (view + hash + next pointer + malloc header) and the bucket array.
  size_t bytes = order_.size() * sizeof(entry)
                 + index_.bucket_count() * sizeof(void*)
                 + index_.size() * (sizeof(std::string_view) + 32);
  for (auto& e : order_)
    if (e.key.capacity() > 15)
      bytes += e.key.capacity() + 1 + 16;
  return bytes;
}

} // namespace cairn::cqrs
