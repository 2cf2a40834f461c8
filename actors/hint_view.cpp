#include "actors/hint_view.hpp"

#include <algorithm>

namespace cairn::actors {

hint_view::hint_view(std::vector<std::string> members, uint32_t self)
  : members_(std::move(members)),
    self_(self),
    local_(members_.size()),
    remote_(members_.size()),
    known_(members_.size(), false),
    left_(members_.size(), false),
    evicted_(members_.size(), false) {
  if (self_ < known_.size())
    known_[self_] = true;
}

std::vector<uint32_t> hint_view::union_locked() const {
  std::vector<uint32_t> out;
  for (auto& ps : local_)
    out.insert(out.end(), ps.begin(), ps.end());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool hint_view::set_local(uint32_t peer, std::vector<uint32_t> partitions) {
  std::sort(partitions.begin(), partitions.end());
  partitions.erase(std::unique(partitions.begin(), partitions.end()),
                   partitions.end());
  std::lock_guard guard{mtx_};
  if (peer >= local_.size() || local_[peer] == partitions)
    return false;
  auto before = union_locked();
  local_[peer] = std::move(partitions);
  auto after = union_locked();
  if (before == after)
    return false;
  ++local_version_;
  return std::any_of(after.begin(), after.end(), [&](uint32_t p) {
    return !std::binary_search(before.begin(), before.end(), p);
  });
}

std::pair<std::vector<uint32_t>, uint64_t> hint_view::local_union() const {
  std::lock_guard guard{mtx_};
  return {union_locked(), local_version_};
}

void hint_view::set_remote(uint32_t from, std::vector<uint32_t> partitions) {
  std::lock_guard guard{mtx_};
  if (from >= remote_.size() || from == self_)
    return;
  remote_[from] = std::move(partitions);
  known_[from] = true;
}

std::pair<bool, std::vector<uint32_t>>
hint_view::announced(uint32_t m) const {
  std::lock_guard guard{mtx_};
  if (m >= remote_.size())
    return {false, {}};
  return {known_[m], remote_[m]};
}

void hint_view::set_members(const std::vector<std::string>& members) {
  std::lock_guard guard{mtx_};
  if (members.size() <= members_.size())
    return;
  members_ = members;
  auto n = members_.size();
  local_.resize(n);
  remote_.resize(n);
  known_.resize(n, false);
  left_.resize(n, false);
  evicted_.resize(n, false);
}

namespace {

/// `flags[m]` true exactly for the members of `members` (indexes).
void assign(std::vector<bool>& flags, const std::vector<uint32_t>& members) {
  std::fill(flags.begin(), flags.end(), false);
  for (auto m : members)
    if (m < flags.size())
      flags[m] = true;
}

} // namespace

void hint_view::set_left(const std::vector<uint32_t>& left) {
  std::lock_guard guard{mtx_};
  assign(left_, left);
}

void hint_view::set_evicted(const std::vector<uint32_t>& evicted) {
  std::lock_guard guard{mtx_};
  assign(evicted_, evicted);
}

bool hint_view::snapshot_type::empty() const noexcept {
  return holders.empty();
}

hint_view::snapshot_type hint_view::snapshot(uint32_t partitions) const {
  snapshot_type out;
  std::lock_guard guard{mtx_};
  auto any = [&] {
    for (uint32_t m = 0; m < members_.size(); ++m)
      if ((!known_[m] && !left_[m]) || (!remote_[m].empty() && !evicted_[m])
          || !local_[m].empty())
        return true;
    return false;
  };
  if (!any())
    return out;
  out.holders.resize(partitions);
  auto add = [&](uint32_t p, uint32_t member) {
    if (p < partitions) {
      auto& h = out.holders[p];
      if (std::find(h.begin(), h.end(), member) == h.end())
        h.push_back(member);
    }
  };
  for (uint32_t m = 0; m < members_.size(); ++m) {
    if (!known_[m] && !left_[m]) {
      for (uint32_t p = 0; p < partitions; ++p)
        add(p, m);
      continue;
    }
    if (!evicted_[m])
      for (auto p : remote_[m])
        add(p, m);
    for (auto p : local_[m])
      add(p, self_);
  }
  return out;
}

} // namespace cairn::actors
