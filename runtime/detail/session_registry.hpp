// session_registry: the live sessions of a server, and the graceful stop that
// tcp_server and http_server share.
//
// A server's shared state holds one registry; sessions hold that state (and
// so the io_context) and the registry holds the sessions until they close or
// the server stops. Replies computed elsewhere (actors) reach a session by a
// post to its strand; `post_if_running` makes that post under the registry's
// lock, so that once `graceful_stop` has closed the door no handler can be
// queued on an io_context nobody runs any more (it would keep its session,
// the shared state and the io_context alive for ever).
//
// `Session` needs `bool busy() const` (work in flight that the grace period
// should wait for) and `void post_close()` (closes it on its strand; any
// thread).
//
// Threading: every member may be called from any thread.
#pragma once

#include "runtime/detail/io_threads.hpp"
#include "runtime/detail/listener.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace cairn::runtime::detail {

template <class Session>
class session_registry {
public:
  using session_ptr = std::shared_ptr<Session>;

  /// A fresh session id (1, 2, ...).
  uint64_t next_id() noexcept {
    return next_id_.fetch_add(1, std::memory_order_relaxed);
  }

  void add(uint64_t id, session_ptr s) {
    std::lock_guard<std::mutex> guard{mtx_};
    sessions_.emplace(id, std::move(s));
  }

  /// Forgets a session; it is destroyed outside the lock if this was the
  /// last reference.
  void remove(uint64_t id) {
    session_ptr victim;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      auto i = sessions_.find(id);
      if (i == sessions_.end())
        return;
      victim = std::move(i->second);
      sessions_.erase(i);
    }
  }

  std::vector<session_ptr> all() {
    std::lock_guard<std::mutex> guard{mtx_};
    std::vector<session_ptr> out;
    out.reserve(sessions_.size());
    for (auto& kv : sessions_)
      out.push_back(kv.second);
    return out;
  }

  /// Runs `post` (which should post a handler to a session's strand) under
  /// the lock, unless the server has stopped its I/O threads; then the
  /// reply is dropped.
  template <class F>
  void post_if_running(F&& post) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (accepting_posts_)
      std::forward<F>(post)();
  }

  /// The stop sequence of both servers: stop accepting; wait up to `grace`
  /// while any session is busy; close every session and let the I/O threads
  /// run out and join them; from then on drop late replies, run what is
  /// still queued on the calling thread and forget every session. Called
  /// once, by the thread stopping the server, never from an I/O thread.
  void graceful_stop(std::shared_ptr<listener>& acceptor, io_threads& threads,
                     std::chrono::milliseconds grace) {
    using clock = std::chrono::steady_clock;
    // 1. No new connections.
    if (acceptor)
      acceptor->post_close();
    // 2. Let the work in flight complete.
    auto deadline = clock::now() + grace;
    for (;;) {
      auto sessions = all();
      bool busy = std::any_of(sessions.begin(), sessions.end(),
                              [](auto& s) { return s->busy(); });
      if (!busy || clock::now() >= deadline)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }
    // 3. Close every connection and let the I/O threads run out of work.
    for (auto& s : all())
      s->post_close();
    threads.run_out();
    // 4. Drop late completions; run what is still queued (closing handlers,
    //    aborted operations) so that no handler keeps a session, and with it
    //    the shared state, alive.
    {
      std::lock_guard<std::mutex> guard{mtx_};
      accepting_posts_ = false;
    }
    for (auto& s : all())
      s->post_close();
    threads.drain();
    std::unordered_map<uint64_t, session_ptr> victims;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      victims.swap(sessions_);
    }
    victims.clear();
    acceptor.reset();
  }

private:
  std::mutex mtx_;  ///< guards `sessions_` and `accepting_posts_`
  std::unordered_map<uint64_t, session_ptr> sessions_;
  /// False once the I/O threads are gone.
  bool accepting_posts_ = true;
  std::atomic<uint64_t> next_id_{1};
};

} // namespace cairn::runtime::detail
