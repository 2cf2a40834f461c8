#include "sagas/saga_log.hpp"

#include <leveldb/db.h>
#include <leveldb/write_batch.h>

#include <algorithm>
#include <stdexcept>

namespace cairn::sagas {

saga_log::~saga_log() = default;

// -- in memory ----------------------------------------------------------------

bool memory_saga_log::append(const std::string& id, const saga_record& r) {
  if (appends >= fail_after)
    return false;
  ++appends;
  sagas_[id].push_back(r);
  return true;
}

std::map<std::string, std::vector<saga_record>> memory_saga_log::load() {
  corrupt_ = 0;
  return sagas_;
}

void memory_saga_log::erase(const std::string& id) {
  sagas_.erase(id);
}

// -- LevelDB ------------------------------------------------------------------

namespace {

/// Keys: "s" + id + '\0' + 8-byte big-endian sequence, so a saga's records
/// sort together and in append order (ids contain no NUL; checked).
std::string record_key(const std::string& id, uint64_t seq) {
  std::string k = "s";
  k += id;
  k.push_back('\0');
  for (int i = 7; i >= 0; --i)
    k.push_back(static_cast<char>((seq >> (8 * i)) & 0xff));
  return k;
}

class leveldb_saga_log : public saga_log {
public:
  explicit leveldb_saga_log(const std::string& path) {
    leveldb::Options opts;
    opts.create_if_missing = true;
    leveldb::DB* db = nullptr;
    auto st = leveldb::DB::Open(opts, path, &db);
    if (!st.ok())
      throw std::runtime_error("saga log " + path + ": " + st.ToString());
    db_.reset(db);
    // The next sequence per saga comes from what is stored.
    for (auto& [id, records] : load())
      next_[id] = records.size();
  }

  bool append(const std::string& id, const saga_record& r) override {
    if (id.find('\0') != std::string::npos)
      return false;
    auto seq = next_[id];
    leveldb::WriteOptions wo;
    wo.sync = true;
    auto st = db_->Put(wo, record_key(id, seq), encode(r));
    if (!st.ok())
      return false;
    next_[id] = seq + 1;
    return true;
  }

  std::map<std::string, std::vector<saga_record>> load() override {
    std::map<std::string, std::vector<saga_record>> out;
    corrupt_ = 0;
    std::unique_ptr<leveldb::Iterator> it{
      db_->NewIterator(leveldb::ReadOptions{})};
    for (it->Seek("s"); it->Valid() && it->key().starts_with("s"); it->Next()) {
      auto key = it->key().ToString();
      auto nul = key.find('\0', 1);
      if (nul == std::string::npos || key.size() != nul + 9) {
        ++corrupt_;
        continue;
      }
      auto id = key.substr(1, nul - 1);
      auto r = decode(std::string_view{it->value().data(), it->value().size()});
      if (!r) {
        ++corrupt_;
        continue;
      }
      out[id].push_back(std::move(*r));
    }
    return out;
  }

  void erase(const std::string& id) override {
    leveldb::WriteBatch batch;
    auto n = next_.count(id) ? next_[id] : 0;
    for (uint64_t seq = 0; seq < n; ++seq)
      batch.Delete(record_key(id, seq));
    leveldb::WriteOptions wo;
    wo.sync = true;
    (void) db_->Write(wo, &batch);
    next_.erase(id);
  }

private:
  std::unique_ptr<leveldb::DB> db_;
  std::map<std::string, uint64_t> next_;
};

} // namespace

std::unique_ptr<saga_log> open_leveldb_saga_log(const std::string& path) {
  return std::make_unique<leveldb_saga_log>(path);
}

size_t prune_finished(saga_log& log, size_t keep) {
  std::vector<std::pair<millis, std::string>> done;
  for (auto& [id, records] : log.load())
    if (!records.empty() && records.back().kind == record_kind::finished)
      done.emplace_back(records.back().at, id);
  if (done.size() <= keep)
    return 0;
  std::sort(done.begin(), done.end());
  auto n = done.size() - keep;
  for (size_t i = 0; i < n; ++i)
    log.erase(done[i].second);
  return n;
}

} // namespace cairn::sagas
