#include "http/router.hpp"

#include <boost/url/pct_string_view.hpp>

#include <array>
#include <map>
#include <stdexcept>

#include "core/log.hpp"

namespace hsea::http {

namespace {
constexpr std::size_t kMethodCount = static_cast<std::size_t>(Method::kOther) + 1;

// One segment of a request path as received, percent-decoded. Decoding after splitting keeps
// an encoded "/" (%2F) inside its segment, so it can never add a path level. A segment with a
// malformed escape stays as it came (it then matches no literal).
std::string decode_segment(std::string_view raw) {
  if (raw.find('%') == std::string_view::npos) return std::string(raw);
  auto pct = boost::urls::make_pct_string_view(raw);
  if (!pct) return std::string(raw);
  return pct->decode();
}

// Whether a decoded segment can be a parameter's value. Nothing is named by bytes that are not
// UTF-8 (the database refuses them as text) or hold a NUL (libpq would send the text before it,
// which may name something else): such a path names no resource.
bool names_something(std::string_view segment) {
  return segment.find('\0') == std::string_view::npos && log::is_valid_utf8(segment);
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    auto end = path.find('/', i);
    if (end == std::string_view::npos) end = path.size();
    out.push_back(path.substr(i, end - i));
    i = end;
  }
  return out;
}
}  // namespace

struct Router::Node {
  std::map<std::string, std::unique_ptr<Node>, std::less<>> literal;
  std::unique_ptr<Node> param;
  std::string param_name;
  std::array<Route*, kMethodCount> methods{};
};

Router::Router() : root_(std::make_unique<Node>()) {}
Router::~Router() = default;
Router::Router(Router&&) noexcept = default;
Router& Router::operator=(Router&&) noexcept = default;

void Router::add(Route route) {
  if (route.path.empty() || route.path[0] != '/' || route.handler == nullptr) {
    throw std::logic_error("route needs an absolute path and a handler: " + route.path);
  }
  route.id = routes_.size();
  routes_.push_back(std::make_unique<Route>(std::move(route)));
  Route* stored = routes_.back().get();
  insert(stored->path, stored);
  if (stored->path.starts_with("/api/")) insert("/api/v1" + stored->path.substr(4), stored);
}

void Router::insert(const std::string& path, Route* route) {
  Node* node = root_.get();
  for (std::string_view segment : split_path(path)) {
    if (segment.size() > 2 && segment.front() == '{' && segment.back() == '}') {
      std::string name(segment.substr(1, segment.size() - 2));
      if (!node->param) {
        node->param = std::make_unique<Node>();
        node->param_name = name;
      } else if (node->param_name != name) {
        throw std::logic_error("conflicting parameter names at " + path);
      }
      node = node->param.get();
    } else {
      auto it = node->literal.find(segment);
      if (it == node->literal.end()) {
        it = node->literal.emplace(std::string(segment), std::make_unique<Node>()).first;
      }
      node = it->second.get();
    }
  }
  auto& slot = node->methods[static_cast<std::size_t>(route->method)];
  if (slot != nullptr) {
    throw std::logic_error("duplicate route " + std::string(method_name(route->method)) + " " +
                           path);
  }
  slot = route;
}

Match Router::match(Method method, std::string_view path) const {
  Match result;
  const Node* node = root_.get();
  for (std::string_view raw : split_path(path)) {
    std::string segment = decode_segment(raw);
    auto it = node->literal.find(segment);
    if (it != node->literal.end()) {
      node = it->second.get();
    } else if (node->param && names_something(segment)) {
      result.params.push_back({node->param_name, std::move(segment)});
      node = node->param.get();
    } else {
      result.params.clear();
      return result;
    }
  }
  Route* route = node->methods[static_cast<std::size_t>(method)];
  if (route == nullptr && method == Method::kHead) {
    route = node->methods[static_cast<std::size_t>(Method::kGet)];
  }
  if (route != nullptr) {
    result.kind = Match::Kind::kFound;
    result.route = route;
    return result;
  }
  result.params.clear();
  for (std::size_t m = 0; m < kMethodCount; ++m) {
    if (node->methods[m] == nullptr) continue;
    if (!result.allow.empty()) result.allow += ", ";
    result.allow += method_name(static_cast<Method>(m));
    if (static_cast<Method>(m) == Method::kGet) result.allow += ", HEAD";
  }
  if (!result.allow.empty()) result.kind = Match::Kind::kMethodNotAllowed;
  return result;
}

}  // namespace hsea::http
