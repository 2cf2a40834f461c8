#include "actors/write_routes.hpp"

#include "actors/reply.hpp"
#include "cqrs/error.hpp"
#include "cqrs/influx_parser.hpp"

#include <nlohmann/json.hpp>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace cairn::actors {

namespace {

using nlohmann::json;

constexpr auto dump_mode = json::error_handler_t::replace;

/// Most line problems listed in a 400 body (the count is always complete).
constexpr size_t max_listed = 1000;

/// A /write body is cut into chunks of about this size, like the TCP
/// gateway's (runtime/tcp_server.hpp, max_chunk).
constexpr size_t chunk_bytes = 64 * 1024;

/// HTTP ids, disjoint from the TCP gateway's and from POST /api's.
std::atomic<uint64_t> write_ids{3ull << 61};

runtime::http_response json_response(int status, json body) {
  runtime::http_response r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, dump_mode);
  return r;
}

runtime::http_response error_response(int status, cqrs::error_code code,
                                      std::string message) {
  return json_response(
    status, {{"ok", false},
             {"error", {{"code", std::string{cqrs::to_string(code)}},
                        {"message", std::move(message)}}}});
}

runtime::http_response no_content() {
  runtime::http_response r;
  r.status = 204;
  r.content_type = "text/plain";
  return r;
}

/// A connection context for one HTTP request cut into `pieces` chunks
/// (seq 0 .. pieces-1): once every chunk completed, `on_text` gets their
/// reply texts in order and the events the request had accepted.
template <class F>
std::shared_ptr<runtime::connection_context> request_context(size_t pieces,
                                                             F on_text) {
  struct gather {
    std::mutex mtx;
    std::vector<std::string> texts;
    size_t done = 0;
    std::weak_ptr<runtime::connection_context> ctx;
  };
  auto g = std::make_shared<gather>();
  g->texts.resize(pieces);
  auto ctx = std::make_shared<runtime::connection_context>(
    write_ids.fetch_add(1), "http",
    [g, on_text](uint64_t seq, std::string text) {
      std::string all;
      {
        std::lock_guard<std::mutex> guard{g->mtx};
        if (seq >= g->texts.size())
          return;
        g->texts[seq] = std::move(text);
        if (++g->done < g->texts.size())
          return;
        for (auto& t : g->texts)
          all += t;
      }
      uint64_t accepted = 0;
      if (auto c = g->ctx.lock())
        accepted = c->accepted.load();
      on_text(std::move(all), accepted);
    });
  g->ctx = ctx;
  return ctx;
}

/// Calls `f` with each reply line of `text` parsed as JSON.
template <class F>
void each_reply(const std::string& text, F f) {
  size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string::npos)
      nl = text.size();
    if (nl > pos) {
      auto line = json::parse(text.begin() + static_cast<ptrdiff_t>(pos),
                              text.begin() + static_cast<ptrdiff_t>(nl),
                              nullptr, false);
      if (!line.is_discarded())
        f(line);
    }
    pos = nl + 1;
  }
}

std::string code_of(const json& reply) {
  if (auto e = reply.find("error"); e != reply.end() && e->is_object())
    return e->value("code", "");
  return {};
}

/// Largest line-protocol body after gunzip (what an 8 MiB gzip body may
/// expand to; more is refused rather than inflated without bound).
constexpr size_t max_gunzipped = 64u << 20;

/// Inflates a gzip body (Telegraf's default content_encoding) into `out`.
/// Returns an error message, empty on success.
std::string gunzip(std::string_view in, std::string& out) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
    return "cannot initialize zlib";
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  out.clear();
  int rc = Z_OK;
  char buf[64 * 1024];
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.append(buf, sizeof buf - zs.avail_out);
    if (out.size() > max_gunzipped) {
      inflateEnd(&zs);
      return "gzip body expands beyond " + std::to_string(max_gunzipped)
             + " bytes";
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0)
      break; // truncated input
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END)
    return "body is not valid gzip data";
  return {};
}

// -- POST /write ----------------------------------------------------------------

void on_write(const chunk_dispatch& dispatch, runtime::http_request req,
              runtime::http_server::response_fn reply) {
  if (req.method != "POST")
    return reply(error_response(405, cqrs::error_code::bad_request,
                                "use POST " + req.path));
  if (auto enc = req.header("content-encoding"); enc == "gzip") {
    std::string plain;
    if (auto err = gunzip(req.body, plain); !err.empty())
      return reply(error_response(400, cqrs::error_code::bad_request, err));
    req.body = std::move(plain);
  } else if (!enc.empty() && enc != "identity") {
    return reply(error_response(
      415, cqrs::error_code::bad_request,
      "unsupported Content-Encoding (use gzip, identity or none)"));
  }
  auto precision = cqrs::influx_precision::ns;
  if (auto p = query_param(req.query, "precision"); p && !p->empty()) {
    auto parsed = cqrs::parse_influx_precision(*p);
    if (!parsed)
      return reply(error_response(400, cqrs::error_code::bad_request,
                                  "precision must be ns, us, ms or s"));
    precision = *parsed;
  }
  // Pieces of at most chunk_bytes (whole lines) go to the parser pool side
  // by side, as the TCP gateway's chunks do; the answer waits for all.
  std::vector<std::pair<size_t, size_t>> pieces; // (offset, length)
  std::vector<uint64_t> first_lines;
  {
    const auto& b = req.body;
    size_t pos = 0;
    uint64_t line = 1;
    while (pos < b.size() || pieces.empty()) {
      auto end = std::min(b.size(), pos + chunk_bytes);
      if (end < b.size()) {
        auto nl = b.rfind('\n', end - 1);
        end = (nl == std::string::npos || nl < pos) ? b.find('\n', end) : nl;
        end = end == std::string::npos ? b.size() : end + 1;
      }
      pieces.emplace_back(pos, end - pos);
      first_lines.push_back(line);
      line += static_cast<uint64_t>(
        std::count(b.begin() + static_cast<ptrdiff_t>(pos),
                   b.begin() + static_cast<ptrdiff_t>(end), '\n'));
      pos = end;
      if (pos >= b.size())
        break;
    }
  }
  auto ctx = request_context(pieces.size(), [reply](std::string text,
                                                    uint64_t accepted) {
    auto lines = json::array();
    size_t problems = 0;
    bool unavailable = false;
    int64_t retry_after_ms = -1;  // rate_limited (docs/protocol.md)
    std::string first_code;
    each_reply(text, [&](const json& r) {
      auto code = code_of(r);
      if (code == "unavailable")
        unavailable = true;
      if (code == "rate_limited")
        retry_after_ms = r["error"].value("retry_after_ms", int64_t{1000});
      if (first_code.empty())
        first_code = code;
      ++problems;
      if (lines.size() < max_listed) {
        json entry;
        if (auto l = r.find("line"); l != r.end())
          entry["line"] = *l;
        entry["code"] = code;
        if (auto e = r.find("error"); e != r.end() && e->is_object())
          entry["message"] = e->value("message", "");
        lines.push_back(std::move(entry));
      }
    });
    if (problems == 0)
      return reply(no_content());
    json body{{"ok", false},
              {"error",
               {{"code", unavailable ? "unavailable" : first_code},
                {"message", std::to_string(problems)
                              + " lines or fields were not stored; "
                              + std::to_string(accepted)
                              + " events were"}}},
              {"accepted", accepted},
              {"rejected", problems},
              {"lines", std::move(lines)}};
    if (problems > max_listed)
      body["truncated"] = true;
    if (retry_after_ms >= 0 && !unavailable) {
      body["error"]["code"] = "rate_limited";
      body["error"]["retry_after_ms"] = retry_after_ms;
      auto r = json_response(429, std::move(body));
      r.headers.emplace_back("Retry-After", std::to_string((retry_after_ms + 999) / 1000));
      return reply(std::move(r));
    }
    reply(json_response(unavailable ? 503 : 400, std::move(body)));
  });
  // The HTTP guard checked the token and counted the request.
  ctx->set_principal(req.principal);
  ctx->charged_upstream = true;
  for (size_t i = 0; i < pieces.size(); ++i) {
    runtime::chunk c;
    c.conn = ctx;
    c.seq = i;
    c.first_line = first_lines[i];
    c.data = pieces.size() == 1
               ? std::move(req.body)
               : req.body.substr(pieces[i].first, pieces[i].second);
    c.format = runtime::chunk_format::influx;
    c.precision = static_cast<uint8_t>(precision);
    dispatch(std::move(c));
  }
}

// -- POST /api/v1/write -----------------------------------------------------------

void on_remote_write(const chunk_dispatch& dispatch, runtime::http_request req,
                     runtime::http_server::response_fn reply) {
  if (req.method != "POST")
    return reply(error_response(405, cqrs::error_code::bad_request,
                                "use POST /api/v1/write"));
  auto enc = req.header("content-encoding");
  if (!enc.empty() && enc != "snappy")
    return reply(error_response(
      415, cqrs::error_code::bad_request,
      "remote_write bodies must be snappy-compressed (Content-Encoding: "
      "snappy)"));
  auto ctx = request_context(1, [reply](std::string text, uint64_t) {
    std::optional<runtime::http_response> failure;
    json summary;
    each_reply(text, [&](const json& r) {
      if (r.value("ok", false)) {
        summary = r;
        return;
      }
      auto code = code_of(r);
      auto message = r.contains("error") ? r["error"].value("message", "")
                                         : std::string{};
      if (code == "unavailable") {
        failure = error_response(503, cqrs::error_code::unavailable, message);
      } else if (code == "rate_limited") {
        auto ms = r["error"].value("retry_after_ms", int64_t{1000});
        failure = json_response(429, {{"ok", false},
                                      {"error", {{"code", code},
                                                 {"message", message},
                                                 {"retry_after_ms", ms}}}});
        failure->headers.emplace_back("Retry-After", std::to_string((ms + 999) / 1000));
      } else if (!failure)
        failure = error_response(400, cqrs::error_code::bad_request, message);
    });
    if (failure)
      return reply(std::move(*failure));
    if (!summary.is_object())
      return reply(error_response(500, cqrs::error_code::internal,
                                  "no reply from the parser"));
    auto accepted = summary.value("accepted", uint64_t{0});
    auto rejected = summary.value("rejected", uint64_t{0});
    if (accepted == 0 && rejected > 0) {
      // Nothing storable: a 4xx tells Prometheus not to retry this batch.
      // `unavailable` wins: those samples must be retried (503), not
      // dropped by the sender as a 400 would make it.
      std::string code = "invalid_event";
      std::string message;
      if (auto& errs = summary["errors"]; errs.is_array() && !errs.empty()) {
        const json* pick = &errs[0];
        for (auto& e : errs)
          if (e.value("code", "") == "unavailable")
            pick = &e;
        code = pick->value("code", code);
        message = pick->value("message", "");
      }
      auto status = code == "unavailable" ? 503 : 400;
      json body{{"ok", false},
                {"error",
                 {{"code", code},
                  {"message", std::to_string(rejected)
                                + " samples were not stored: " + message}}},
                {"accepted", 0},
                {"rejected", rejected},
                {"errors", summary["errors"]}};
      return reply(json_response(status, std::move(body)));
    }
    reply(no_content());
  });
  ctx->set_principal(req.principal);
  ctx->charged_upstream = true;
  runtime::chunk c;
  c.conn = std::move(ctx);
  c.data = std::move(req.body);
  c.format = runtime::chunk_format::remote_write;
  dispatch(std::move(c));
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::string percent_decoded(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hex_digit(s[i + 1]) >= 0
               && hex_digit(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

} // namespace

std::optional<std::string> query_param(std::string_view query,
                                       std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{}
                                          : query.substr(amp + 1);
    auto eq = part.find('=');
    if (percent_decoded(part.substr(0, eq)) == name)
      return eq == std::string_view::npos
               ? std::string{}
               : percent_decoded(part.substr(eq + 1));
  }
  return std::nullopt;
}

void add_write_routes(runtime::http_server& http, chunk_dispatch dispatch) {
  auto d = std::make_shared<chunk_dispatch>(std::move(dispatch));
  http.route("/write", false,
             [d](runtime::http_request req,
                 runtime::http_server::response_fn reply) {
               on_write(*d, std::move(req), std::move(reply));
             });
  // InfluxDB 2.x clients (Telegraf's outputs.influxdb_v2) write here.
  http.route("/api/v2/write", false,
             [d](runtime::http_request req,
                 runtime::http_server::response_fn reply) {
               on_write(*d, std::move(req), std::move(reply));
             });
  http.route("/api/v1/write", false,
             [d](runtime::http_request req,
                 runtime::http_server::response_fn reply) {
               on_remote_write(*d, std::move(req), std::move(reply));
             });
}

} // namespace cairn::actors
