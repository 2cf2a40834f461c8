#include "runtime/stream_sink.hpp"

#include <algorithm>

namespace cairn::runtime {

stream_sink::stream_sink(uint64_t id, size_t max_backlog,
                         std::function<void()> wake)
  : id_(id), max_backlog_(std::max<size_t>(1, max_backlog)),
    wake_(std::move(wake)) {
}

bool stream_sink::send(std::string text) {
  return send(std::move(text), nullptr);
}

bool stream_sink::send(std::string head, shared_text body) {
  bool wake = false;
  bool overflow = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_)
      return false;
    if (control_.size() >= max_backlog_) {
      closed_ = true;
      overflow = true;
      control_.clear();
      updates_.clear();
    } else {
      control_.push_back(stream_message{std::move(head), std::move(body)});
    }
    wake = !pulling_ || overflow;
    pulling_ = true;
  }
  if (wake && wake_)
    wake_();
  return !overflow;
}

stream_sink::offer stream_sink::update(const std::string& key,
                                       std::string text) {
  return update(key, std::move(text), nullptr);
}

stream_sink::offer stream_sink::update(const std::string& key,
                                       std::string head, shared_text body) {
  bool wake = false;
  offer result = offer::queued;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_)
      return offer::closed;
    auto it = std::find_if(updates_.begin(), updates_.end(),
                           [&](const auto& u) { return u.key == key; });
    if (it != updates_.end()) {
      it->msg = stream_message{std::move(head), std::move(body)};
      result = offer::coalesced;
    } else {
      updates_.push_back(
        keyed_update{key, stream_message{std::move(head), std::move(body)}});
    }
    wake = !pulling_;
    pulling_ = true;
  }
  if (wake && wake_)
    wake_();
  return result;
}

void stream_sink::forget(const std::string& key) {
  std::lock_guard<std::mutex> guard{mtx_};
  updates_.erase(std::remove_if(updates_.begin(), updates_.end(),
                                [&](const auto& u) { return u.key == key; }),
                 updates_.end());
}

void stream_sink::close() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_)
      return;
    closed_ = true;
    control_.clear();
    updates_.clear();
  }
  // The session sees closed() on its next pull and closes the socket.
  if (wake_)
    wake_();
}

void stream_sink::close_after_queued() {
  bool wake = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (closed_ || finishing_)
      return;
    finishing_ = true;
    wake = !pulling_;
    pulling_ = true;
  }
  // The session drains the queue, then sees finishing() with nothing left.
  if (wake && wake_)
    wake_();
}

bool stream_sink::finishing() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return finishing_;
}

bool stream_sink::closed() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return closed_;
}

void stream_sink::on_close(std::function<void()> f) {
  bool now = false;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (close_fired_)
      now = true;
    else
      on_close_ = std::move(f);
  }
  if (now && f)
    f();
}

bool stream_sink::next(std::string& out) {
  stream_message msg;
  if (!next(msg))
    return false;
  if (msg.body) {
    msg.head.reserve(msg.size());
    msg.head += *msg.body;
  }
  out = std::move(msg.head);
  return true;
}

bool stream_sink::next(stream_message& out) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (!control_.empty()) {
    out = std::move(control_.front());
    control_.pop_front();
    return true;
  }
  if (!updates_.empty()) {
    out = std::move(updates_.front().msg);
    updates_.pop_front();
    return true;
  }
  pulling_ = false;
  return false;
}

void stream_sink::mark_closed() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    closed_ = true;
    control_.clear();
    updates_.clear();
  }
  fire_close();
}

void stream_sink::fire_close() {
  std::function<void()> f;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (close_fired_)
      return;
    close_fired_ = true;
    f = std::move(on_close_);
  }
  if (f)
    f();
}

size_t stream_sink::backlog() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return control_.size() + updates_.size();
}

} // namespace cairn::runtime
