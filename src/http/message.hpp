#pragma once
// Beast-free request and response types: handlers and middleware see only these, so the
// translation units that hold them never parse Beast's headers.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hsea::http {

enum class Method { kGet, kHead, kPost, kPut, kPatch, kDelete, kOptions, kOther };

std::string_view method_name(Method method);
Method method_from_name(std::string_view name);
bool is_safe_method(Method method);  // GET, HEAD, OPTIONS

struct Header {
  std::string name;  // lower case
  std::string value;
};

struct Request {
  Method method = Method::kGet;
  std::string target;  // as received: path and query
  std::string path;    // percent-decoded path
  std::string query;   // raw query string without '?'
  std::vector<Header> headers;
  std::string body;
  std::string remote_ip;

  // First value of a header (name in lower case), or empty.
  std::string_view header(std::string_view lower_name) const;
  // First value of a query parameter, percent-decoded ('+' a space): false when absent. Throws
  // a validation problem naming the parameter when the value is not UTF-8 or holds a NUL.
  bool query_param(std::string_view name, std::string& value) const;
};

struct Response {
  int status = 200;
  std::vector<Header> headers;
  std::string body;
  // For problem responses, the problem's code ("not_found"): the access log line carries it.
  std::string_view problem_code;

  Response& set_header(std::string_view lower_name, std::string value);
  std::string_view header(std::string_view lower_name) const;

  static Response json(int status, std::string body);
  static Response text(int status, std::string body, std::string content_type = "text/plain");
  static Response no_content();
};

}  // namespace hsea::http
