#include "cqrs/tier.hpp"

#include <algorithm>
#include <stdexcept>

namespace cairn::cqrs {

std::optional<tier_spec> parse_tier(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos)
    return std::nullopt;
  auto res = parse_duration(text.substr(0, colon));
  auto ret = parse_duration(text.substr(colon + 1));
  if (!res || !ret || *res <= 0 || *ret < *res)
    return std::nullopt;
  return tier_spec{*res, *ret, format_duration(*res)};
}

tier_set::tier_set(std::vector<tier_spec> specs) : tiers_(std::move(specs)) {
  if (tiers_.empty())
    throw std::invalid_argument("tiers: at least one tier is required");
  std::sort(tiers_.begin(), tiers_.end(),
            [](auto& x, auto& y) { return x.resolution < y.resolution; });
  for (size_t i = 0; i < tiers_.size(); ++i) {
    auto& t = tiers_[i];
    if (t.name.empty())
      t.name = format_duration(t.resolution);
    if (t.resolution <= 0 || t.retention < t.resolution)
      throw std::invalid_argument("tiers: tier " + t.name
                                  + " needs 0 < resolution <= retention");
    if (i == 0)
      continue;
    auto& finer = tiers_[i - 1];
    if (finer.resolution == t.resolution)
      throw std::invalid_argument("tiers: two tiers with resolution "
                                  + t.name);
    if (t.resolution % finer.resolution != 0)
      throw std::invalid_argument("tiers: resolution " + t.name
                                  + " is not a multiple of " + finer.name);
  }
}

tier_set tier_set::parse(const std::vector<std::string>& texts) {
  std::vector<tier_spec> specs;
  for (auto& text : texts) {
    auto spec = parse_tier(text);
    if (!spec)
      throw std::invalid_argument("tiers: invalid tier \"" + text
                                  + "\" (expected RES:RETENTION, e.g. 1s:15m)");
    specs.push_back(std::move(*spec));
  }
  return tier_set{std::move(specs)};
}

millis tier_set::max_retention() const noexcept {
  millis result = 0;
  for (auto& t : tiers_)
    result = std::max(result, t.retention);
  return result;
}

size_t tier_set::select(millis from, millis now) const noexcept {
  for (size_t i = 0; i < tiers_.size(); ++i)
    if (now - tiers_[i].retention <= from)
      return i;
  return tiers_.empty() ? 0 : tiers_.size() - 1;
}

} // namespace cairn::cqrs
