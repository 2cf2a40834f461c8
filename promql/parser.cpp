#include "promql/parser.hpp"

#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>

namespace cairn::promql {

// -- ast helpers --------------------------------------------------------------

std::string_view to_string(error_type t) noexcept {
  switch (t) {
    case error_type::bad_data: return "bad_data";
    case error_type::execution: return "execution";
    case error_type::unavailable: return "unavailable";
    case error_type::timeout: return "timeout";
    case error_type::not_found: return "not_found";
    case error_type::internal: return "internal";
  }
  return "internal";
}

int http_status(error_type t) noexcept {
  switch (t) {
    case error_type::bad_data: return 400;
    case error_type::execution: return 422;
    case error_type::unavailable: return 503;
    case error_type::timeout: return 503;
    case error_type::not_found: return 404;
    case error_type::internal: return 500;
  }
  return 500;
}

std::string_view to_string(function f) noexcept {
  switch (f) {
    case function::sum_over_time: return "sum_over_time";
    case function::avg_over_time: return "avg_over_time";
    case function::min_over_time: return "min_over_time";
    case function::max_over_time: return "max_over_time";
    case function::count_over_time: return "count_over_time";
    case function::last_over_time: return "last_over_time";
    case function::quantile_over_time: return "quantile_over_time";
    case function::rate: return "rate";
    case function::increase: return "increase";
  }
  return "?";
}

std::string_view to_string(aggregation a) noexcept {
  switch (a) {
    case aggregation::sum: return "sum";
    case aggregation::avg: return "avg";
    case aggregation::min: return "min";
    case aggregation::max: return "max";
    case aggregation::count: return "count";
  }
  return "?";
}

bool label_matcher::matches(std::string_view v) const {
  switch (op) {
    case match_op::equal: return v == value;
    case match_op::not_equal: return v != value;
    case match_op::regex:
      return std::regex_match(v.begin(), v.end(), *re);
    case match_op::not_regex:
      return !std::regex_match(v.begin(), v.end(), *re);
  }
  return false;
}

const selector* selector_of(const expr& e) noexcept {
  if (auto* s = std::get_if<selector>(&e.node))
    return s;
  if (auto* c = std::get_if<call_expr>(&e.node))
    return &c->arg;
  if (auto* a = std::get_if<aggregate_expr>(&e.node))
    return a->inner ? selector_of(*a->inner) : nullptr;
  return nullptr;
}

// -- durations ----------------------------------------------------------------

std::optional<millis> parse_duration(std::string_view text) {
  // Units in descending order, each at most once (Prometheus's rule).
  static constexpr std::array<std::pair<std::string_view, millis>, 7> units{{
    {"y", 365LL * 86400000},
    {"w", 7LL * 86400000},
    {"d", 86400000},
    {"h", 3600000},
    {"m", 60000},
    {"s", 1000},
    {"ms", 1},
  }};
  if (text.empty())
    return std::nullopt;
  millis total = 0;
  size_t next_unit = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])))
      ++i;
    if (i == start || i - start > 12)
      return std::nullopt;
    millis n = 0;
    std::from_chars(text.data() + start, text.data() + i, n);
    size_t ustart = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i])))
      ++i;
    auto unit = text.substr(ustart, i - ustart);
    size_t k = next_unit;
    while (k < units.size() && units[k].first != unit)
      ++k;
    if (k == units.size())
      return std::nullopt;
    next_unit = k + 1;
    if (n > std::numeric_limits<millis>::max() / units[k].second / 2)
      return std::nullopt;
    total += n * units[k].second;
  }
  if (total <= 0)
    return std::nullopt;
  return total;
}

namespace {

// -- lexer --------------------------------------------------------------------

enum class tok : uint8_t {
  end,
  number,
  ident,
  string,
  lparen,
  rparen,
  lbrace,
  rbrace,
  lbracket,
  rbracket,
  comma,
  colon,
  at,
  op,  ///< = != =~ !~ + - * / % ^ == < > <= >=
};

struct token {
  tok kind = tok::end;
  std::string text;  ///< identifier, operator, raw number, unescaped string
  size_t pos = 0;    ///< 0-based offset in the input
};

struct parse_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool is_ident_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}

bool is_ident_char(char c) {
  return is_ident_start(c) || std::isdigit(static_cast<unsigned char>(c));
}

class lexer {
public:
  explicit lexer(std::string_view in) : in_(in) {
  }

  [[noreturn]] void fail(size_t pos, const std::string& what) const {
    throw parse_failure("parse error at char " + std::to_string(pos + 1) + ": "
                        + what);
  }

  token next() {
    while (i_ < in_.size()
           && (std::isspace(static_cast<unsigned char>(in_[i_])) || in_[i_] == '#')) {
      if (in_[i_] == '#') { // comment to end of line
        while (i_ < in_.size() && in_[i_] != '\n')
          ++i_;
      } else {
        ++i_;
      }
    }
    token t;
    t.pos = i_;
    if (i_ >= in_.size())
      return t;
    char c = in_[i_];
    auto single = [&](tok k) {
      t.kind = k;
      t.text = std::string(1, c);
      ++i_;
      return t;
    };
    switch (c) {
      case '(': return single(tok::lparen);
      case ')': return single(tok::rparen);
      case '{': return single(tok::lbrace);
      case '}': return single(tok::rbrace);
      case '[': return single(tok::lbracket);
      case ']': return single(tok::rbracket);
      case ',': return single(tok::comma);
      case '@': return single(tok::at);
      default: break;
    }
    if (c == '"' || c == '\'' || c == '`')
      return lex_string();
    if (std::isdigit(static_cast<unsigned char>(c))
        || (c == '.' && i_ + 1 < in_.size()
            && std::isdigit(static_cast<unsigned char>(in_[i_ + 1]))))
      return lex_number();
    if (is_ident_start(c)) {
      // A lone ':' is the subquery colon, not an identifier.
      if (c == ':' && (i_ + 1 >= in_.size() || !is_ident_char(in_[i_ + 1])
                       || std::isdigit(static_cast<unsigned char>(in_[i_ + 1]))))
        return single(tok::colon);
      size_t s = i_;
      while (i_ < in_.size() && is_ident_char(in_[i_]))
        ++i_;
      t.kind = tok::ident;
      t.text = std::string(in_.substr(s, i_ - s));
      return t;
    }
    static constexpr std::array<std::string_view, 15> ops{
      "==", "!=", "=~", "!~", "<=", ">=", "=", "+", "-", "*", "/", "%", "^", "<", ">"};
    for (auto op : ops)
      if (in_.substr(i_, op.size()) == op) {
        t.kind = tok::op;
        t.text = std::string(op);
        i_ += op.size();
        return t;
      }
    fail(i_, std::string("unexpected character '") + c + "'");
  }

  /// The raw text of a duration inside [...] or after `offset`.
  std::string duration_text() {
    while (i_ < in_.size() && std::isspace(static_cast<unsigned char>(in_[i_])))
      ++i_;
    size_t s = i_;
    while (i_ < in_.size() && std::isalnum(static_cast<unsigned char>(in_[i_])))
      ++i_;
    return std::string(in_.substr(s, i_ - s));
  }

  size_t pos() const noexcept { return i_; }

private:
  token lex_string() {
    token t;
    t.kind = tok::string;
    t.pos = i_;
    char q = in_[i_++];
    while (true) {
      if (i_ >= in_.size())
        fail(t.pos, "unterminated quoted string");
      char c = in_[i_++];
      if (c == q)
        return t;
      if (c == '\\' && q != '`') {
        if (i_ >= in_.size())
          fail(t.pos, "unterminated quoted string");
        char e = in_[i_++];
        switch (e) {
          case 'n': t.text += '\n'; break;
          case 't': t.text += '\t'; break;
          case 'r': t.text += '\r'; break;
          case '\\': t.text += '\\'; break;
          case '"': t.text += '"'; break;
          case '\'': t.text += '\''; break;
          default:
            // Unknown escapes are kept (regexes use \d, \. ...).
            t.text += '\\';
            t.text += e;
        }
        continue;
      }
      t.text += c;
    }
  }

  token lex_number() {
    token t;
    t.kind = tok::number;
    t.pos = i_;
    size_t s = i_;
    if (in_.substr(i_, 2) == "0x" || in_.substr(i_, 2) == "0X") {
      i_ += 2;
      while (i_ < in_.size() && std::isxdigit(static_cast<unsigned char>(in_[i_])))
        ++i_;
    } else {
      while (i_ < in_.size()
             && (std::isdigit(static_cast<unsigned char>(in_[i_])) || in_[i_] == '.'))
        ++i_;
      if (i_ < in_.size() && (in_[i_] == 'e' || in_[i_] == 'E')) {
        size_t save = i_++;
        if (i_ < in_.size() && (in_[i_] == '+' || in_[i_] == '-'))
          ++i_;
        if (i_ < in_.size() && std::isdigit(static_cast<unsigned char>(in_[i_]))) {
          while (i_ < in_.size() && std::isdigit(static_cast<unsigned char>(in_[i_])))
            ++i_;
        } else {
          i_ = save;
        }
      }
    }
    // A number directly followed by letters is a duration ("5m"): PromQL
    // only allows those inside [...] or after offset.
    if (i_ < in_.size() && std::isalpha(static_cast<unsigned char>(in_[i_])))
      fail(s, "unexpected duration \"" + std::string(in_.substr(s, i_ - s + 1))
                + "...\" outside of a range or offset");
    t.text = std::string(in_.substr(s, i_ - s));
    return t;
  }

  std::string_view in_;
  size_t i_ = 0;
};

// -- parser -------------------------------------------------------------------

bool is_supported_function(std::string_view name, function& out) {
  static constexpr std::array<function, 9> all{
    function::sum_over_time,  function::avg_over_time,   function::min_over_time,
    function::max_over_time,  function::count_over_time, function::last_over_time,
    function::quantile_over_time, function::rate,        function::increase};
  for (auto f : all)
    if (to_string(f) == name) {
      out = f;
      return true;
    }
  return false;
}

bool is_aggregation_keyword(std::string_view name) {
  static constexpr std::array<std::string_view, 12> all{
    "sum",      "avg",     "min",    "max",          "count", "stddev",
    "stdvar",   "topk",    "bottomk", "count_values", "quantile", "group"};
  for (auto a : all)
    if (a == name)
      return true;
  return false;
}

std::optional<aggregation> supported_aggregation(std::string_view name) {
  if (name == "sum") return aggregation::sum;
  if (name == "avg") return aggregation::avg;
  if (name == "min") return aggregation::min;
  if (name == "max") return aggregation::max;
  if (name == "count") return aggregation::count;
  return std::nullopt;
}

bool is_binary_keyword(std::string_view name) {
  return name == "and" || name == "or" || name == "unless" || name == "atan2";
}

std::optional<double> number_value(std::string_view text) {
  std::string s(text);
  if (s.size() > 2 && (s[1] == 'x' || s[1] == 'X')) {
    errno = 0;
    auto v = std::strtoull(s.c_str() + 2, nullptr, 16);
    if (errno != 0)
      return std::nullopt;
    return static_cast<double>(v);
  }
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size())
    return std::nullopt;
  return v;
}

class parser {
public:
  explicit parser(std::string_view in) : lex_(in) {
    advance();
  }

  expr parse_all() {
    auto e = parse_expr(0);
    if (cur_.kind != tok::end)
      unexpected("end of input");
    return e;
  }

  selector parse_lone_selector() {
    selector s;
    bool any = false;
    if (cur_.kind == tok::ident) {
      s.metric = cur_.text;
      any = true;
      advance();
    }
    if (cur_.kind == tok::lbrace) {
      any = true;
      parse_matchers(s);
    }
    if (!any)
      unexpected("a series selector");
    if (cur_.kind != tok::end)
      unexpected("end of series selector");
    if (s.metric.empty() && s.matchers.empty())
      lex_.fail(0, "vector selector must contain at least one matcher");
    return s;
  }

private:
  [[noreturn]] void unexpected(const std::string& wanted) {
    std::string got = cur_.kind == tok::end ? std::string("end of input")
                                            : "\"" + cur_.text + "\"";
    lex_.fail(cur_.pos, "unexpected " + got + ", expected " + wanted);
  }

  [[noreturn]] void unsupported(const std::string& what) {
    throw parse_failure("unsupported " + what);
  }

  void advance() { cur_ = lex_.next(); }

  void expect(tok k, const char* what) {
    if (cur_.kind != k)
      unexpected(what);
    advance();
  }

  /// The binary operator at the cursor (empty if none) and its precedence.
  std::pair<std::string, int> binary_op() const {
    if (cur_.kind == tok::ident) {
      if (cur_.text == "or") return {"or", 1};
      if (cur_.text == "and" || cur_.text == "unless") return {cur_.text, 2};
      if (cur_.text == "atan2") return {"atan2", 5};
    }
    if (cur_.kind != tok::op)
      return {"", 0};
    auto& o = cur_.text;
    if (o == "==" || o == "!=" || o == "<" || o == ">" || o == "<=" || o == ">=")
      return {o, 3};
    if (o == "+" || o == "-") return {o, 4};
    if (o == "*" || o == "/" || o == "%") return {o, 5};
    if (o == "^") return {o, 6};
    return {"", 0};
  }

  expr parse_expr(int min_prec) {
    // Nesting is bounded so a hostile query cannot exhaust the stack.
    struct depth_guard {
      int& d;
      explicit depth_guard(int& x) : d(x) { ++d; }
      ~depth_guard() { --d; }
    } guard{depth_};
    if (depth_ > max_depth)
      throw parse_failure("expression nested deeper than "
                          + std::to_string(max_depth) + " levels");
    auto lhs = parse_unary();
    while (true) {
      auto [op, prec] = binary_op();
      if (op.empty() || prec < min_prec || prec == 0)
        return lhs;
      advance();
      // Vector matching modifiers have no meaning without vector operators.
      if (cur_.kind == tok::ident
          && (cur_.text == "bool" || cur_.text == "on" || cur_.text == "ignoring"
              || cur_.text == "group_left" || cur_.text == "group_right"))
        unsupported("operator: " + op + " " + cur_.text);
      auto rhs = parse_expr(op == "^" ? prec : prec + 1);
      auto* a = std::get_if<number_expr>(&lhs.node);
      auto* b = std::get_if<number_expr>(&rhs.node);
      if (!a || !b || prec <= 3 || op == "atan2")
        unsupported("operator: " + op);
      double x = a->value;
      double y = b->value;
      double r = 0;
      if (op == "+") r = x + y;
      else if (op == "-") r = x - y;
      else if (op == "*") r = x * y;
      else if (op == "/") r = x / y;
      else if (op == "%") r = std::fmod(x, y);
      else r = std::pow(x, y);
      lhs = expr{number_expr{r}};
    }
  }

  expr parse_unary() {
    if (cur_.kind == tok::op && (cur_.text == "-" || cur_.text == "+")) {
      bool neg = cur_.text == "-";
      advance();
      // Unary minus binds tighter than every binary operator but ^.
      auto e = parse_expr(6);
      auto* n = std::get_if<number_expr>(&e.node);
      if (!n)
        unsupported(std::string("operator: unary ") + (neg ? "-" : "+"));
      if (neg)
        n->value = -n->value;
      return e;
    }
    auto e = parse_primary();
    parse_postfix(e);
    return e;
  }

  /// Subqueries, offset and @ after any expression.
  void parse_postfix(expr& e) {
    if (cur_.kind == tok::lbracket)
      unsupported("subquery (range of an expression other than a selector)");
    if (cur_.kind == tok::ident && cur_.text == "offset")
      unsupported("modifier: offset");
    if (cur_.kind == tok::at)
      unsupported("modifier: @");
    (void) e;
  }

  expr parse_primary() {
    switch (cur_.kind) {
      case tok::number: {
        auto v = number_value(cur_.text);
        if (!v)
          lex_.fail(cur_.pos, "bad number \"" + cur_.text + "\"");
        advance();
        return expr{number_expr{*v}};
      }
      case tok::string:
        unsupported("expression: string literal");
      case tok::lparen: {
        advance();
        auto e = parse_expr(0);
        expect(tok::rparen, "\")\"");
        return e;
      }
      case tok::lbrace: {
        selector s;
        parse_matchers(s);
        finish_selector(s);
        return expr{std::move(s)};
      }
      case tok::ident:
        return parse_ident();
      default:
        unexpected("an expression");
    }
  }

  expr parse_ident() {
    std::string name = cur_.text;
    size_t pos = cur_.pos;
    advance();
    auto lower = name;
    for (auto& c : lower)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == "inf" || lower == "nan")
      return expr{number_expr{lower == "nan" ? std::numeric_limits<double>::quiet_NaN()
                                             : std::numeric_limits<double>::infinity()}};
    if (is_aggregation_keyword(name)
        && (cur_.kind == tok::lparen
            || (cur_.kind == tok::ident && (cur_.text == "by" || cur_.text == "without"))))
      return parse_aggregation(name);
    if (cur_.kind == tok::lparen)
      return parse_call(name, pos);
    if (is_binary_keyword(name))
      unexpected("an expression");
    selector s;
    s.metric = name;
    if (cur_.kind == tok::lbrace)
      parse_matchers(s);
    finish_selector(s);
    return expr{std::move(s)};
  }

  void parse_grouping(aggregate_expr& a) {
    a.without = cur_.text == "without";
    advance();
    expect(tok::lparen, "\"(\" after by/without");
    while (cur_.kind != tok::rparen) {
      if (cur_.kind != tok::ident)
        unexpected("a label name");
      a.labels.push_back(cur_.text);
      advance();
      if (cur_.kind == tok::comma)
        advance();
      else if (cur_.kind != tok::rparen)
        unexpected("\",\" or \")\"");
    }
    advance();
  }

  expr parse_aggregation(const std::string& name) {
    auto op = supported_aggregation(name);
    if (!op)
      unsupported("aggregation: " + name);
    aggregate_expr a;
    a.op = *op;
    bool grouped = false;
    if (cur_.kind == tok::ident) {
      parse_grouping(a);
      grouped = true;
    }
    expect(tok::lparen, "\"(\"");
    auto inner = parse_expr(0);
    if (cur_.kind == tok::comma)
      unsupported("aggregation parameter in " + name);
    expect(tok::rparen, "\")\"");
    if (!grouped && cur_.kind == tok::ident
        && (cur_.text == "by" || cur_.text == "without"))
      parse_grouping(a);
    if (std::holds_alternative<number_expr>(inner.node))
      throw parse_failure("expected type instant vector in aggregation expression, "
                          "got scalar");
    if (auto* s = std::get_if<selector>(&inner.node); s && s->range != 0)
      throw parse_failure("expected type instant vector in aggregation expression, "
                          "got range vector");
    a.inner = std::make_shared<const expr>(std::move(inner));
    return expr{std::move(a)};
  }

  expr parse_call(const std::string& name, size_t pos) {
    function fn;
    if (!is_supported_function(name, fn))
      unsupported("function: " + name);
    (void) pos;
    advance(); // (
    call_expr c;
    c.fn = fn;
    if (fn == function::quantile_over_time) {
      auto phi = parse_expr(0);
      auto* n = std::get_if<number_expr>(&phi.node);
      if (!n)
        throw parse_failure("expected type scalar in call to function "
                            "\"quantile_over_time\": the quantile must be a number");
      c.phi = n->value;
      expect(tok::comma, "\",\" after the quantile");
    }
    if (cur_.kind == tok::rparen)
      throw parse_failure("expected 1 argument(s) in call to \"" + name
                          + "\", got 0");
    auto arg = parse_expr(0);
    if (cur_.kind == tok::comma)
      throw parse_failure("too many arguments in call to \"" + name + "\"");
    expect(tok::rparen, "\")\"");
    auto* s = std::get_if<selector>(&arg.node);
    if (!s || s->range == 0)
      throw parse_failure("expected type range vector in call to function \"" + name
                          + "\", got "
                          + (std::holds_alternative<number_expr>(arg.node)
                               ? "scalar"
                               : "instant vector"));
    c.arg = std::move(*s);
    return expr{std::move(c)};
  }

  void parse_matchers(selector& s) {
    advance(); // {
    while (cur_.kind != tok::rbrace) {
      if (cur_.kind != tok::ident)
        unexpected("a label name");
      label_matcher m;
      m.name = cur_.text;
      advance();
      if (cur_.kind != tok::op
          || (cur_.text != "=" && cur_.text != "!=" && cur_.text != "=~"
              && cur_.text != "!~"))
        unexpected("a label matching operator (=, !=, =~, !~)");
      auto op = cur_.text;
      m.op = op == "=" ? match_op::equal
             : op == "!=" ? match_op::not_equal
             : op == "=~" ? match_op::regex
                          : match_op::not_regex;
      advance();
      if (cur_.kind != tok::string)
        unexpected("a quoted label value");
      m.value = cur_.text;
      if (m.op == match_op::regex || m.op == match_op::not_regex) {
        // std::regex compiles and matches recursively: bound the pattern.
        if (m.value.size() > max_regex)
          throw parse_failure("regular expression longer than "
                              + std::to_string(max_regex) + " bytes");
        try {
          m.re = std::make_shared<const std::regex>(m.value, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
          throw parse_failure("invalid regular expression \"" + m.value + "\": "
                              + e.what());
        }
      }
      advance();
      if (m.name == "__name__") {
        if (m.op != match_op::equal)
          unsupported("matcher on __name__: only __name__=\"...\" is supported");
        if (!s.metric.empty() && s.metric != m.value)
          throw parse_failure("metric name given twice: \"" + s.metric + "\" and \""
                              + m.value + "\"");
        s.metric = m.value;
      } else {
        s.matchers.push_back(std::move(m));
      }
      if (cur_.kind == tok::comma)
        advance();
      else if (cur_.kind != tok::rbrace)
        unexpected("\",\" or \"}\"");
    }
    advance(); // }
  }

  /// The optional [range] after a selector; a metric name is required.
  void finish_selector(selector& s) {
    if (s.metric.empty())
      unsupported("selector without a metric name (give one, or __name__=\"...\")");
    if (cur_.kind == tok::lbracket) {
      size_t p = cur_.pos;
      auto text = lex_.duration_text();
      auto d = parse_duration(text);
      if (!d)
        lex_.fail(p + 1, "bad range duration \"" + text + "\"");
      advance();
      if (cur_.kind == tok::colon)
        unsupported("subquery");
      if (cur_.kind != tok::rbracket)
        unexpected("\"]\"");
      advance();
      s.range = *d;
    }
  }

  static constexpr int max_depth = 200;
  static constexpr size_t max_regex = 1024;

  lexer lex_;
  token cur_;
  int depth_ = 0;
};

} // namespace

std::variant<expr, problem> parse(std::string_view text) {
  try {
    parser p{text};
    return p.parse_all();
  } catch (const parse_failure& e) {
    return problem{error_type::bad_data, e.what()};
  }
}

std::variant<selector, problem> parse_selector(std::string_view text) {
  try {
    parser p{text};
    return p.parse_lone_selector();
  } catch (const parse_failure& e) {
    return problem{error_type::bad_data, e.what()};
  }
}

} // namespace cairn::promql
