#include "http/message.hpp"

#include <boost/url/decode_view.hpp>
#include <boost/url/params_encoded_view.hpp>

#include <array>

#include "core/error.hpp"
#include "core/log.hpp"

namespace hsea::http {

namespace {
constexpr std::array<std::pair<Method, std::string_view>, 7> kMethods{{
    {Method::kGet, "GET"},
    {Method::kHead, "HEAD"},
    {Method::kPost, "POST"},
    {Method::kPut, "PUT"},
    {Method::kPatch, "PATCH"},
    {Method::kDelete, "DELETE"},
    {Method::kOptions, "OPTIONS"},
}};
}  // namespace

std::string_view method_name(Method method) {
  for (auto& [m, name] : kMethods) {
    if (m == method) return name;
  }
  return "OTHER";
}

Method method_from_name(std::string_view name) {
  for (auto& [m, n] : kMethods) {
    if (n == name) return m;
  }
  return Method::kOther;
}

bool is_safe_method(Method method) {
  return method == Method::kGet || method == Method::kHead || method == Method::kOptions;
}

std::string_view Request::header(std::string_view lower_name) const {
  for (const Header& h : headers) {
    if (h.name == lower_name) return h.value;
  }
  return {};
}

bool Request::query_param(std::string_view name, std::string& value) const {
  if (query.empty()) return false;
  bool found = false;
  try {
    boost::urls::params_encoded_view params(query);
    for (auto p : params) {
      if (p.key.decode() == name) {
        found = true;
        // '+' is a space in form-encoded queries; "%2B" is a plus. Decode with that rule.
        boost::urls::encoding_opts opts;
        opts.space_as_plus = true;
        value = p.has_value ? p.value.decode(opts) : std::string();
        break;
      }
    }
  } catch (const std::exception&) {
    return false;
  }
  if (!found) return false;
  // The value goes to PostgreSQL as text: it must be UTF-8 without NUL (libpq would cut it
  // there), or the database would refuse it (a 500) or the request would silently change.
  if (!log::is_valid_utf8(value) || value.find('\0') != std::string::npos) {
    throw core::ApiError(core::ErrorCode::kValidationFailed, "Check the query parameters.",
                         {{std::string(name), "must be UTF-8 text without NUL characters"}});
  }
  return true;
}

Response& Response::set_header(std::string_view lower_name, std::string value) {
  for (Header& h : headers) {
    if (h.name == lower_name) {
      h.value = std::move(value);
      return *this;
    }
  }
  headers.push_back({std::string(lower_name), std::move(value)});
  return *this;
}

std::string_view Response::header(std::string_view lower_name) const {
  for (const Header& h : headers) {
    if (h.name == lower_name) return h.value;
  }
  return {};
}

Response Response::json(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  r.headers.push_back({"content-type", "application/json"});
  return r;
}

Response Response::text(int status, std::string body, std::string content_type) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  r.headers.push_back({"content-type", std::move(content_type)});
  return r;
}

Response Response::no_content() {
  Response r;
  r.status = 204;
  return r;
}

}  // namespace hsea::http
