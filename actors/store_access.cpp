#include "actors/store_access.hpp"

namespace cairn::actors {

store_access::store_access(uint32_t partitions) {
  slots_.reserve(partitions);
  for (uint32_t p = 0; p < partitions; ++p)
    slots_.push_back(std::make_unique<slot>());
}

void store_access::attach(uint32_t partition, const cqrs::series_store* store) {
  if (partition >= slots_.size())
    return;
  std::lock_guard<std::recursive_mutex> guard{slots_[partition]->latch};
  slots_[partition]->store = store;
}

void store_access::detach(uint32_t partition) {
  attach(partition, nullptr);
}

store_access::writer_guard::writer_guard(std::shared_ptr<store_access> owner,
                                         uint32_t partition)
  : owner_(std::move(owner)), lock_(owner_->slots_[partition]->latch) {
}

store_access::writer_guard store_access::writer(std::shared_ptr<store_access> access,
                                                uint32_t partition) {
  if (!access || partition >= access->slots_.size())
    return {};
  return writer_guard{std::move(access), partition};
}

} // namespace cairn::actors
