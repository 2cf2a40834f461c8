// live_clients: many WebSocket subscribers of a node's /v1/live in one
// process, for tests/soak/live_bench.py (docs/benchmarks.md, "Live
// subscriptions"). Not a Google Benchmark.
//
// Opens --clients WebSockets (blocking handshakes, one after the other),
// subscribes client i to query i % (number of --query lines), then reads
// every socket with non-blocking recv from --threads epoll loops until
// --seconds have passed (with --poll-us, each loop sleeps that long before
// each epoll_wait: it then wakes once per interval, not once per frame,
// and that delay is part of the lag it measures). For every update it receives it records the lag:
// arrival (wall clock, taken right after the recv that completed the frame)
// minus (the update's newest "t" + --step + --grace), i.e. from the moment
// the bucket counts as closed to delivery.
//
// Why C++: the lag is measured at the client, and a Python client spends
// tens of microseconds of CPU per message — at 10,000 subscribers that is
// a large share of the same cores the node runs on, and its own queueing
// shows up as lag. This one costs a recv and a short scan per message.
//
// Output (stdout): "ready <opened> <failed>" once every client subscribed,
// then, at the end, "lag <window_start_ms> <lag_ms>" per update after
// --skip-ms of updates, and "done <snapshots> <updates> <closed>
// <clients without a measured update>". Reads the queries
// (one JSON object per line) from the file --queries.
//
// Threading: the handshakes on the main thread, then one epoll loop per
// thread, each over its share of the sockets; no shared state until the end.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

struct options {
  uint16_t port = 0;
  int clients = 1000;
  int threads = 1;
  double seconds = 20;
  int64_t step_ms = 1000;
  int64_t grace_ms = 200;
  int64_t skip_ms = 2000;
  int64_t poll_us = 0;
  std::string queries_file;
  std::string token;
};

double wall_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(system_clock::now().time_since_epoch())
    .count();
}

/// A masked client text frame (RFC 6455 5.2).
std::string client_frame(uint8_t opcode, std::string_view payload) {
  static thread_local std::mt19937 rng{std::random_device{}()};
  std::string out;
  out.push_back(static_cast<char>(0x80 | opcode));
  auto n = payload.size();
  if (n < 126) {
    out.push_back(static_cast<char>(0x80 | n));
  } else if (n < 65536) {
    out.push_back(static_cast<char>(0x80 | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
  } else {
    out.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i)
      out.push_back(static_cast<char>((uint64_t{n} >> (8 * i)) & 0xff));
  }
  uint32_t mask = rng();
  char m[4];
  std::memcpy(m, &mask, 4);
  out.append(m, 4);
  for (size_t i = 0; i < n; ++i)
    out.push_back(static_cast<char>(payload[i] ^ m[i % 4]));
  return out;
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

struct client {
  int fd = -1;
  std::string buf;  ///< bytes read, not yet a whole frame
  int64_t measured = 0;  ///< updates with a lag recorded
};

/// Connects and upgrades; returns the socket (blocking) or -1. Bytes read
/// past the handshake's response go to `rest`.
int ws_open(const options& opt, std::string& rest) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(opt.port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::string req = "GET /v1/live HTTP/1.1\r\nHost: 127.0.0.1:"
                    + std::to_string(opt.port)
                    + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n";
  if (!opt.token.empty())
    req += "Authorization: Bearer " + opt.token + "\r\n";
  req += "\r\n";
  if (!send_all(fd, req)) {
    ::close(fd);
    return -1;
  }
  std::string in;
  char tmp[4096];
  size_t end;
  while ((end = in.find("\r\n\r\n")) == std::string::npos) {
    auto n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) {
      ::close(fd);
      return -1;
    }
    in.append(tmp, static_cast<size_t>(n));
  }
  if (in.compare(0, 12, "HTTP/1.1 101") != 0) {
    ::close(fd);
    return -1;
  }
  rest = in.substr(end + 4);
  return fd;
}

/// The largest "t":N in the message, or -1.
int64_t newest_t(std::string_view msg) {
  int64_t best = -1;
  size_t pos = 0;
  while ((pos = msg.find("\"t\":", pos)) != std::string_view::npos) {
    pos += 4;
    int64_t v = 0;
    bool any = false;
    while (pos < msg.size() && msg[pos] >= '0' && msg[pos] <= '9') {
      v = v * 10 + (msg[pos] - '0');
      ++pos;
      any = true;
    }
    if (any && v > best)
      best = v;
  }
  return best;
}

struct loop_result {
  std::vector<std::pair<int64_t, double>> lags;  ///< (window start, lag ms)
  int64_t snapshots = 0;
  int64_t updates = 0;
  int64_t closed = 0;
};

/// Reads the clients until `deadline` (wall ms).
void run_loop(const options& opt, std::vector<client>& cs, double deadline,
              std::atomic<int64_t>& first_window, loop_result& res) {
  int ep = ::epoll_create1(0);
  for (size_t i = 0; i < cs.size(); ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
  }
  std::vector<epoll_event> events(1024);
  std::vector<char> tmp(1 << 16);
  // Frames already in the buffers from the handshake are parsed at the
  // first read of their socket.
  while (wall_ms() < deadline) {
    // --poll-us: collect readiness at most this often instead of waking
    // for every frame (the wait is inside every lag measured after it).
    if (opt.poll_us > 0)
      ::usleep(static_cast<useconds_t>(opt.poll_us));
    int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()),
                         100);
    for (int k = 0; k < n; ++k) {
      auto& c = cs[events[k].data.u64];
      auto got = ::recv(c.fd, tmp.data(), tmp.size(), 0);
      if (got < 0 && (errno == EAGAIN || errno == EINTR))
        continue;
      double arrived = wall_ms();
      if (got <= 0) {
        ::epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
        ++res.closed;
        continue;
      }
      c.buf.append(tmp.data(), static_cast<size_t>(got));
      size_t pos = 0;
      for (;;) {
        std::string_view b{c.buf};
        b.remove_prefix(pos);
        if (b.size() < 2)
          break;
        auto op = static_cast<uint8_t>(b[0]) & 0x0F;
        uint64_t len = static_cast<uint8_t>(b[1]) & 0x7F;
        size_t head = 2;
        if (len == 126) {
          if (b.size() < 4)
            break;
          len = (uint64_t{static_cast<uint8_t>(b[2])} << 8)
                | static_cast<uint8_t>(b[3]);
          head = 4;
        } else if (len == 127) {
          if (b.size() < 10)
            break;
          len = 0;
          for (int i = 0; i < 8; ++i)
            len = (len << 8) | static_cast<uint8_t>(b[2 + i]);
          head = 10;
        }
        if (b.size() < head + len)
          break;
        auto payload = b.substr(head, len);
        pos += head + len;
        if (op == 0x9) {
          send_all(c.fd, client_frame(0xA, payload));
          continue;
        }
        if (op != 0x1)
          continue;
        if (payload.substr(0, 80).find("\"type\":\"snapshot\"")
            != std::string_view::npos) {
          ++res.snapshots;
          continue;
        }
        auto t = newest_t(payload);
        if (t < 0)
          continue;
        ++res.updates;
        int64_t expected = -1;
        first_window.compare_exchange_strong(expected, t);
        if (t >= first_window.load() + opt.skip_ms) {
          res.lags.emplace_back(t, arrived - double(t + opt.step_ms
                                                    + opt.grace_ms));
          ++c.measured;
        }
      }
      c.buf.erase(0, pos);
    }
  }
  ::close(ep);
}

void usage() {
  std::fprintf(stderr,
               "usage: live_clients --port P --queries FILE [--clients N] "
               "[--threads T] [--seconds S] [--step-ms MS] [--grace-ms MS] "
               "[--skip-ms MS] [--poll-us US] [--token JWT]\n");
  std::exit(2);
}

} // namespace

int main(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (i + 1 >= argc)
      usage();
    std::string v = argv[++i];
    if (a == "--port")
      opt.port = static_cast<uint16_t>(std::stoi(v));
    else if (a == "--clients")
      opt.clients = std::stoi(v);
    else if (a == "--threads")
      opt.threads = std::max(1, std::stoi(v));
    else if (a == "--seconds")
      opt.seconds = std::stod(v);
    else if (a == "--step-ms")
      opt.step_ms = std::stoll(v);
    else if (a == "--grace-ms")
      opt.grace_ms = std::stoll(v);
    else if (a == "--skip-ms")
      opt.skip_ms = std::stoll(v);
    else if (a == "--poll-us")
      opt.poll_us = std::stoll(v);
    else if (a == "--queries")
      opt.queries_file = v;
    else if (a == "--token")
      opt.token = v;
    else
      usage();
  }
  if (opt.port == 0 || opt.queries_file.empty())
    usage();
  std::vector<std::string> queries;
  {
    std::ifstream in{opt.queries_file};
    for (std::string line; std::getline(in, line);)
      if (!line.empty())
        queries.push_back(line);
  }
  if (queries.empty()) {
    std::fprintf(stderr, "live_clients: no queries in %s\n",
                 opt.queries_file.c_str());
    return 2;
  }
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &rl);

  // Handshakes and subscribes, one client after the other.
  std::vector<std::vector<client>> shares(static_cast<size_t>(opt.threads));
  int failed = 0;
  for (int i = 0; i < opt.clients; ++i) {
    std::string rest;
    int fd = ws_open(opt, rest);
    if (fd < 0) {
      ++failed;
      continue;
    }
    auto sub = "{\"op\":\"subscribe\",\"id\":" + std::to_string(i)
               + ",\"query\":" + queries[static_cast<size_t>(i) % queries.size()]
               + "}";
    if (!send_all(fd, client_frame(0x1, sub))) {
      ::close(fd);
      ++failed;
      continue;
    }
    timeval none{0, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    shares[static_cast<size_t>(i % opt.threads)].push_back(
      client{fd, std::move(rest)});
  }
  std::printf("ready %d %d\n", opt.clients - failed, failed);
  std::fflush(stdout);

  std::atomic<int64_t> first_window{-1};
  std::vector<loop_result> results(shares.size());
  double deadline = wall_ms() + opt.seconds * 1000;
  std::vector<std::thread> threads;
  for (size_t t = 0; t < shares.size(); ++t)
    threads.emplace_back([&, t] {
      run_loop(opt, shares[t], deadline, first_window, results[t]);
    });
  for (auto& t : threads)
    t.join();
  int64_t snapshots = 0, updates = 0, closed = 0;
  for (auto& r : results) {
    for (auto& [w, lag] : r.lags)
      std::printf("lag %lld %.3f\n", static_cast<long long>(w), lag);
    snapshots += r.snapshots;
    updates += r.updates;
    closed += r.closed;
  }
  // Clients that had no update measured at all (a stuck one would not show
  // in the percentiles otherwise).
  int64_t unmeasured = 0;
  for (auto& share : shares)
    for (auto& c : share)
      unmeasured += c.measured == 0;
  std::printf("done %lld %lld %lld %lld\n", static_cast<long long>(snapshots),
              static_cast<long long>(updates), static_cast<long long>(closed),
              static_cast<long long>(unmeasured));
  for (auto& share : shares)
    for (auto& c : share)
      ::close(c.fd);
  return 0;
}
