// saga_log: the durable log of sagas (docs/sagas.md).
//
// Each saga's records in append order, under its id. `append` returns only
// after the record is durable (the LevelDB implementation writes with sync),
// so a saga never acts on a decision that a crash could forget. Records of
// finished sagas are kept for inspection up to a bound (`prune_finished`).
//
// Two implementations: LevelDB (`open_leveldb_saga_log`) and in memory (for
// tests and nodes without storage). Not thread-safe: one owner (the saga
// coordinator) at a time.
#pragma once

#include "sagas/saga.hpp"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace cairn::sagas {

class saga_log {
public:
  virtual ~saga_log();

  /// Appends `r` to saga `id`; true once durable, false if it failed
  /// (nothing was written).
  [[nodiscard]] virtual bool append(const std::string& id,
                                    const saga_record& r) = 0;

  /// Every saga's records, in append order. Records that do not decode are
  /// skipped (and counted in `corrupt`).
  virtual std::map<std::string, std::vector<saga_record>> load() = 0;

  /// Deletes saga `id`'s records.
  virtual void erase(const std::string& id) = 0;

  /// Records that failed to decode in the last load.
  size_t corrupt() const noexcept { return corrupt_; }

protected:
  size_t corrupt_ = 0;
};

/// In memory; `fail_after` appends succeed, then every append fails (a fault
/// seam for tests; default never).
class memory_saga_log : public saga_log {
public:
  bool append(const std::string& id, const saga_record& r) override;
  std::map<std::string, std::vector<saga_record>> load() override;
  void erase(const std::string& id) override;

  size_t fail_after = static_cast<size_t>(-1);
  size_t appends = 0;

private:
  std::map<std::string, std::vector<saga_record>> sagas_;
};

/// Opens (creating) a LevelDB saga log at `path`. Throws std::runtime_error
/// naming the path if it cannot be opened.
std::unique_ptr<saga_log> open_leveldb_saga_log(const std::string& path);

/// Erases the oldest finished sagas (by their `finished` record's time)
/// beyond the newest `keep`. Returns how many were erased.
size_t prune_finished(saga_log& log, size_t keep);

} // namespace cairn::sagas
