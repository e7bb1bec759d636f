#pragma once
// The one way to declare a route: method, path template ("/api/members/{user_id}"), handler,
// and its typed policies. Every /api/... route is also served at /api/v1/....
#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.hpp"
#include "http/policy.hpp"

namespace hsea::http {

struct RequestContext;
using Handler = boost::asio::awaitable<Response> (*)(RequestContext&);

struct Route {
  Method method = Method::kGet;
  std::string path;  // template; "{name}" matches one segment
  Handler handler = nullptr;
  // What the route requires before its handler runs (authentication, roles, body schema...):
  // typed values of the modules whose middleware enforce them.
  Policies policies = {};
  std::size_t id = 0;  // set by Router::add; stable index for metrics

  template <typename P>
  const P* policy() const {
    return policies.find<P>();
  }
};

struct PathParam {
  std::string name;
  std::string value;
};

struct Match {
  enum class Kind { kFound, kNotFound, kMethodNotAllowed } kind = Kind::kNotFound;
  const Route* route = nullptr;
  std::vector<PathParam> params;
  std::string allow;  // for 405: "GET, POST"
};

class Router {
 public:
  Router();
  ~Router();
  Router(Router&&) noexcept;
  Router& operator=(Router&&) noexcept;

  // Adds the route (and its /api/v1 twin). Throws std::logic_error on a duplicate.
  void add(Route route);
  // `path` as received (percent-encoded, without the query): it is split at "/" first and each
  // segment decoded after, so "%2F" stays inside its segment; parameters are decoded values.
  Match match(Method method, std::string_view path) const;
  // Every declared route, indexed by Route::id (a /api/v1 twin shares its original's id).
  const std::vector<std::unique_ptr<Route>>& routes() const { return routes_; }

 private:
  struct Node;
  void insert(const std::string& path, Route* route);
  std::vector<std::unique_ptr<Route>> routes_;
  std::unique_ptr<Node> root_;
};

}  // namespace hsea::http
