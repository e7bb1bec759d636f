// CORS with per-tenant allowed origins (HSEA-043): see cors.hpp.
#include "security/cors.hpp"

#include <boost/json/parse.hpp>

#include <algorithm>
#include <atomic>
#include <memory>
#include <unordered_map>

#include "core/error.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/context.hpp"
#include "security/refusals.hpp"

namespace hsea::security {
namespace {

using boost::asio::awaitable;
using http::RequestContext;
using http::Response;

HSEA_QUERY kTenantOrigins{"cors_tenant_origins",
                          "SELECT tenant_id, allowed_origins FROM cors_tenant_origins($1)"};

// What a browser may send and read. Allow-Headers: every request header the API reads.
// Expose-Headers: the response headers a page needs beyond the CORS-safelisted ones.
constexpr std::string_view kAllowHeaders =
    "Authorization, Content-Type, X-CSRF-Token, Idempotency-Key, X-API-Key, X-Tenant-Id, "
    "X-Request-Id, traceparent";
constexpr std::string_view kExposeHeaders =
    "X-Request-Id, Retry-After, RateLimit, RateLimit-Policy, RateLimit-Limit, "
    "RateLimit-Remaining, RateLimit-Reset, Location";
// Ten minutes: a browser re-asks soon after an origin is removed (Chromium caps it at 2 h).
constexpr std::string_view kPreflightMaxAge = "600";
constexpr std::size_t kMaxCachedSlugs = 10000;

HostSlug g_host_slug = nullptr;
std::atomic<std::uint64_t> g_epoch{1};

struct TenantOrigins {
  std::string tenant_id;  // "" when the slug names no tenant (remembered too)
  std::vector<std::string> origins;
};
using Shared = std::shared_ptr<const TenantOrigins>;

// One per I/O thread, never locked. Entries are shared pointers: a request keeps its entry
// across its co_awaits even if the map is emptied meanwhile.
struct Cache {
  struct Entry {
    Shared value;
    std::chrono::steady_clock::time_point expires;
  };
  std::uint64_t epoch = 0;
  std::unordered_map<std::string, Entry> map;
};

Cache& cache() {
  thread_local Cache c;
  std::uint64_t now = g_epoch.load(std::memory_order_acquire);
  if (c.epoch != now) {
    c.map.clear();
    c.epoch = now;
  }
  return c;
}

void put(const std::string& slug, Shared value) {
  Cache& c = cache();
  if (c.map.size() >= kMaxCachedSlugs) c.map.clear();
  c.map[slug] = {std::move(value), std::chrono::steady_clock::now() + kCorsCacheTtl};
}

Shared cached(const std::string& slug) {
  Cache& c = cache();
  auto it = c.map.find(slug);
  if (it == c.map.end()) return nullptr;
  if (std::chrono::steady_clock::now() >= it->second.expires) {
    c.map.erase(it);
    return nullptr;
  }
  return it->second.value;
}

awaitable<Shared> origins_of(std::string slug) {
  if (Shared hit = cached(slug)) co_return hit;
  db::Result r = co_await db::pool().query(kTenantOrigins, db::params(slug));
  auto found = std::make_shared<TenantOrigins>();
  if (!r.empty()) {
    found->tenant_id = r.text(0, "tenant_id");
    boost::json::value list = boost::json::parse(r.get(0, "allowed_origins"));
    for (const auto& v : list.as_array()) {
      if (v.is_string()) found->origins.emplace_back(v.get_string());
    }
  }
  put(slug, found);
  co_return found;
}

bool listed(const TenantOrigins* tenant, std::string_view origin) {
  if (tenant == nullptr) return false;
  std::string normal, reason;
  if (!normalize_origin(origin, normal, reason)) return false;
  return std::ranges::find(tenant->origins, normal) != tenant->origins.end();
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::ranges::transform(out, out.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// A page calling its own host sends Origin too (on POST, PATCH, DELETE): that is no cross-origin
// request, so neither CORS headers nor a refusal. The scheme is left out of the comparison: behind
// a TLS-terminating proxy the server does not see it.
bool same_origin(const RequestContext& ctx, std::string_view origin) {
  auto sep = origin.find("://");
  if (sep == std::string_view::npos) return false;
  return lower(origin.substr(sep + 3)) == lower(ctx.request.header("host"));
}

void add_vary_origin(Response& r) {
  std::string_view vary = r.header("vary");
  if (vary.empty()) {
    r.set_header("vary", "Origin");
  } else if (lower(vary).find("origin") == std::string::npos) {
    r.set_header("vary", std::string(vary) + ", Origin");
  }
}

awaitable<void> audit_cors_refusal(const RequestContext& ctx, const TenantOrigins* tenant,
                                   bool preflight) {
  std::string origin = log::valid_utf8(ctx.request.header("origin"), 300);
  RefusalEvent e{.kind = Refusal::kCors,
                 .tenant_id = tenant != nullptr ? tenant->tenant_id : std::string(),
                 .action = "security.cors_refused",
                 .target_type = "origin",
                 .target_id = origin,
                 .metadata = {{"origin", origin},
                              {"preflight", preflight},
                              {"method", http::method_name(ctx.request.method)},
                              {"path", log::valid_utf8(ctx.request.path, 512)}}};
  if (preflight) {
    e.metadata["requested_method"] =
        log::valid_utf8(ctx.request.header("access-control-request-method"), 64);
  }
  co_await audit_refusal(ctx, std::move(e));
}

}  // namespace

void set_cors_host_slug(HostSlug host_slug) { g_host_slug = host_slug; }

void invalidate_cors_cache() { g_epoch.fetch_add(1, std::memory_order_release); }

void remember_cors_origins(const std::string& slug, std::string tenant_id,
                           std::vector<std::string> origins) {
  put(slug, std::make_shared<const TenantOrigins>(
                TenantOrigins{std::move(tenant_id), std::move(origins)}));
}

bool normalize_origin(std::string_view text, std::string& normal, std::string& reason) {
  if (text.size() > 300) {
    reason = "is longer than 300 characters";
    return false;
  }
  if (text.find('*') != std::string_view::npos) {
    reason = "must not hold a wildcard: list each origin";
    return false;
  }
  if (!std::ranges::all_of(text, [](unsigned char c) { return c > 0x20 && c < 0x7f; })) {
    reason = "holds a space, control or non-ASCII character (write IDN hosts in punycode)";
    return false;
  }
  std::string s = lower(text);
  auto sep = s.find("://");
  if (sep == std::string::npos) {
    reason = "must be scheme://host[:port], e.g. https://app.example.com";
    return false;
  }
  std::string scheme = s.substr(0, sep);
  if (scheme != "http" && scheme != "https") {
    reason = "must use the scheme http or https";
    return false;
  }
  std::string rest = s.substr(sep + 3);
  if (rest.find_first_of("/?#") != std::string::npos) {
    reason = "must have no path (not even \"/\"), query or fragment";
    return false;
  }
  if (rest.find('@') != std::string::npos) {
    reason = "must have no user name or password";
    return false;
  }
  std::string host, port;
  if (rest.starts_with('[')) {
    auto close = rest.find(']');
    if (close == std::string::npos) {
      reason = "has an unclosed IPv6 address";
      return false;
    }
    host = rest.substr(0, close + 1);
    std::string_view inside = std::string_view(host).substr(1, host.size() - 2);
    if (inside.find(':') == std::string_view::npos || !std::ranges::all_of(inside, [](char c) {
          return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
        })) {
      reason = "has an invalid IPv6 address";
      return false;
    }
    std::string after = rest.substr(close + 1);
    if (!after.empty() && after.front() != ':') {
      reason = "has text after the IPv6 address";
      return false;
    }
    if (!after.empty()) port = after.substr(1);
    if (after == ":") port = ":";  // an empty port, refused below
  } else {
    auto colon = rest.find(':');
    host = rest.substr(0, colon);
    if (colon != std::string::npos) port = rest.substr(colon + 1);
    if (colon != std::string::npos && port.empty()) port = ":";
    bool ok = !host.empty() && host.size() <= 253 && host.back() != '.';
    for (std::size_t start = 0; ok && start <= host.size();) {
      auto dot = host.find('.', start);
      std::string_view label =
          std::string_view(host).substr(start, dot == std::string::npos ? dot : dot - start);
      ok = !label.empty() && label.size() <= 63 && label.front() != '-' && label.back() != '-' &&
           std::ranges::all_of(label, [](char c) {
             return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
           });
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    if (!ok) {
      reason = "must name a host: letters, digits and hyphens in dot-separated labels";
      return false;
    }
  }
  if (!port.empty()) {
    if (port.size() > 5 ||
        !std::ranges::all_of(port, [](char c) { return c >= '0' && c <= '9'; })) {
      reason = "must have a port of 1 to 65535";
      return false;
    }
    int number = std::stoi(port);
    if (number < 1 || number > 65535) {
      reason = "must have a port of 1 to 65535";
      return false;
    }
    bool default_port = (scheme == "https" && number == 443) || (scheme == "http" && number == 80);
    port = default_port ? std::string() : std::to_string(number);
  }
  normal = scheme + "://" + host + (port.empty() ? "" : ":" + port);
  return true;
}

bool has_origin(const RequestContext& ctx) { return !ctx.request.header("origin").empty(); }

awaitable<Response> cors(RequestContext& ctx, http::Next next) {
  std::string origin(ctx.request.header("origin"));
  if (same_origin(ctx, origin)) co_return co_await next(ctx);
  bool preflight = ctx.request.method == http::Method::kOptions &&
                   !ctx.request.header("access-control-request-method").empty();
  std::string slug = g_host_slug != nullptr ? g_host_slug(ctx.request.header("host")) : "";

  if (!preflight) {
    // The request runs whatever its origin (the browser decides whether the page may read the
    // answer): unsafe cookie requests are stopped by the CSRF check, not here.
    Response response = co_await next(ctx);
    Shared tenant;
    if (!slug.empty()) {
      try {
        tenant = co_await origins_of(slug);
      } catch (const std::exception& e) {
        // Without the list no origin is allowed; the answer itself is not lost.
        log::warn("CORS origins not loaded", {{"request_id", ctx.request_id}, {"error", e.what()}});
      }
    }
    add_vary_origin(response);
    if (listed(tenant.get(), origin)) {
      response.set_header("access-control-allow-origin", origin);
      response.set_header("access-control-allow-credentials", "true");
      response.set_header("access-control-expose-headers", std::string(kExposeHeaders));
    } else {
      co_await audit_cors_refusal(ctx, tenant.get(), false);
    }
    co_return response;
  }

  Shared tenant;
  if (!slug.empty()) tenant = co_await origins_of(slug);
  if (!listed(tenant.get(), origin)) {
    co_await audit_cors_refusal(ctx, tenant.get(), true);
    throw core::ApiError(core::ErrorCode::kOriginNotAllowed,
                         "This origin may not call the API from a browser: a tenant owner or "
                         "admin lists allowed origins with PATCH /api/tenant/settings.");
  }
  if (ctx.match.kind == http::Match::Kind::kNotFound) co_return co_await next(ctx);
  std::string methods = ctx.match.kind == http::Match::Kind::kMethodNotAllowed
                            ? ctx.match.allow
                            : std::string(http::method_name(ctx.request.method));
  Response r = Response::no_content();
  r.set_header("access-control-allow-origin", origin);
  r.set_header("access-control-allow-credentials", "true");
  r.set_header("access-control-allow-methods", methods);
  r.set_header("access-control-allow-headers", std::string(kAllowHeaders));
  r.set_header("access-control-max-age", std::string(kPreflightMaxAge));
  add_vary_origin(r);
  co_return r;
}

}  // namespace hsea::security
