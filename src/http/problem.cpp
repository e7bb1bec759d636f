#include "http/problem.hpp"

#include <fmt/format.h>

#include "core/log.hpp"

namespace hsea::http {

Response problem(const core::ApiError& error, std::string_view request_id) {
  const core::ErrorInfo& info = core::error_info(error.code());
  std::string body;
  body.reserve(256);
  body += "{\"type\":";
  log::append_json_string(body, fmt::format("urn:hsea:problem:{}", info.code));
  body += ",\"title\":";
  log::append_json_string(body, info.title);
  fmt::format_to(std::back_inserter(body), ",\"status\":{},\"detail\":", info.status);
  log::append_json_string(body, error.detail().empty() ? info.title : error.detail());
  body += ",\"code\":";
  log::append_json_string(body, info.code);
  body += ",\"request_id\":";
  log::append_json_string(body, request_id);
  if (!error.errors().empty()) {
    body += ",\"errors\":[";
    bool first = true;
    for (const core::FieldError& e : error.errors()) {
      if (!first) body.push_back(',');
      first = false;
      body += "{\"field\":";
      log::append_json_string(body, e.field);
      body += ",\"message\":";
      log::append_json_string(body, e.message);
      body.push_back('}');
    }
    body.push_back(']');
  }
  body.push_back('}');
  Response r;
  r.status = info.status;
  r.problem_code = info.code;
  r.body = std::move(body);
  r.headers.push_back({"content-type", "application/problem+json"});
  if (error.retry_after_seconds() > 0) {
    r.headers.push_back({"retry-after", std::to_string(error.retry_after_seconds())});
  }
  if (info.status == 401) r.headers.push_back({"www-authenticate", "Bearer"});
  return r;
}

Response problem(core::ErrorCode code, std::string_view detail, std::string_view request_id) {
  return problem(core::ApiError(code, std::string(detail)), request_id);
}

}  // namespace hsea::http
