#include "cqrs/partial_codec.hpp"

#include "cqrs/detail/binary.hpp"

namespace cairn::cqrs {

namespace {

using detail::put_double;
using detail::put_svarint;
using detail::put_varint;

void put_string(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

bool get_string(detail::reader& r, std::string& s) {
  uint64_t n = 0;
  std::string_view v;
  if (!r.varint(n) || !r.bytes(n, v))
    return false;
  s.assign(v);
  return true;
}

bool begin(std::string_view& in) {
  if (in.empty() || static_cast<uint8_t>(in.front()) != partial_codec_version)
    return false;
  in.remove_prefix(1);
  return true;
}

} // namespace

void encode_bucket(const bucket& b, std::string& out) {
  put_varint(out, b.count);
  put_double(out, b.sum);
  put_double(out, b.min);
  put_double(out, b.max);
  put_svarint(out, b.last_ts);
  put_double(out, b.last);
  b.sketch.encode(out);
}

bool decode_bucket(std::string_view& in, bucket& out) {
  detail::reader r{in};
  return r.varint(out.count) && r.f64(out.sum) && r.f64(out.min)
         && r.f64(out.max) && r.svarint(out.last_ts) && r.f64(out.last)
         && out.sketch.decode(in);
}

// -- query --------------------------------------------------------------------

void encode_partial(const query_partial& p, std::string& out) {
  out.push_back(static_cast<char>(partial_codec_version));
  put_varint(out, p.groups.size());
  for (auto& [key, g] : p.groups) {
    put_string(out, key);
    put_varint(out, g.values.size());
    for (auto& v : g.values) {
      out.push_back(v ? '\1' : '\0');
      if (v)
        put_string(out, *v);
    }
    put_varint(out, g.points.size());
    for (auto& [t, b] : g.points) {
      put_svarint(out, t);
      encode_bucket(b, out);
    }
  }
}

bool decode_partial(std::string_view in, query_partial& out) {
  out.groups.clear();
  if (!begin(in))
    return false;
  detail::reader r{in};
  uint64_t groups = 0;
  if (!r.varint(groups))
    return false;
  for (uint64_t i = 0; i < groups; ++i) {
    std::string key;
    uint64_t nvalues = 0;
    if (!get_string(r, key) || !r.varint(nvalues) || nvalues > in.size())
      return false;
    query_group g;
    g.values.resize(nvalues);
    for (auto& v : g.values) {
      std::string_view flag;
      if (!r.bytes(1, flag))
        return false;
      if (flag[0] == '\1') {
        std::string s;
        if (!get_string(r, s))
          return false;
        v = std::move(s);
      }
    }
    uint64_t npoints = 0;
    if (!r.varint(npoints) || npoints > in.size())
      return false;
    g.points.reserve(npoints);
    for (uint64_t k = 0; k < npoints; ++k) {
      millis t = 0;
      bucket b;
      if (!r.svarint(t) || !decode_bucket(in, b))
        return false;
      g.points.try_emplace(t, std::move(b));
    }
    out.groups.emplace(std::move(key), std::move(g));
  }
  return in.empty();
}

// -- name -> value maps (topk, metrics) ---------------------------------------

namespace {

/// Version byte, count, then per entry the name and `put(value)`.
template <class Map, class Put>
void encode_named(const Map& m, std::string& out, Put put) {
  out.push_back(static_cast<char>(partial_codec_version));
  put_varint(out, m.size());
  for (auto& [name, value] : m) {
    put_string(out, name);
    put(value);
  }
}

/// Reads what `encode_named` wrote; `get(r, value)` reads one value.
template <class Map, class Get>
bool decode_named(std::string_view in, Map& m, Get get) {
  m.clear();
  if (!begin(in))
    return false;
  detail::reader r{in};
  uint64_t n = 0;
  if (!r.varint(n))
    return false;
  for (uint64_t i = 0; i < n; ++i) {
    std::string name;
    typename Map::mapped_type value{};
    if (!get_string(r, name) || !get(r, in, value))
      return false;
    m.emplace_hint(m.end(), std::move(name), std::move(value));
  }
  return in.empty();
}

} // namespace

void encode_partial(const topk_partial& p, std::string& out) {
  encode_named(p.values, out, [&](const bucket& b) { encode_bucket(b, out); });
}

bool decode_partial(std::string_view in, topk_partial& out) {
  return decode_named(in, out.values,
                      [](detail::reader&, std::string_view& rest, bucket& b) {
                        return decode_bucket(rest, b);
                      });
}

void encode_partial(const metrics_partial& p, std::string& out) {
  encode_named(p.metrics, out, [&](uint64_t n) { put_varint(out, n); });
}

bool decode_partial(std::string_view in, metrics_partial& out) {
  return decode_named(in, out.metrics,
                      [](detail::reader& r, std::string_view&, uint64_t& n) {
                        return r.varint(n);
                      });
}

// -- series -------------------------------------------------------------------

void encode_partial(const series_partial& p, std::string& out) {
  out.push_back(static_cast<char>(partial_codec_version));
  put_varint(out, p.keys.size());
  for (auto& k : p.keys)
    put_string(out, k);
}

bool decode_partial(std::string_view in, series_partial& out) {
  out.keys.clear();
  if (!begin(in))
    return false;
  detail::reader r{in};
  uint64_t n = 0;
  if (!r.varint(n) || n > in.size())
    return false;
  out.keys.resize(n);
  for (auto& k : out.keys)
    if (!get_string(r, k))
      return false;
  return in.empty();
}

} // namespace cairn::cqrs
