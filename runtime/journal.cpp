#include "runtime/journal.hpp"

#include "runtime/leveldb_env.hpp"

#include <leveldb/db.h>
#include <leveldb/iterator.h>
#include <leveldb/options.h>
#include <leveldb/write_batch.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>
#include <utility>

namespace cairn::runtime {

// -- sync mode ----------------------------------------------------------------

std::string_view to_string(sync_mode mode) noexcept {
  switch (mode) {
    case sync_mode::always:
      return "always";
    case sync_mode::interval:
      return "interval";
    case sync_mode::never:
      return "never";
  }
  return "unknown";
}

std::optional<sync_mode> parse_sync_mode(std::string_view text) {
  if (text == "always")
    return sync_mode::always;
  if (text == "interval")
    return sync_mode::interval;
  if (text == "never")
    return sync_mode::never;
  return std::nullopt;
}

// -- key layout ---------------------------------------------------------------

namespace {

void put_be32(char* out, uint32_t x) noexcept {
  for (int i = 3; i >= 0; --i) {
    out[i] = static_cast<char>(x & 0xFF);
    x >>= 8;
  }
}

void put_be64(char* out, uint64_t x) noexcept {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(x & 0xFF);
    x >>= 8;
  }
}

uint64_t get_be64(const char* in) noexcept {
  uint64_t x = 0;
  for (int i = 0; i < 8; ++i)
    x = (x << 8) | static_cast<uint8_t>(in[i]);
  return x;
}

/// True if `key` is a well-formed key of (kind, partition, *).
bool has_prefix(const leveldb::Slice& key, const char* prefix) noexcept {
  return key.size() == journal::key_size
         && std::memcmp(key.data(), prefix, 5) == 0;
}

uint64_t seq_of(const leveldb::Slice& key) noexcept {
  return get_be64(key.data() + 5);
}

} // namespace

void journal::make_key(char kind, uint32_t partition, uint64_t seq,
                       char* out) noexcept {
  out[0] = kind;
  put_be32(out + 1, partition);
  put_be64(out + 5, seq);
}

// -- implementation -----------------------------------------------------------

namespace {

using clock_type = std::chrono::steady_clock;

/// One enqueued request for the committer thread.
struct operation {
  enum class kind_t : uint8_t { append, snapshot, prune, sync, meta_put, meta_erase };
  kind_t kind = kind_t::append;
  uint32_t partition = 0;
  uint64_t seq = 0; ///< seq, covered seq or delete-up-to seq
  size_t keep = 0;  ///< prune: snapshots to keep
  std::string bytes;
  journal_callback done;
};

void complete(const journal_callback& done, bool ok, const std::string& error) {
  if (!done)
    return;
  try {
    done(ok, error);
  } catch (const std::exception& ex) {
    spdlog::error("journal: exception escaped a completion callback: {}",
                  ex.what());
  } catch (...) {
    spdlog::error("journal: exception escaped a completion callback");
  }
}

} // namespace

struct journal::impl {
  std::string path;
  journal_options opts;
  std::unique_ptr<leveldb::DB> db;

  // -- queue (guarded by mtx) -------------------------------------------------
  std::mutex mtx;
  std::condition_variable cv;
  std::deque<operation> queue;
  bool closing = false;

  std::mutex close_mtx; ///< serializes close()
  std::thread committer;
  std::atomic<size_t> pending{0};

  // -- committer-thread state -------------------------------------------------
  clock_type::time_point last_sync = clock_type::now();
  bool dirty = false; ///< interval mode: written but not yet fsynced

  // -- stats ------------------------------------------------------------------
  std::atomic<uint64_t> appends{0};
  std::atomic<uint64_t> appended_bytes{0};
  std::atomic<uint64_t> batches{0};
  std::atomic<uint64_t> fsyncs{0};
  std::atomic<uint64_t> snapshots{0};
  std::atomic<uint64_t> snapshot_bytes{0};
  std::atomic<uint64_t> prunes{0};
  std::atomic<uint64_t> pruned_keys{0};
  std::atomic<uint64_t> write_errors{0};

  void enqueue(operation&& op) {
    size_t bytes = op.bytes.size();
    {
      std::lock_guard<std::mutex> guard{mtx};
      if (!closing) {
        pending.fetch_add(bytes, std::memory_order_relaxed);
        queue.push_back(std::move(op));
        cv.notify_one();
        return;
      }
    }
    complete(op.done, false, "journal closed");
  }

  // -- committer thread -------------------------------------------------------

  void run() {
    std::vector<operation> group;
    for (;;) {
      group.clear();
      {
        std::unique_lock<std::mutex> guard{mtx};
        auto ready = [this] { return !queue.empty() || closing; };
        if (dirty)
          cv.wait_until(guard, last_sync + opts.sync_interval, ready);
        else
          cv.wait(guard, ready);
        if (queue.empty()) {
          guard.unlock();
          // Timer expired in interval mode, or closing: make written data
          // durable before sleeping again or exiting.
          if (dirty && (closing_now() || clock_type::now()
                                             >= last_sync + opts.sync_interval))
            write_group(nullptr, group, 0, 0, true);
          if (closing_now())
            return;
          continue;
        }
        // Take everything queued, up to max_batch_bytes per group commit.
        size_t bytes = 0;
        while (!queue.empty()
               && (group.empty() || bytes < opts.max_batch_bytes)) {
          bytes += queue.front().bytes.size();
          group.push_back(std::move(queue.front()));
          queue.pop_front();
        }
      }
      process(group);
    }
  }

  bool closing_now() {
    std::lock_guard<std::mutex> guard{mtx};
    return closing && queue.empty();
  }

  /// Writes the ops of `group` in order as few group commits as possible.
  /// A prune ends the current group commit: it must see what came before.
  void process(std::vector<operation>& group) {
    leveldb::WriteBatch batch;
    bool need_sync = opts.sync == sync_mode::always;
    size_t first = 0;
    char key[key_size];
    for (size_t i = 0; i < group.size(); ++i) {
      auto& op = group[i];
      switch (op.kind) {
        case operation::kind_t::append:
          make_key(journal_kind, op.partition, op.seq, key);
          batch.Put(leveldb::Slice{key, key_size}, op.bytes);
          break;
        case operation::kind_t::snapshot:
          make_key(snapshot_kind, op.partition, op.seq, key);
          batch.Put(leveldb::Slice{key, key_size}, op.bytes);
          if (opts.sync != sync_mode::never)
            need_sync = true;
          break;
        case operation::kind_t::sync:
          need_sync = true;
          break;
        case operation::kind_t::meta_put:
          make_key(meta_kind, op.partition, op.seq, key);
          batch.Put(leveldb::Slice{key, key_size}, op.bytes);
          if (opts.sync != sync_mode::never)
            need_sync = true;
          break;
        case operation::kind_t::meta_erase:
          make_key(meta_kind, op.partition, op.seq, key);
          batch.Delete(leveldb::Slice{key, key_size});
          if (opts.sync != sync_mode::never)
            need_sync = true;
          break;
        case operation::kind_t::prune:
          write_group(&batch, group, first, i, need_sync);
          batch.Clear();
          need_sync = opts.sync == sync_mode::always;
          execute_prune(op);
          first = i + 1;
          break;
      }
    }
    write_group(&batch, group, first, group.size(), need_sync);
  }

  /// Writes `batch` (may be null: an empty, sync-only write) and
  /// acknowledges group[first, last).
  void write_group(leveldb::WriteBatch* batch, std::vector<operation>& group,
                   size_t first, size_t last, bool sync) {
    if (batch == nullptr && !sync)
      return;
    if (batch != nullptr && first == last)
      return; // nothing to write or acknowledge
    auto now = clock_type::now();
    if (opts.sync == sync_mode::interval && now >= last_sync + opts.sync_interval)
      sync = true;
    leveldb::WriteOptions wo;
    wo.sync = sync;
    leveldb::WriteBatch empty;
    auto cpu = opts.costs ? thread_cpu_ns() : 0;
    auto status = db->Write(wo, batch != nullptr ? batch : &empty);
    if (opts.costs)
      opts.costs->add(ingest_stage::write, thread_cpu_ns() - cpu, 0);
    if (sync && opts.sync_latency != nullptr)
      opts.sync_latency->observe(clock_type::now() - now);
    batches.fetch_add(1, std::memory_order_relaxed);
    std::string error;
    if (status.ok()) {
      if (sync) {
        fsyncs.fetch_add(1, std::memory_order_relaxed);
        last_sync = now;
        dirty = false;
      } else if (opts.sync == sync_mode::interval) {
        dirty = true;
      }
    } else {
      write_errors.fetch_add(1, std::memory_order_relaxed);
      error = "journal write failed: " + status.ToString();
      spdlog::error("journal {}: {}", path, error);
    }
    // Account and acknowledge in enqueue order.
    size_t bytes = 0;
    for (size_t i = first; i < last; ++i) {
      auto& op = group[i];
      bytes += op.bytes.size();
      if (op.kind == operation::kind_t::append) {
        appends.fetch_add(1, std::memory_order_relaxed);
        appended_bytes.fetch_add(op.bytes.size(), std::memory_order_relaxed);
      } else if (op.kind == operation::kind_t::snapshot && status.ok()) {
        snapshots.fetch_add(1, std::memory_order_relaxed);
        snapshot_bytes.fetch_add(op.bytes.size(), std::memory_order_relaxed);
      }
    }
    pending.fetch_sub(bytes, std::memory_order_relaxed);
    for (size_t i = first; i < last; ++i) {
      complete(group[i].done, status.ok(), error);
      group[i].done = nullptr;
      group[i].bytes = std::string{};
    }
  }

  void execute_prune(operation& op) {
    leveldb::WriteBatch batch;
    uint64_t deleted = 0;
    char key[key_size];
    char prefix[key_size];
    leveldb::ReadOptions ro;
    ro.fill_cache = false;
    std::unique_ptr<leveldb::Iterator> it{db->NewIterator(ro)};
    // Snapshots beyond the newest `keep`.
    std::vector<uint64_t> seqs;
    make_key(snapshot_kind, op.partition, 0, prefix);
    for (it->Seek(leveldb::Slice{prefix, key_size});
         it->Valid() && has_prefix(it->key(), prefix); it->Next())
      seqs.push_back(seq_of(it->key()));
    if (seqs.size() > op.keep) {
      for (size_t i = 0; i < seqs.size() - op.keep; ++i) {
        make_key(snapshot_kind, op.partition, seqs[i], key);
        batch.Delete(leveldb::Slice{key, key_size});
        ++deleted;
      }
    }
    // Journal records with seq <= delete-up-to.
    if (op.seq > 0) {
      make_key(journal_kind, op.partition, 0, prefix);
      for (it->Seek(leveldb::Slice{prefix, key_size});
           it->Valid() && has_prefix(it->key(), prefix)
           && seq_of(it->key()) <= op.seq;
           it->Next()) {
        batch.Delete(it->key());
        ++deleted;
      }
    }
    auto iter_status = it->status();
    it.reset();
    std::string error;
    bool ok = iter_status.ok();
    if (!ok) {
      error = "journal prune of partition " + std::to_string(op.partition)
              + " failed: " + iter_status.ToString();
    } else if (deleted > 0) {
      leveldb::WriteOptions wo;
      wo.sync = opts.sync != sync_mode::never;
      auto status = db->Write(wo, &batch);
      batches.fetch_add(1, std::memory_order_relaxed);
      if (status.ok()) {
        if (wo.sync) {
          fsyncs.fetch_add(1, std::memory_order_relaxed);
          last_sync = clock_type::now();
          dirty = false;
        }
        pruned_keys.fetch_add(deleted, std::memory_order_relaxed);
      } else {
        ok = false;
        write_errors.fetch_add(1, std::memory_order_relaxed);
        error = "journal prune of partition " + std::to_string(op.partition)
                + " failed: " + status.ToString();
      }
    }
    if (!ok)
      spdlog::error("journal {}: {}", path, error);
    prunes.fetch_add(1, std::memory_order_relaxed);
    complete(op.done, ok, error);
    op.done = nullptr;
  }

  leveldb::DB& checked_db() const {
    if (!db)
      throw journal_error("journal " + path + " is closed");
    return *db;
  }
};

// -- lifecycle ----------------------------------------------------------------

journal::journal(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {
  // nop
}

journal::~journal() {
  close();
}

std::unique_ptr<journal> journal::open(const std::string& path,
                                       journal_options opts) {
  if (path.empty())
    throw journal_error("cannot open journal: empty storage path");
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec)
    throw journal_error("cannot create journal directory " + path + ": "
                        + ec.message());
  if (opts.max_batch_bytes == 0)
    opts.max_batch_bytes = 1;
  leveldb::Options lo;
  lo.create_if_missing = true;
  lo.env = journal_env(); // tables read with pread, not mapped (RSS)
  lo.write_buffer_size = opts.write_buffer_size;
  lo.max_file_size = 8u << 20;
  lo.max_open_files = opts.max_open_files;
  lo.compression = opts.compression ? leveldb::kSnappyCompression
                                    : leveldb::kNoCompression;
  leveldb::DB* raw = nullptr;
  auto status = leveldb::DB::Open(lo, path, &raw);
  if (!status.ok())
    throw journal_error("cannot open journal " + path + ": "
                        + status.ToString());
  auto state = std::make_unique<impl>();
  state->path = path;
  state->opts = opts;
  state->db.reset(raw);
  // The layout version: written on creation, checked on every open.
  char key[key_size];
  make_key(meta_kind, 0, 0, key);
  std::string value;
  status = state->db->Get(leveldb::ReadOptions{}, leveldb::Slice{key, key_size},
                          &value);
  if (status.IsNotFound()) {
    char buf[4];
    put_be32(buf, format_version);
    leveldb::WriteOptions wo;
    wo.sync = opts.sync != sync_mode::never;
    status = state->db->Put(wo, leveldb::Slice{key, key_size},
                            leveldb::Slice{buf, 4});
    if (!status.ok())
      throw journal_error("cannot initialize journal " + path + ": "
                          + status.ToString());
  } else if (!status.ok()) {
    throw journal_error("cannot read journal " + path + ": "
                        + status.ToString());
  } else {
    uint32_t version = 0;
    if (value.size() == 4)
      for (char c : value)
        version = (version << 8) | static_cast<uint8_t>(c);
    if (version != format_version)
      throw journal_error("journal " + path + " has layout version "
                          + std::to_string(version) + ", this build reads "
                          + std::to_string(format_version));
  }
  auto* self = state.get();
  state->committer = std::thread{[self] { self->run(); }};
  return std::unique_ptr<journal>{new journal(std::move(state))};
}

void journal::close() {
  if (!impl_)
    return;
  std::lock_guard<std::mutex> close_guard{impl_->close_mtx};
  {
    std::lock_guard<std::mutex> guard{impl_->mtx};
    impl_->closing = true;
  }
  impl_->cv.notify_one();
  if (impl_->committer.joinable())
    impl_->committer.join();
  impl_->db.reset();
}

// -- writing ------------------------------------------------------------------

void journal::append(uint32_t partition, uint64_t seq, std::string record,
                     journal_callback done) {
  impl_->enqueue(operation{operation::kind_t::append, partition, seq, 0,
                           std::move(record), std::move(done)});
}

void journal::write_snapshot(uint32_t partition, uint64_t covered_seq,
                             std::string bytes, journal_callback done) {
  impl_->enqueue(operation{operation::kind_t::snapshot, partition, covered_seq,
                           0, std::move(bytes), std::move(done)});
}

void journal::prune(uint32_t partition, size_t keep_snapshots,
                    uint64_t delete_journal_upto, journal_callback done) {
  impl_->enqueue(operation{operation::kind_t::prune, partition,
                           delete_journal_upto, keep_snapshots, std::string{},
                           std::move(done)});
}

void journal::put_meta(uint32_t partition, uint64_t slot, std::string bytes,
                       journal_callback done) {
  if (partition == 0 && slot == 0) {
    complete(done, false, "meta key (0, 0) is the layout version");
    return;
  }
  impl_->enqueue(operation{operation::kind_t::meta_put, partition, slot, 0,
                           std::move(bytes), std::move(done)});
}

void journal::erase_meta(uint32_t partition, uint64_t slot,
                         journal_callback done) {
  if (partition == 0 && slot == 0) {
    complete(done, false, "meta key (0, 0) is the layout version");
    return;
  }
  impl_->enqueue(operation{operation::kind_t::meta_erase, partition, slot, 0,
                           std::string{}, std::move(done)});
}

void journal::sync(journal_callback done) {
  impl_->enqueue(operation{operation::kind_t::sync, 0, 0, 0, std::string{},
                           std::move(done)});
}

// -- reading ------------------------------------------------------------------

uint64_t journal::scan(uint32_t partition, uint64_t from_seq,
                       const journal_visitor& fn) const {
  auto& db = impl_->checked_db();
  leveldb::ReadOptions ro;
  ro.verify_checksums = true;
  ro.fill_cache = false;
  std::unique_ptr<leveldb::Iterator> it{db.NewIterator(ro)};
  char prefix[key_size];
  make_key(journal_kind, partition, from_seq, prefix);
  uint64_t visited = 0;
  uint64_t last = 0;
  for (it->Seek(leveldb::Slice{prefix, key_size});
       it->Valid() && has_prefix(it->key(), prefix); it->Next()) {
    last = seq_of(it->key());
    ++visited;
    auto value = it->value();
    if (!fn(last, std::string_view{value.data(), value.size()}))
      return visited;
  }
  if (auto status = it->status(); !status.ok()) {
    auto where = visited == 0 ? "at seq " + std::to_string(from_seq)
                              : "after seq " + std::to_string(last);
    throw journal_error("journal " + impl_->path + ": reading partition "
                        + std::to_string(partition) + " failed " + where
                        + ": " + status.ToString());
  }
  return visited;
}

uint64_t journal::last_seq(uint32_t partition) const {
  auto& db = impl_->checked_db();
  std::unique_ptr<leveldb::Iterator> it{db.NewIterator(leveldb::ReadOptions{})};
  char key[key_size];
  make_key(journal_kind, partition, UINT64_MAX, key);
  leveldb::Slice target{key, key_size};
  it->Seek(target);
  if (it->Valid()) {
    if (it->key() == target)
      return UINT64_MAX;
    it->Prev();
  } else {
    it->SeekToLast();
  }
  if (it->Valid() && has_prefix(it->key(), key))
    return seq_of(it->key());
  return 0;
}

std::vector<uint64_t> journal::snapshot_seqs(uint32_t partition) const {
  auto& db = impl_->checked_db();
  std::unique_ptr<leveldb::Iterator> it{db.NewIterator(leveldb::ReadOptions{})};
  char prefix[key_size];
  make_key(snapshot_kind, partition, 0, prefix);
  std::vector<uint64_t> result;
  for (it->Seek(leveldb::Slice{prefix, key_size});
       it->Valid() && has_prefix(it->key(), prefix); it->Next())
    result.push_back(seq_of(it->key()));
  std::reverse(result.begin(), result.end());
  return result;
}

std::optional<std::string> journal::read_snapshot(uint32_t partition,
                                                  uint64_t covered_seq) const {
  auto& db = impl_->checked_db();
  leveldb::ReadOptions ro;
  ro.verify_checksums = true;
  ro.fill_cache = false;
  char key[key_size];
  make_key(snapshot_kind, partition, covered_seq, key);
  std::string value;
  auto status = db.Get(ro, leveldb::Slice{key, key_size}, &value);
  if (status.ok())
    return value;
  if (!status.IsNotFound())
    spdlog::warn("journal {}: cannot read snapshot of partition {} at seq {}: "
                 "{}",
                 impl_->path, partition, covered_seq, status.ToString());
  return std::nullopt;
}

std::optional<std::string> journal::read_meta(uint32_t partition,
                                              uint64_t slot) const {
  auto& db = impl_->checked_db();
  leveldb::ReadOptions ro;
  ro.verify_checksums = true;
  char key[key_size];
  make_key(meta_kind, partition, slot, key);
  std::string value;
  auto status = db.Get(ro, leveldb::Slice{key, key_size}, &value);
  if (status.ok())
    return value;
  if (!status.IsNotFound())
    spdlog::warn("journal {}: cannot read meta key of partition {} slot {}: "
                 "{}",
                 impl_->path, partition, slot, status.ToString());
  return std::nullopt;
}

bool journal::erase_snapshot(uint32_t partition, uint64_t covered_seq) {
  auto& db = impl_->checked_db();
  char key[key_size];
  make_key(snapshot_kind, partition, covered_seq, key);
  leveldb::WriteOptions wo;
  wo.sync = true;
  auto status = db.Delete(wo, leveldb::Slice{key, key_size});
  if (!status.ok())
    spdlog::error("journal {}: cannot delete snapshot of partition {} at seq "
                  "{}: {}",
                  impl_->path, partition, covered_seq, status.ToString());
  return status.ok();
}

// -- properties ---------------------------------------------------------------

uint64_t journal::approximate_size() const {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator{impl_->path, ec}) {
    std::error_code size_ec;
    if (entry.is_regular_file(size_ec)) {
      auto size = entry.file_size(size_ec);
      if (!size_ec)
        total += size;
    }
  }
  return total;
}

size_t journal::pending_bytes() const noexcept {
  return impl_->pending.load(std::memory_order_relaxed);
}

bool journal::backpressure() const noexcept {
  return pending_bytes() > impl_->opts.max_pending_bytes;
}

journal_stats journal::stats() const noexcept {
  journal_stats s;
  auto& x = *impl_;
  s.appends = x.appends.load(std::memory_order_relaxed);
  s.appended_bytes = x.appended_bytes.load(std::memory_order_relaxed);
  s.batches = x.batches.load(std::memory_order_relaxed);
  s.fsyncs = x.fsyncs.load(std::memory_order_relaxed);
  s.snapshots = x.snapshots.load(std::memory_order_relaxed);
  s.snapshot_bytes = x.snapshot_bytes.load(std::memory_order_relaxed);
  s.prunes = x.prunes.load(std::memory_order_relaxed);
  s.pruned_keys = x.pruned_keys.load(std::memory_order_relaxed);
  s.write_errors = x.write_errors.load(std::memory_order_relaxed);
  return s;
}

const journal_options& journal::options() const noexcept {
  return impl_->opts;
}

const std::string& journal::path() const noexcept {
  return impl_->path;
}

} // namespace cairn::runtime
