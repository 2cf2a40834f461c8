#include "cqrs/partition_map.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <stdexcept>

namespace cairn::cqrs {

partition_map partition_map::initial(std::vector<std::string> nodes,
                                     uint32_t partitions) {
  if (nodes.empty())
    throw std::invalid_argument("partition map needs at least one node");
  if (partitions == 0)
    throw std::invalid_argument("partition map needs at least one partition");
  std::sort(nodes.begin(), nodes.end());
  if (std::adjacent_find(nodes.begin(), nodes.end()) != nodes.end())
    throw std::invalid_argument("duplicate node name in cluster");
  std::vector<uint32_t> owners(partitions);
  for (uint32_t p = 0; p < partitions; ++p)
    owners[p] = p % static_cast<uint32_t>(nodes.size());
  return partition_map{1, std::move(nodes), std::move(owners)};
}

partition_map::partition_map(uint64_t version, std::vector<std::string> nodes,
                             std::vector<uint32_t> owners)
  : partition_map(version, std::move(nodes), std::move(owners), {}) {
}

partition_map::partition_map(uint64_t version, std::vector<std::string> nodes,
                             std::vector<uint32_t> owners,
                             std::vector<uint32_t> left,
                             std::vector<std::string> addresses)
  : version_(version),
    nodes_(std::move(nodes)),
    owners_(std::move(owners)),
    left_(std::move(left)),
    addresses_(std::move(addresses)) {
  auto sorted = nodes_;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    throw std::invalid_argument("partition map nodes must be unique");
  if (addresses_.size() > nodes_.size())
    throw std::invalid_argument("partition map has more addresses than "
                                "members");
  while (!addresses_.empty() && addresses_.back().empty())
    addresses_.pop_back();
  for (auto o : owners_)
    if (o >= nodes_.size())
      throw std::invalid_argument("partition owner index out of range");
  std::sort(left_.begin(), left_.end());
  left_.erase(std::unique(left_.begin(), left_.end()), left_.end());
  for (auto l : left_) {
    if (l >= nodes_.size())
      throw std::invalid_argument("left member index out of range");
    if (std::find(owners_.begin(), owners_.end(), l) != owners_.end())
      throw std::invalid_argument("member " + nodes_[l]
                                  + " left but still owns a partition");
  }
}

bool partition_map::has_left(uint32_t index) const noexcept {
  return std::binary_search(left_.begin(), left_.end(), index);
}

partition_map partition_map::with_owner(uint32_t p, uint32_t index) const {
  if (p >= owners_.size())
    throw std::invalid_argument("partition out of range");
  if (index >= nodes_.size())
    throw std::invalid_argument("member index out of range");
  if (has_left(index))
    throw std::invalid_argument("member " + nodes_[index] + " left");
  auto owners = owners_;
  owners[p] = index;
  return carry(partition_map{version_ + 1, nodes_, std::move(owners), left_,
                             addresses_});
}

partition_map partition_map::with_left(uint32_t index) const {
  if (index >= nodes_.size())
    throw std::invalid_argument("member index out of range");
  auto left = left_;
  left.push_back(index);
  return carry(partition_map{version_ + 1, nodes_, owners_, std::move(left),
                             addresses_});
}

partition_map partition_map::with_evicted(
  uint32_t index, const std::vector<std::pair<uint32_t, uint32_t>>& to,
  std::vector<uint32_t> lost, int64_t at_ms) const {
  if (index >= nodes_.size())
    throw std::invalid_argument("member index out of range");
  if (has_left(index))
    throw std::invalid_argument("member " + nodes_[index] + " left already");
  if (at_ms <= 0)
    throw std::invalid_argument("eviction time must be positive");
  auto owners = owners_;
  for (auto [p, target] : to) {
    if (p >= owners.size() || owners_[p] != index)
      throw std::invalid_argument("eviction moves a partition the member "
                                  "does not own");
    if (target >= nodes_.size() || target == index || has_left(target))
      throw std::invalid_argument("eviction target is not an active member");
    owners[p] = target;
  }
  auto left = left_;
  left.push_back(index);
  // The constructor refuses a left member that still owns a partition, so
  // a plan that misses one of its partitions fails here.
  auto next = carry(partition_map{version_ + 1, nodes_, std::move(owners),
                                  std::move(left), addresses_});
  for (auto p : owned_by(index))
    lost.push_back(p);
  if (next.lost_.empty())
    next.lost_.assign(owners_.size(), 0);
  for (auto p : lost) {
    if (p >= owners_.size())
      throw std::invalid_argument("lost partition out of range");
    next.lost_[p] = std::max(next.lost_[p], at_ms);
  }
  next.evicted_.push_back(index);
  std::sort(next.evicted_.begin(), next.evicted_.end());
  next.evicted_.erase(std::unique(next.evicted_.begin(), next.evicted_.end()),
                      next.evicted_.end());
  return next;
}

partition_map partition_map::with_back(uint32_t index) const {
  if (index >= nodes_.size())
    throw std::invalid_argument("member index out of range");
  auto left = left_;
  left.erase(std::remove(left.begin(), left.end(), index), left.end());
  auto next = carry(partition_map{version_ + 1, nodes_, owners_,
                                  std::move(left), addresses_});
  auto& ev = next.evicted_;
  ev.erase(std::remove(ev.begin(), ev.end(), index), ev.end());
  return next;
}

partition_map partition_map::carry(partition_map next) const {
  next.evicted_ = evicted_;
  next.lost_ = lost_;
  return next;
}

partition_map partition_map::with_member(const std::string& name,
                                         const std::string& address,
                                         const std::vector<std::string>& known)
  const {
  if (name.empty())
    throw std::invalid_argument("member name is empty");
  if (index_of(name))
    throw std::invalid_argument("member " + name + " exists");
  auto nodes = nodes_;
  nodes.push_back(name);
  std::vector<std::string> addresses(nodes.size());
  for (size_t i = 0; i < nodes_.size(); ++i)
    addresses[i] = i < addresses_.size() && !addresses_[i].empty()
                     ? addresses_[i]
                     : (i < known.size() ? known[i] : std::string{});
  addresses.back() = address;
  return carry(partition_map{version_ + 1, std::move(nodes), owners_, left_,
                             std::move(addresses)});
}

nlohmann::json to_json(const partition_map& m) {
  auto owners = nlohmann::json::array();
  for (uint32_t p = 0; p < m.partitions(); ++p)
    owners.push_back(m.owner(p));
  auto left = nlohmann::json::array();
  for (auto l : m.left())
    left.push_back(m.nodes()[l]);
  nlohmann::json out{{"version", m.version()},
                     {"partitions", m.partitions()},
                     {"nodes", m.nodes()},
                     {"owners", std::move(owners)},
                     {"left", std::move(left)}};
  auto addresses = nlohmann::json::object();
  for (uint32_t i = 0; i < m.nodes().size(); ++i)
    if (auto a = m.address(i); !a.empty())
      addresses[m.nodes()[i]] = a;
  if (!addresses.empty())
    out["addresses"] = std::move(addresses);
  if (!m.evicted().empty()) {
    auto evicted = nlohmann::json::array();
    for (auto e : m.evicted())
      evicted.push_back(m.nodes()[e]);
    out["evicted"] = std::move(evicted);
  }
  auto lost = nlohmann::json::object();
  for (uint32_t p = 0; p < m.partitions(); ++p)
    if (auto at = m.lost_at(p); at > 0)
      lost[std::to_string(p)] = at;
  if (!lost.empty())
    out["lost"] = std::move(lost);
  return out;
}

std::optional<partition_map>
partition_map_from_json(const nlohmann::json& j, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<partition_map> {
    if (error)
      *error = std::move(why);
    return std::nullopt;
  };
  if (!j.is_object())
    return fail("partition map is not an object");
  auto v = j.find("version");
  auto parts = j.find("partitions");
  auto nodes = j.find("nodes");
  auto owners = j.find("owners");
  if (v == j.end() || !v->is_number_unsigned() || v->get<uint64_t>() == 0)
    return fail("partition map: version must be a positive integer");
  if (parts == j.end() || !parts->is_number_unsigned()
      || parts->get<uint64_t>() == 0 || parts->get<uint64_t>() > 65536)
    return fail("partition map: partitions must be a positive integer");
  if (nodes == j.end() || !nodes->is_array() || nodes->empty())
    return fail("partition map: nodes must be a non-empty array");
  if (owners == j.end() || !owners->is_array()
      || owners->size() != parts->get<uint64_t>())
    return fail("partition map: owners must name the owner of every "
                "partition");
  std::vector<std::string> names;
  for (auto& n : *nodes) {
    if (!n.is_string() || n.get_ref<const std::string&>().empty())
      return fail("partition map: node names must be non-empty strings");
    names.push_back(n.get<std::string>());
  }
  auto index = [&](const nlohmann::json& n) -> std::optional<uint32_t> {
    if (!n.is_string())
      return std::nullopt;
    auto i = std::find(names.begin(), names.end(), n.get_ref<const std::string&>());
    if (i == names.end())
      return std::nullopt;
    return static_cast<uint32_t>(i - names.begin());
  };
  std::vector<uint32_t> owner_ix;
  for (auto& o : *owners) {
    auto i = index(o);
    if (!i)
      return fail("partition map: an owner is not a member");
    owner_ix.push_back(*i);
  }
  // An optional array of member names, as indexes; false if it is not one.
  auto members = [&](const char* field, std::vector<uint32_t>& out) {
    auto f = j.find(field);
    if (f == j.end())
      return true;
    if (!f->is_array())
      return false;
    for (auto& n : *f) {
      auto i = index(n);
      if (!i)
        return false;
      out.push_back(*i);
    }
    return true;
  };
  std::vector<uint32_t> left_ix;
  if (!members("left", left_ix))
    return fail("partition map: left must be an array of members");
  std::vector<std::string> addresses;
  if (auto a = j.find("addresses"); a != j.end()) {
    if (!a->is_object())
      return fail("partition map: addresses must be an object");
    addresses.resize(names.size());
    for (auto& [name, value] : a->items()) {
      auto i = index(nlohmann::json(name));
      if (!i)
        return fail("partition map: an address names no member");
      if (!value.is_string()
          || !parse_member_address(name + "@" + value.get<std::string>()))
        return fail("partition map: address of " + name
                    + " is not host:port");
      addresses[*i] = value.get<std::string>();
    }
  }
  std::vector<uint32_t> evicted_ix;
  if (!members("evicted", evicted_ix))
    return fail("partition map: evicted must be an array of members");
  for (auto e : evicted_ix)
    if (std::find(left_ix.begin(), left_ix.end(), e) == left_ix.end())
      return fail("partition map: an evicted member has not left");
  std::vector<int64_t> lost;
  if (auto l = j.find("lost"); l != j.end()) {
    if (!l->is_object())
      return fail("partition map: lost must be an object");
    lost.assign(owner_ix.size(), 0);
    for (auto& [key, at] : l->items()) {
      uint32_t p = 0;
      auto [ptr, ec] = std::from_chars(key.data(), key.data() + key.size(), p);
      if (ec != std::errc{} || ptr != key.data() + key.size()
          || p >= lost.size())
        return fail("partition map: lost names no partition");
      if (!at.is_number_unsigned() || at.get<uint64_t>() == 0
          || at.get<uint64_t>() > uint64_t{1} << 62)
        return fail("partition map: a lost mark must be a positive time");
      lost[p] = at.get<int64_t>();
    }
  }
  try {
    partition_map out{v->get<uint64_t>(), std::move(names),
                      std::move(owner_ix), std::move(left_ix),
                      std::move(addresses)};
    std::sort(evicted_ix.begin(), evicted_ix.end());
    evicted_ix.erase(std::unique(evicted_ix.begin(), evicted_ix.end()),
                     evicted_ix.end());
    out.evicted_ = std::move(evicted_ix);
    out.lost_ = std::move(lost);
    return out;
  } catch (const std::invalid_argument& e) {
    return fail(std::string{"partition map: "} + e.what());
  }
}

std::optional<uint32_t>
partition_map::index_of(const std::string& name) const {
  auto i = std::find(nodes_.begin(), nodes_.end(), name);
  if (i == nodes_.end())
    return std::nullopt;
  return static_cast<uint32_t>(i - nodes_.begin());
}

std::vector<uint32_t> partition_map::owned_by(uint32_t index) const {
  std::vector<uint32_t> out;
  for (uint32_t p = 0; p < owners_.size(); ++p)
    if (owners_[p] == index)
      out.push_back(p);
  return out;
}

std::optional<member_address>
parse_member_address(const std::string& text) {
  auto at = text.find('@');
  auto colon = text.rfind(':');
  if (at == std::string::npos || at == 0 || colon == std::string::npos
      || colon <= at + 1 || colon + 1 >= text.size())
    return std::nullopt;
  member_address out;
  out.name = text.substr(0, at);
  out.host = text.substr(at + 1, colon - at - 1);
  unsigned port = 0;
  auto first = text.data() + colon + 1;
  auto last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, port);
  if (ec != std::errc{} || ptr != last || port == 0 || port > 65535)
    return std::nullopt;
  out.port = static_cast<uint16_t>(port);
  return out;
}

} // namespace cairn::cqrs
