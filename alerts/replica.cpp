#include "alerts/replica.hpp"

#include "cqrs/series_key.hpp"

#include <algorithm>
#include <unordered_map>

namespace cairn::alerts {

bool newer(const stamp& a, const stamp& b) noexcept {
  if (a.clock != b.clock)
    return a.clock > b.clock;
  return a.origin > b.origin;
}

std::string rule_item_key(std::string_view name) {
  std::string k = "r/";
  k += name;
  return k;
}

std::string instance_item_key(std::string_view rule, std::string_view group) {
  std::string k = "i/";
  k += rule;
  k += '\0';
  k += group;
  return k;
}

bool is_instance_key(std::string_view key) noexcept {
  return key.size() >= 2 && key[0] == 'i' && key[1] == '/';
}

std::string_view rule_name_of(std::string_view key) noexcept {
  return key.size() >= 2 ? key.substr(2) : std::string_view{};
}

std::string_view instance_rule_of(std::string_view key) noexcept {
  auto rest = rule_name_of(key);
  auto nul = rest.find('\0');
  return nul == std::string_view::npos ? rest : rest.substr(0, nul);
}

bool replica_set::covered(const replica_item& x) noexcept {
  return !(x.deleted && is_instance_key(x.key));
}

uint64_t replica_set::hash_of(const replica_item& x) noexcept {
  std::string text = x.key;
  text += '\0';
  text += std::to_string(x.st.clock);
  text += '\0';
  text += x.st.origin;
  text += x.deleted ? "\0d" : "\0l";
  return cqrs::series_hash(text);
}

void replica_set::account(const replica_item& x, bool) noexcept {
  // XOR: adding and removing are the same operation.
  if (covered(x))
    digest_ ^= hash_of(x);
}

const replica_item& replica_set::write(const std::string& key,
                                       std::string value, bool deleted,
                                       const std::string& origin,
                                       cqrs::millis at) {
  auto& slot = items_[key];
  uint64_t clock = 1;
  if (!slot.key.empty()) {
    clock = slot.st.clock + 1;
    account(slot, false);
  }
  slot.key = key;
  slot.st = {clock, origin};
  slot.deleted = deleted;
  slot.value = deleted ? std::string{} : std::move(value);
  slot.at = at;
  account(slot, true);
  return slot;
}

bool replica_set::merge(replica_item item) {
  auto it = items_.find(item.key);
  if (it != items_.end()) {
    if (!newer(item.st, it->second.st))
      return false;
    account(it->second, false);
    it->second = std::move(item);
    account(it->second, true);
    return true;
  }
  auto key = item.key;
  auto& slot = items_[key];
  slot = std::move(item);
  account(slot, true);
  return true;
}

const replica_item* replica_set::find(const std::string& key) const {
  auto it = items_.find(key);
  return it == items_.end() ? nullptr : &it->second;
}

size_t replica_set::expire(cqrs::millis before) {
  size_t n = 0;
  for (auto it = items_.begin(); it != items_.end();) {
    if (it->second.deleted && is_instance_key(it->first)
        && it->second.at < before) {
      it = items_.erase(it);  // not covered: the digest is unchanged
      ++n;
    } else {
      ++it;
    }
  }
  return n;
}

void replica_set::drop_instances_of(std::string_view name) {
  auto prefix = instance_item_key(name, {});  // "i/<name>\0"
  for (auto it = items_.lower_bound(prefix);
       it != items_.end()
       && it->first.compare(0, prefix.size(), prefix) == 0;) {
    account(it->second, false);
    it = items_.erase(it);
  }
}

void replica_set::for_each_covered(
  const std::function<void(const replica_item&)>& f) const {
  for (auto& [key, x] : items_)
    if (covered(x))
      f(x);
}

void replica_set::diff(const std::vector<std::pair<std::string, stamp>>& theirs,
                       std::vector<std::string>& push,
                       std::vector<std::string>& pull) const {
  std::unordered_map<std::string_view, const stamp*> seen;
  seen.reserve(theirs.size());
  for (auto& [key, st] : theirs) {
    seen.emplace(key, &st);
    auto it = items_.find(key);
    if (it == items_.end() || newer(st, it->second.st))
      pull.push_back(key);
    else if (newer(it->second.st, st))
      push.push_back(key);
  }
  for (auto& [key, x] : items_)
    if (covered(x) && seen.count(key) == 0)
      push.push_back(key);
}

std::string rule_owner(std::string_view name,
                       const std::vector<std::string>& live) {
  std::string best;
  uint64_t best_hash = 0;
  for (auto& m : live) {
    std::string text = m;
    text += '\0';
    text += name;
    auto hash = cqrs::series_hash(text);
    if (best.empty() || hash > best_hash || (hash == best_hash && m < best)) {
      best = m;
      best_hash = hash;
    }
  }
  return best;
}

std::string rule_owner(std::string_view name, cqrs::millis window,
                       const std::vector<member_age>& live,
                       cqrs::millis slack) {
  std::vector<std::string> warm, all;
  for (auto& m : live) {
    all.push_back(m.name);
    if (m.up_for >= window + slack)
      warm.push_back(m.name);
  }
  return rule_owner(name, warm.empty() ? all : warm);
}

} // namespace cairn::alerts
