// parse_sink: the floor of the ingest work, for issue 14's ratio "Cairn
// durable >= 35 % of a sink that only reads the lines and parses them with
// simdjson" (docs/benchmarks.md, "Against a parse-only sink").
//
// Listens on 127.0.0.1:PORT; one thread per connection reads 256 KiB at a
// time, cuts lines and parses each with simdjson On-Demand (metric, ts,
// value and every tag string read), counting events. A line with "op" is
// answered the way cairn-node answers a flush: {"ok":true,"accepted":N,
// "rejected":M} for the events since the previous one, so cairn-bench
// measures the sink exactly as it measures a node. Nothing is stored,
// validated against limits or routed. Not a test: stop it with SIGTERM.
//
//   build/bench/parse_sink PORT
#include <simdjson.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

namespace od = simdjson::ondemand;

/// True if `line` is an event whose fields all parsed.
bool parse_event(od::parser& parser, simdjson::padded_string_view line) {
  od::document doc;
  if (parser.iterate(line).get(doc))
    return false;
  od::object obj;
  if (doc.get_object().get(obj))
    return false;
  bool has_metric = false;
  for (auto field : obj) {
    std::string_view k;
    if (field.unescaped_key().get(k))
      return false;
    if (k == "metric") {
      std::string_view m;
      if (field.value().get_string().get(m))
        return false;
      has_metric = !m.empty();
    } else if (k == "ts") {
      int64_t ts;
      if (field.value().get_int64().get(ts))
        return false;
    } else if (k == "value") {
      double v;
      if (field.value().get_double().get(v))
        return false;
    } else if (k == "tags") {
      od::object tags;
      if (field.value().get_object().get(tags))
        return false;
      for (auto tag : tags) {
        std::string_view tk, tv;
        if (tag.unescaped_key().get(tk) || tag.value().get_string().get(tv))
          return false;
      }
    }
  }
  return has_metric;
}

bool write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    auto n = ::write(fd, s.data(), s.size());
    if (n <= 0)
      return false;
    s.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void serve(int fd) {
  od::parser parser;
  std::string buf;
  buf.reserve(512 * 1024 + simdjson::SIMDJSON_PADDING);
  size_t begin = 0; // start of the first unparsed line in buf
  uint64_t accepted = 0, rejected = 0;
  char in[256 * 1024];
  for (;;) {
    auto n = ::read(fd, in, sizeof in);
    if (n <= 0)
      break;
    buf.erase(0, begin);
    begin = 0;
    buf.append(in, static_cast<size_t>(n));
    // simdjson reads up to SIMDJSON_PADDING bytes past a line: the rest of
    // the buffer, and a padded tail after the last one.
    auto size = buf.size();
    buf.append(simdjson::SIMDJSON_PADDING, ' ');
    for (;;) {
      auto nl = buf.find('\n', begin);
      if (nl == std::string::npos || nl >= size)
        break;
      std::string_view line{buf.data() + begin, nl - begin};
      if (line.find("\"op\"") != std::string_view::npos) {
        auto reply = "{\"ok\":true,\"accepted\":" + std::to_string(accepted)
                     + ",\"rejected\":" + std::to_string(rejected) + "}\n";
        accepted = rejected = 0;
        if (!write_all(fd, reply))
          return;
      } else if (parse_event(parser, simdjson::padded_string_view{
                                       line.data(), line.size(),
                                       buf.size() - begin})) {
        ++accepted;
      } else {
        ++rejected;
      }
      begin = nl + 1;
    }
    buf.resize(size);
  }
  ::close(fd);
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: parse_sink PORT\n");
    return 2;
  }
  int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[1])));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0
      || ::listen(ls, 64) != 0) {
    std::perror("parse_sink: listen");
    return 1;
  }
  std::printf("listening on 127.0.0.1:%s\n", argv[1]);
  std::fflush(stdout);
  for (;;) {
    int fd = ::accept(ls, nullptr, nullptr);
    if (fd < 0)
      continue;
    std::thread{serve, fd}.detach();
  }
}
