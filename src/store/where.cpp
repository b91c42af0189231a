// `lazyfeat runs --where EXPR`: checks that EXPR is a plain expression on the runs table's
// columns and rewrites it token by token into SQL (store.h, where_sql).
// Deliberately not: a full SQL parser; anything outside the small whitelist is refused.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <set>

#include "common/error.h"
#include "store/store.h"

namespace lf {

std::string where_sql(const std::string& expr) {
  static const std::set<std::string> keywords = {"and", "or", "not", "is", "null", "like", "in", "between"};
  std::set<std::string> names = {"id", "status", "error", "host", "pid", "attempts", "config_hash",
                                 "version", "created_at", "started_at", "ended_at", "heartbeat_at"};
  for (const auto& c : flat_columns()) names.insert(c);
  for (const auto& c : summary_columns()) names.insert(c);
  auto bad = [&](const std::string& what) -> UsageError {
    return UsageError("--where: " + what + " in '" + expr + "' (a plain expression on the run "
                      "columns, e.g. \"h = 64 and sqrt_h_alpha > 1\")");
  };

  std::string out;
  int depth = 0;
  size_t i = 0, n = expr.size();
  bool any = false;
  while (i < n) {
    char ch = expr[i];
    if (std::isspace(static_cast<unsigned char>(ch))) {
      ++i;
      continue;
    }
    std::string tok;
    if (std::isalpha(static_cast<unsigned char>(ch)) || ch == '_') {
      size_t j = i;
      while (j < n && (std::isalnum(static_cast<unsigned char>(expr[j])) || expr[j] == '_' || expr[j] == '-')) ++j;
      std::string word = expr.substr(i, j - i);
      std::string under = word;
      std::replace(under.begin(), under.end(), '-', '_');  // option spelling: sqrt-h-alpha
      std::string lower = under;
      std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
      if (keywords.count(lower)) tok = lower;
      else if (names.count(under)) tok = "\"" + under + "\"";
      else if (lower == "true") tok = "1";
      else if (lower == "false") tok = "0";
      else throw bad("unknown column '" + word + "'");
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(ch)) || (ch == '.' && i + 1 < n && std::isdigit(static_cast<unsigned char>(expr[i + 1])))) {
      size_t j = i;
      while (j < n && (std::isdigit(static_cast<unsigned char>(expr[j])) || expr[j] == '.')) ++j;
      if (j < n && (expr[j] == 'e' || expr[j] == 'E')) {
        size_t k = j + 1;
        if (k < n && (expr[k] == '+' || expr[k] == '-')) ++k;
        if (k < n && std::isdigit(static_cast<unsigned char>(expr[k]))) {
          j = k;
          while (j < n && std::isdigit(static_cast<unsigned char>(expr[j]))) ++j;
        }
      }
      tok = expr.substr(i, j - i);
      if (std::count(tok.begin(), tok.end(), '.') > 1) throw bad("malformed number '" + tok + "'");
      i = j;
    } else if (ch == '\'' || ch == '"') {
      // A string literal (double quotes accepted for convenience, emitted as single quotes).
      size_t j = i + 1;
      std::string s;
      while (j < n && expr[j] != ch) s += expr[j++];
      if (j >= n) throw bad("unterminated string");
      std::string esc;
      for (char c : s) esc += (c == '\'') ? std::string("''") : std::string(1, c);
      tok = "'" + esc + "'";
      i = j + 1;
    } else {
      static const char* ops[] = {"<=", ">=", "!=", "<>", "==", "=", "<", ">", "+", "-", "*", "/", "(", ")", ","};
      for (const char* op : ops) {
        if (expr.compare(i, std::strlen(op), op) == 0) {
          tok = op;
          break;
        }
      }
      if (tok.empty()) throw bad(std::string("unexpected character '") + ch + "'");
      if (tok == "(") ++depth;
      if (tok == ")" && --depth < 0) throw bad("unbalanced ')'");
      i += tok.size();
    }
    if (!out.empty()) out += ' ';
    out += tok;
    any = true;
  }
  if (depth != 0) throw bad("unbalanced '('");
  if (!any) throw bad("empty expression");
  return "(" + out + ")";
}

}  // namespace lf
