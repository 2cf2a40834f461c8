#include "alerts/alert_store.hpp"

#include <leveldb/db.h>
#include <leveldb/write_batch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace cairn::alerts {

using nlohmann::json;

kv_store::~kv_store() = default;

namespace {

class memory_kv : public kv_store {
public:
  bool write(const std::vector<kv_op>& ops, bool) override {
    for (auto& op : ops) {
      if (op.erase)
        data_.erase(op.key);
      else
        data_[op.key] = op.value;
    }
    return true;
  }
  bool put(const std::string& k, const std::string& v) override {
    data_[k] = v;
    return true;
  }
  bool erase(const std::string& k) override {
    data_.erase(k);
    return true;
  }
  std::vector<std::pair<std::string, std::string>>
  scan(const std::string& prefix) override {
    std::vector<std::pair<std::string, std::string>> out;
    for (auto it = data_.lower_bound(prefix);
         it != data_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
         ++it)
      out.emplace_back(*it);
    return out;
  }

private:
  std::map<std::string, std::string> data_;
};

class leveldb_kv : public kv_store {
public:
  explicit leveldb_kv(const std::string& path) {
    leveldb::Options opts;
    opts.create_if_missing = true;
    leveldb::DB* db = nullptr;
    auto s = leveldb::DB::Open(opts, path, &db);
    if (!s.ok())
      throw std::runtime_error("cannot open alert store " + path + ": "
                               + s.ToString());
    db_.reset(db);
  }
  bool write(const std::vector<kv_op>& ops, bool sync) override {
    leveldb::WriteBatch batch;
    for (auto& op : ops) {
      if (op.erase)
        batch.Delete(op.key);
      else
        batch.Put(op.key, op.value);
    }
    leveldb::WriteOptions w;
    w.sync = sync;
    return db_->Write(w, &batch).ok();
  }
  bool put(const std::string& k, const std::string& v) override {
    leveldb::WriteOptions w;
    w.sync = true;
    return db_->Put(w, k, v).ok();
  }
  bool erase(const std::string& k) override {
    leveldb::WriteOptions w;
    w.sync = true;
    return db_->Delete(w, k).ok();
  }
  std::vector<std::pair<std::string, std::string>>
  scan(const std::string& prefix) override {
    std::vector<std::pair<std::string, std::string>> out;
    std::unique_ptr<leveldb::Iterator> it{db_->NewIterator({})};
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next())
      out.emplace_back(it->key().ToString(), it->value().ToString());
    return out;
  }

private:
  std::unique_ptr<leveldb::DB> db_;
};

std::string seq_key(char kind, uint64_t seq) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%c/%016llx", kind,
                static_cast<unsigned long long>(seq));
  return buf;
}

uint64_t seq_of(const std::string& key) {
  return std::strtoull(key.c_str() + 2, nullptr, 16);
}

std::string instance_key(const std::string& rule, const std::string& group) {
  std::string k = "i/";
  k += rule;
  k += '\0';
  k += group;
  return k;
}

json num(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}

} // namespace

std::unique_ptr<kv_store> make_memory_kv() {
  return std::make_unique<memory_kv>();
}

std::unique_ptr<kv_store> open_leveldb_kv(const std::string& path) {
  return std::make_unique<leveldb_kv>(path);
}

std::string_view to_string(rule_event_kind k) noexcept {
  switch (k) {
    case rule_event_kind::created:
      return "created";
    case rule_event_kind::updated:
      return "updated";
    case rule_event_kind::deleted:
      return "deleted";
  }
  return "?";
}

json to_json(const instance_record& r) {
  json labels = json::array();
  for (auto& [k, v] : r.labels)
    labels.push_back({k, v});
  auto& x = r.state;
  return json{{"rule", r.rule},
              {"group", r.group},
              {"labels", labels},
              {"state", std::string{to_string(x.state)}},
              {"active_since", x.active_since},
              {"fired_at", x.fired_at},
              {"resolved_at", x.resolved_at},
              {"last_true", x.last_true},
              {"value", num(x.value)},
              {"episode", x.episode},
              {"last_notified", x.last_notified},
              {"clock", r.clock},
              {"origin", r.origin},
              {"unsent", r.unsent}};
}

std::optional<instance_record> instance_from_json(const json& j) {
  try {
    instance_record r;
    r.rule = j.at("rule").get<std::string>();
    r.group = j.at("group").get<std::string>();
    for (auto& p : j.at("labels"))
      r.labels.emplace_back(p.at(0).get<std::string>(),
                            p.at(1).get<std::string>());
    auto s = state_from_string(j.at("state").get<std::string>());
    if (!s)
      return std::nullopt;
    auto& x = r.state;
    x.state = *s;
    x.active_since = j.at("active_since").get<millis>();
    x.fired_at = j.at("fired_at").get<millis>();
    x.resolved_at = j.at("resolved_at").get<millis>();
    x.last_true = j.at("last_true").get<millis>();
    x.value = j.at("value").is_number() ? j.at("value").get<double>() : NAN;
    x.episode = j.at("episode").get<uint64_t>();
    x.last_notified = j.at("last_notified").get<millis>();
    r.clock = j.value("clock", uint64_t{0});
    r.origin = j.value("origin", std::string{});
    r.unsent = j.value("unsent", std::string{});
    return r;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

json to_json(const notice& n) {
  json receivers = json::array();
  for (auto& rc : n.receivers)
    receivers.push_back(
      {{"url", rc.url}, {"headers", rc.headers}, {"secret", rc.secret}});
  return json{{"rule", n.rule},
              {"group", n.group},
              {"status", n.status},
              {"key", n.key},
              {"labels", n.labels},
              {"annotations", n.annotations},
              {"value", num(n.value)},
              {"starts_at", n.starts_at},
              {"ends_at", n.ends_at},
              {"receivers", receivers},
              {"repeat", n.repeat}};
}

std::optional<notice> notice_from_json(const json& j) {
  try {
    notice n;
    n.rule = j.at("rule").get<std::string>();
    n.group = j.at("group").get<std::string>();
    n.status = j.at("status").get<std::string>();
    n.key = j.at("key").get<std::string>();
    n.labels = j.at("labels").get<std::map<std::string, std::string>>();
    n.annotations =
      j.at("annotations").get<std::map<std::string, std::string>>();
    n.value = j.at("value").is_number() ? j.at("value").get<double>() : 0;
    n.starts_at = j.at("starts_at").get<millis>();
    n.ends_at = j.at("ends_at").get<millis>();
    for (auto& rc : j.at("receivers"))
      n.receivers.push_back(
        {rc.at("url").get<std::string>(),
         rc.at("headers").get<std::map<std::string, std::string>>(),
         rc.at("secret").get<std::string>()});
    n.repeat = j.at("repeat").get<uint32_t>();
    return n;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

alert_store::alert_store(std::unique_ptr<kv_store> kv, size_t history_keep)
  : kv_(std::move(kv)), history_keep_(history_keep) {
  auto events = kv_->scan("e/");
  event_count_ = events.size();
  if (!events.empty())
    next_event_ = seq_of(events.back().first) + 1;
  auto box = kv_->scan("o/");
  if (!box.empty())
    next_outbox_ = seq_of(box.back().first) + 1;
  auto hist = kv_->scan("h/");
  if (!hist.empty()) {
    oldest_history_ = seq_of(hist.front().first);
    next_history_ = seq_of(hist.back().first) + 1;
  }
}

bool alert_store::append(rule_event& e, bool sync) {
  std::lock_guard lk{mtx_};
  e.seq = next_event_;
  json j{{"seq", e.seq},
         {"kind", std::string{to_string(e.kind)}},
         {"name", e.name},
         {"rule", e.rule},
         {"at", e.at},
         {"clock", e.st.clock},
         {"origin", e.st.origin}};
  if (!kv_->write({{seq_key('e', e.seq),
                    j.dump(-1, ' ', false, json::error_handler_t::replace)}},
                  sync))
    return false;
  ++next_event_;
  ++event_count_;
  return true;
}

std::vector<rule_event> alert_store::rule_events() {
  std::lock_guard lk{mtx_};
  std::vector<rule_event> out;
  corrupt_ = 0;
  for (auto& [k, v] : kv_->scan("e/")) {
    auto j = json::parse(v, nullptr, false);
    try {
      rule_event e;
      e.seq = j.at("seq").get<uint64_t>();
      auto kind = j.at("kind").get<std::string>();
      e.kind = kind == "created"   ? rule_event_kind::created
               : kind == "updated" ? rule_event_kind::updated
                                   : rule_event_kind::deleted;
      e.name = j.at("name").get<std::string>();
      e.rule = j.at("rule");
      e.at = j.at("at").get<millis>();
      e.st.clock = j.value("clock", uint64_t{0});
      e.st.origin = j.value("origin", std::string{});
      out.push_back(std::move(e));
    } catch (const json::exception&) {
      ++corrupt_;
    }
  }
  return out;
}

std::map<std::string, rule_event> alert_store::rule_heads() {
  std::lock_guard lk{mtx_};
  std::map<std::string, rule_event> heads;
  for (auto& e : rule_events()) {
    auto it = heads.find(e.name);
    // Events of a single node before stamps: each one follows the last.
    if (e.st.clock == 0)
      e.st.clock = it == heads.end() ? 1 : it->second.st.clock + 1;
    if (it == heads.end())
      heads.emplace(e.name, std::move(e));
    else if (!newer(it->second.st, e.st))
      it->second = std::move(e);
  }
  return heads;
}

std::map<std::string, json> alert_store::load_rules() {
  std::lock_guard lk{mtx_};
  std::map<std::string, json> rules;
  for (auto& [name, e] : rule_heads()) {
    if (e.kind == rule_event_kind::deleted)
      continue;
    auto j = e.rule;
    j["version"] = e.st.clock;
    rules[name] = std::move(j);
  }
  return rules;
}

size_t alert_store::compact() {
  std::lock_guard lk{mtx_};
  auto heads = rule_heads();
  std::vector<kv_op> ops;
  for (auto& [k, v] : kv_->scan("e/")) {
    auto seq = seq_of(k);
    auto j = json::parse(v, nullptr, false);
    auto name = j.is_object() ? j.value("name", std::string{}) : std::string{};
    auto it = heads.find(name);
    // Kept: the head of its name, and what does not decode (counted as
    // corrupt, left for an operator to look at).
    if (it == heads.end() || it->second.seq == seq)
      continue;
    ops.push_back({k, {}, true});
  }
  if (ops.empty())
    return 0;
  if (!kv_->write(ops, true))
    return 0;
  event_count_ -= std::min(event_count_, ops.size());
  return ops.size();
}

bool alert_store::journal(const instance_record& r) {
  std::lock_guard lk{mtx_};
  auto key = instance_key(r.rule, r.group);
  if (r.erased)
    return kv_->erase(key);
  return kv_->put(key, to_json(r).dump());
}

std::vector<instance_record> alert_store::load_instances() {
  std::lock_guard lk{mtx_};
  std::vector<instance_record> out;
  for (auto& [k, v] : kv_->scan("i/")) {
    auto j = json::parse(v, nullptr, false);
    if (auto r = instance_from_json(j))
      out.push_back(std::move(*r));
    else
      ++corrupt_;
  }
  return out;
}

std::string alert_store::add_outbox(json n) {
  std::lock_guard lk{mtx_};
  auto id = seq_key('o', next_outbox_).substr(2);
  n["id"] = id;
  if (!kv_->put("o/" + id, n.dump(-1, ' ', false, json::error_handler_t::replace)))
    return {};
  ++next_outbox_;
  return id;
}

bool alert_store::put_outbox(const std::string& id, const json& n) {
  std::lock_guard lk{mtx_};
  return kv_->put("o/" + id, n.dump());
}

void alert_store::erase_outbox(const std::string& id) {
  std::lock_guard lk{mtx_};
  (void)kv_->erase("o/" + id);
}

std::vector<std::pair<std::string, json>> alert_store::outbox() {
  std::lock_guard lk{mtx_};
  std::vector<std::pair<std::string, json>> out;
  for (auto& [k, v] : kv_->scan("o/")) {
    auto j = json::parse(v, nullptr, false);
    if (j.is_discarded())
      ++corrupt_;
    else
      out.emplace_back(k.substr(2), std::move(j));
  }
  return out;
}

bool alert_store::put_dead_letter(const std::string& id, const json& n) {
  std::lock_guard lk{mtx_};
  return kv_->put("d/" + id, n.dump());
}

std::vector<json> alert_store::dead_letters() {
  std::lock_guard lk{mtx_};
  std::vector<json> out;
  for (auto& [k, v] : kv_->scan("d/")) {
    auto j = json::parse(v, nullptr, false);
    if (!j.is_discarded())
      out.push_back(std::move(j));
  }
  return out;
}

bool alert_store::record(json entry) {
  std::lock_guard lk{mtx_};
  entry["seq"] = next_history_;
  if (!kv_->put(seq_key('h', next_history_), entry.dump(-1, ' ', false,
                                                        json::error_handler_t::replace)))
    return false;
  ++next_history_;
  while (next_history_ - oldest_history_ > history_keep_)
    (void)kv_->erase(seq_key('h', oldest_history_++));
  return true;
}

std::vector<json> alert_store::history(size_t limit, const std::string& rule) {
  std::lock_guard lk{mtx_};
  std::vector<json> out;
  for (auto& [k, v] : kv_->scan("h/")) {
    auto j = json::parse(v, nullptr, false);
    if (j.is_discarded())
      continue;
    if (!rule.empty() && j.value("rule", std::string{}) != rule)
      continue;
    out.push_back(std::move(j));
  }
  if (out.size() > limit)
    out.erase(out.begin(), out.end() - static_cast<long>(limit));
  return out;
}

bool alert_store::commit(batch& b, bool sync) {
  std::lock_guard lk{mtx_};
  if (b.ops.empty())
    return true;
  bool ok = kv_->write(b.ops, sync);
  b.ops.clear();
  return ok;
}

std::string alert_store::add_outbox(batch& b, json n) {
  std::lock_guard lk{mtx_};
  auto id = seq_key('o', next_outbox_++).substr(2);
  n["id"] = id;
  b.ops.push_back({"o/" + id, n.dump(-1, ' ', false, json::error_handler_t::replace)});
  return id;
}

void alert_store::put_outbox(batch& b, const std::string& id, const json& n) {
  b.ops.push_back({"o/" + id, n.dump(-1, ' ', false, json::error_handler_t::replace)});
}

void alert_store::erase_outbox(batch& b, const std::string& id) {
  b.ops.push_back({"o/" + id, {}, true});
}

void alert_store::put_dead_letter(batch& b, const std::string& id, const json& n) {
  b.ops.push_back({"d/" + id, n.dump(-1, ' ', false, json::error_handler_t::replace)});
}

void alert_store::journal(batch& b, const instance_record& r) {
  auto key = instance_key(r.rule, r.group);
  if (r.erased)
    b.ops.push_back({key, {}, true});
  else
    b.ops.push_back({key, to_json(r).dump(-1, ' ', false, json::error_handler_t::replace)});
}

void alert_store::record(batch& b, json entry) {
  std::lock_guard lk{mtx_};
  entry["seq"] = next_history_;
  b.ops.push_back({seq_key('h', next_history_++),
                   entry.dump(-1, ' ', false, json::error_handler_t::replace)});
  while (next_history_ - oldest_history_ > history_keep_)
    b.ops.push_back({seq_key('h', oldest_history_++), {}, true});
}

} // namespace cairn::alerts
