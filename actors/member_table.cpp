#include "actors/member_table.hpp"

#include <algorithm>

namespace cairn::actors {

member_table::member_table(members_type members)
  : members_(std::make_shared<const members_type>(std::move(members))),
    links_(std::make_shared<const links_type>()) {
}

std::shared_ptr<const member_table::members_type>
member_table::members() const {
  std::lock_guard guard{mtx_};
  return members_;
}

std::shared_ptr<const member_table::links_type> member_table::links() const {
  std::lock_guard guard{mtx_};
  return links_;
}

size_t member_table::size() const {
  std::lock_guard guard{mtx_};
  return members_->size();
}

std::optional<cqrs::member_address> member_table::at(uint32_t index) const {
  std::lock_guard guard{mtx_};
  if (index >= members_->size())
    return std::nullopt;
  return (*members_)[index];
}

std::optional<uint32_t>
member_table::index_of(const std::string& name) const {
  std::lock_guard guard{mtx_};
  auto& ms = *members_;
  auto i = std::find_if(ms.begin(), ms.end(),
                        [&](const auto& m) { return m.name == name; });
  if (i == ms.end())
    return std::nullopt;
  return static_cast<uint32_t>(i - ms.begin());
}

void member_table::set_links(links_type links) {
  std::lock_guard guard{mtx_};
  links.resize(std::max(links.size(), members_->size()));
  links_ = std::make_shared<const links_type>(std::move(links));
  ++version_;
}

bool member_table::add(cqrs::member_address m) {
  std::lock_guard guard{mtx_};
  for (auto& known : *members_)
    if (known.name == m.name)
      return false;
  auto members = *members_;
  members.push_back(std::move(m));
  auto links = *links_;
  links.resize(members.size());
  members_ = std::make_shared<const members_type>(std::move(members));
  links_ = std::make_shared<const links_type>(std::move(links));
  ++version_;
  return true;
}

void member_table::set_link(uint32_t index, caf::actor link) {
  std::lock_guard guard{mtx_};
  auto links = *links_;
  links.resize(std::max(links.size(), size_t{index} + 1));
  links[index] = std::move(link);
  links_ = std::make_shared<const links_type>(std::move(links));
  ++version_;
}

caf::actor member_table::link_to(const std::string& name) const {
  std::lock_guard guard{mtx_};
  for (size_t i = 0; i < members_->size() && i < links_->size(); ++i)
    if ((*members_)[i].name == name)
      return (*links_)[i];
  return {};
}

bool member_table::refresh(links_type& links, uint64_t& seen) const {
  if (version_.load() == seen)
    return false;
  std::lock_guard guard{mtx_};
  links = *links_;
  seen = version_.load();
  return true;
}

void member_table::set_tunnel(const std::string& name, uint16_t port) {
  std::lock_guard guard{mtx_};
  tunnels_[name] = port;
}

std::optional<uint16_t> member_table::tunnel(const std::string& name) const {
  std::lock_guard guard{mtx_};
  if (auto i = tunnels_.find(name); i != tunnels_.end())
    return i->second;
  return std::nullopt;
}

void member_table::set_tunnel_factory(tunnel_factory f) {
  std::lock_guard guard{mtx_};
  factory_ = std::move(f);
}

void member_table::make_tunnel(const cqrs::member_address& m) {
  tunnel_factory f;
  {
    std::lock_guard guard{mtx_};
    f = factory_;
  }
  if (f)
    set_tunnel(m.name, f(m));
}

void member_table::set_home(caf::actor home) {
  std::lock_guard guard{mtx_};
  home_ = std::move(home);
}

caf::actor member_table::home() const {
  std::lock_guard guard{mtx_};
  return home_;
}

} // namespace cairn::actors
