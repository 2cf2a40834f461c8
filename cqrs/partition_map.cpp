#include "cqrs/partition_map.hpp"

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
  : version_(version), nodes_(std::move(nodes)), owners_(std::move(owners)) {
  for (auto o : owners_)
    if (o >= nodes_.size())
      throw std::invalid_argument("partition owner index out of range");
}

std::optional<uint32_t>
partition_map::index_of(const std::string& name) const {
  auto i = std::lower_bound(nodes_.begin(), nodes_.end(), name);
  if (i == nodes_.end() || *i != name)
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
