// cairn-console: an actor REPL for a running Cairn node (docs/console.md).
//
// Joins as a CAF client through the node's cluster port and talks to its
// node actor directly (TLS with --tls or any --openssl.* option). Reads
// commands from --exec, from a terminal with line editing, or from a pipe.
#include "shell.hpp"
#include "interrupt.hpp"
#include "line_editor.hpp"
#include "node_link.hpp"

#include "actors/messages.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>

#include <unistd.h>

#include <iostream>
#include <optional>
#include <string>
#include <vector>

using namespace cairn;
using namespace cairn::console;

namespace {

constexpr const char* usage_text = R"(usage: cairn-console [OPTIONS]

Connects to a running cairn-node through its cluster port and runs commands
against its actors: interactively (line editing, history, Tab completion),
from --exec, or one per line from standard input.

options:
  --connect=HOST:PORT     the node's cluster port (default 127.0.0.1:7400)
  --exec="CMD; CMD"       run these commands and exit (status 0 if all
                          succeeded, 1 on a failed command, 2 if the node
                          cannot be reached); stops at the first failure
  --json                  print one JSON object per command (machine-readable)
  --timeout=SECONDS       reply timeout of one request (default 10)
  --reconnect-wait=SECS   how long a command waits for a lost node to come
                          back (default 30 interactive, --timeout otherwise)
  --tls                   connect with TLS (implied by any --openssl.* option)
  --openssl.certificate=PEM --openssl.key=PEM --openssl.cafile=PEM
  --openssl.passphrase=.. --openssl.capath=DIR
                          mutual TLS material (same as the cluster's)
  --history-file=PATH     default ~/.cairn_console_history
  -h, --help              this text

Type 'help' inside the console for the commands.
)";

struct options {
  std::string host = "127.0.0.1";
  uint16_t port = 7400;
  std::optional<std::string> exec;
  bool json = false;
  bool tls = false;
  int timeout_s = 10;
  int reconnect_wait_s = -1;
  std::string history_file = default_history_file();
  std::vector<std::string> caf_args;
};

bool parse_address(const std::string& text, std::string& host,
                   uint16_t& port) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= text.size())
    return false;
  auto h = text.substr(0, colon);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']')
    h = h.substr(1, h.size() - 2);
  auto p = text.substr(colon + 1);
  if (p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos)
    return false;
  auto n = std::stoul(p);
  if (n == 0 || n > 65535)
    return false;
  host = h;
  port = static_cast<uint16_t>(n);
  return true;
}

bool parse_int(const std::string& s, int& out) {
  if (s.empty() || s.size() > 6
      || s.find_first_not_of("0123456789") != std::string::npos)
    return false;
  out = std::stoi(s);
  return true;
}

/// Parses argv; returns an exit status to stop with, or nullopt to go on.
std::optional<int> parse_options(int argc, char** argv, options& o) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    auto eq = arg.find('=');
    std::string name = arg;
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    auto take = [&](const char* what) -> bool {
      if (has_value)
        return true;
      if (i + 1 >= argc) {
        std::cerr << "cairn-console: " << what << " needs a value\n";
        return false;
      }
      value = argv[++i];
      return true;
    };
    if (name == "-h" || name == "--help") {
      std::cout << usage_text;
      return 0;
    } else if (name == "--connect" || name == "-c") {
      if (!take("--connect"))
        return exit_code::usage;
      if (!parse_address(value, o.host, o.port)) {
        std::cerr << "cairn-console: --connect wants HOST:PORT, got '" << value
                  << "'\n";
        return exit_code::usage;
      }
    } else if (name == "--exec" || name == "-e") {
      if (!take("--exec"))
        return exit_code::usage;
      o.exec = value;
    } else if (name == "--json") {
      o.json = true;
    } else if (name == "--tls") {
      o.tls = true;
    } else if (name == "--timeout") {
      if (!take("--timeout") || !parse_int(value, o.timeout_s)
          || o.timeout_s == 0) {
        std::cerr << "cairn-console: --timeout wants whole seconds > 0\n";
        return exit_code::usage;
      }
    } else if (name == "--reconnect-wait") {
      if (!take("--reconnect-wait") || !parse_int(value, o.reconnect_wait_s)) {
        std::cerr << "cairn-console: --reconnect-wait wants whole seconds\n";
        return exit_code::usage;
      }
    } else if (name == "--history-file") {
      if (!take("--history-file"))
        return exit_code::usage;
      o.history_file = value;
    } else if (arg.rfind("--openssl.", 0) == 0
               || arg.rfind("--middleman.", 0) == 0
               || arg.rfind("--scheduler.", 0) == 0) {
      if (arg.rfind("--openssl.", 0) == 0)
        o.tls = true;
      o.caf_args.push_back(arg);
    } else {
      std::cerr << "cairn-console: unknown option '" << arg
                << "' (see --help)\n";
      return exit_code::usage;
    }
  }
  return std::nullopt;
}

int run_lines(shell& c, std::istream& in) {
  for (std::string line; std::getline(in, line);) {
    auto status = c.execute(line);
    if (status != exit_code::ok || c.done())
      return status;
  }
  return exit_code::ok;
}

int run_interactive(shell& c, node_link& link, const options& o) {
  line_editor editor{o.history_file,
                     [&c](const std::vector<std::string>& before,
                          const std::string& prefix) {
                       return c.complete(before, prefix);
                     }};
  auto st = link.status();
  if (st.connected) {
    auto r = link.call({{"cmd", "ping"}}, std::chrono::seconds{2});
    std::cout << "connected to " << r.reply.value("node", std::string{"?"})
              << " (cairn " << r.reply.value("version", std::string{"?"})
              << ", " << r.reply.value("status", std::string{"?"}) << ") at "
              << link.address() << "\n";
  } else {
    std::cout << "not connected to " << link.address() << ": "
              << st.last_error << "; retrying in the background\n";
  }
  std::cout << "type 'help' for the commands; Tab completes, Ctrl-C cancels, "
               "Ctrl-D leaves"
            << std::endl;
  while (!c.done()) {
    auto line = editor.read(c.prompt());
    if (!line) {
      std::cout << std::endl;
      break;
    }
    editor.remember(*line);
    c.execute(*line);
  }
  return exit_code::ok;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  if (auto status = parse_options(argc, argv, o))
    return *status;
  caf::actor_system_config cfg;
  actors::register_message_types(cfg);
  cfg.set("scheduler.max-threads", 2);
  if (auto err = cfg.parse(o.caf_args)) {
    std::cerr << "cairn-console: " << cfg.render(err) << '\n';
    return exit_code::usage;
  }
  cfg.load<caf::io::middleman>();
  if (o.tls)
    cfg.load<caf::openssl::manager>();
  install_interrupt_handler();
  bool interactive = !o.exec && isatty(STDIN_FILENO) != 0;
  console_options copts;
  copts.json = o.json;
  copts.timeout = std::chrono::seconds{o.timeout_s};
  copts.reconnect_wait = std::chrono::seconds{
    o.reconnect_wait_s >= 0 ? o.reconnect_wait_s
    : interactive           ? 30
                            : o.timeout_s};
  int status = exit_code::ok;
  {
    caf::actor_system sys{cfg};
    node_link link{sys, o.host, o.port, o.tls};
    auto st = link.wait_connected(std::chrono::seconds{std::min(o.timeout_s, 5)},
                                  interrupted);
    shell c{link, copts, std::cout, std::cerr};
    if (!st.connected && !interactive) {
      auto msg = "cannot connect to " + link.address()
                 + (st.last_error.empty() ? std::string{}
                                          : ": " + st.last_error);
      if (o.json)
        std::cout << nlohmann::json{{"ok", false}, {"error", msg}}.dump()
                  << std::endl;
      else
        std::cerr << "error: " << msg << std::endl;
      return exit_code::transport;
    }
    if (o.exec) {
      for (auto& cmd : split_commands(*o.exec)) {
        status = c.execute(cmd);
        if (status != exit_code::ok || c.done())
          break;
      }
    } else if (interactive) {
      status = run_interactive(c, link, o);
    } else {
      status = run_lines(c, std::cin);
    }
  }
  return status;
}
