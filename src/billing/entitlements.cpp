// Entitlements: each I/O thread caches every tenant's plan features and limits it has seen, so
// a check costs no query. A change of any plan or subscription anywhere (a trigger NOTIFYs
// hsea_billing when its transaction commits) empties every node's caches; kEntitlementTtl bounds
// what a lost notification could leave stale.
#include <boost/json/parse.hpp>

#include <atomic>
#include <ctime>
#include <unordered_map>

#include "billing/billing.hpp"
#include "billing/internal.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/context.hpp"
#include "http/middleware.hpp"
#include "runtime/registrar.hpp"
#include "runtime/runtime.hpp"

namespace hsea::billing {
namespace {

using boost::asio::awaitable;
using Clock = std::chrono::steady_clock;

// The free plan applies without a subscription row, after a cancellation ends, while the first
// payment is outstanding (incomplete), and after a trial that ended without a paid subscription.
HSEA_QUERY kEntitlement{
    "billing_entitlement",
    "SELECT p.id AS plan_id, p.features::text AS features, p.limits::text AS limits, "
    "p.metered::text AS metered, "
    "COALESCE(s.status, 'active') AS status, "
    "EXTRACT(epoch FROM COALESCE(s.current_period_start, t.created_at))::bigint AS period_start, "
    "EXTRACT(epoch FROM s.current_period_end)::bigint AS period_end "
    "FROM tenants t LEFT JOIN subscriptions s ON s.tenant_id = t.id "
    "JOIN plans p ON p.id = CASE WHEN s.status IS NULL OR s.status IN ('canceled', "
    "'incomplete', 'incomplete_expired') OR (s.status = 'trialing' AND "
    "s.stripe_subscription_id IS NULL "
    "AND s.trial_end <= now()) THEN 'free' ELSE s.plan_id END "
    "WHERE t.id = current_setting('app.tenant_id')::uuid"};

std::atomic<std::uint64_t> g_epoch{1};

struct Cache {
  struct Entry {
    std::shared_ptr<const Entitlement> value;
    Clock::time_point expires;
  };
  std::uint64_t epoch = 0;
  std::unordered_map<std::string, Entry> entries;

  void sync() {
    std::uint64_t now = g_epoch.load(std::memory_order_acquire);
    if (now != epoch) {
      entries.clear();
      epoch = now;
    }
  }
};
Cache& cache() {
  static thread_local Cache c;
  return c;
}
constexpr std::size_t kMaxEntries = 50000;

std::shared_ptr<const Entitlement> parse(const std::string& tenant_id, const db::Result& r) {
  auto e = std::make_shared<Entitlement>();
  e->tenant_id = tenant_id;
  e->plan_id = r.text(0, "plan_id");
  e->status = r.text(0, "status");
  boost::system::error_code ec;
  boost::json::value f = boost::json::parse(r.get(0, "features"), ec);
  if (!ec && f.is_object()) {
    for (const auto& [k, v] : f.as_object()) {
      e->features.emplace(std::string(k), v.is_bool() && v.as_bool());
    }
  }
  boost::json::value l = boost::json::parse(r.get(0, "limits"), ec);
  if (!ec && l.is_object()) {
    for (const auto& [k, v] : l.as_object()) {
      if (v.is_int64()) e->limits.emplace(std::string(k), v.as_int64());
      if (v.is_uint64())
        e->limits.emplace(std::string(k), static_cast<std::int64_t>(v.as_uint64()));
    }
  }
  boost::json::value m = boost::json::parse(r.get(0, "metered"), ec);
  if (!ec && m.is_object()) {
    for (const auto& [k, v] : m.as_object()) e->metered.emplace(std::string(k), true);
  }
  e->period_start = std::chrono::system_clock::from_time_t(r.get_int(0, "period_start"));
  if (!r.is_null(0, r.column("period_end"))) {
    e->period_end = std::chrono::system_clock::from_time_t(r.get_int(0, "period_end"));
  }
  return e;
}

bool needs_feature(const http::RequestContext& ctx) { return ctx.policy<Feature>() != nullptr; }

// Admission: after authorization, so the tenant is the caller's.
awaitable<http::Response> check_feature(http::RequestContext& ctx, http::Next next) {
  const Feature* f = ctx.policy<Feature>();
  if (!ctx.tenant_id.empty()) {
    std::shared_ptr<const Entitlement> e = co_await Entitlements::of(ctx.tenant_id);
    if (!e->has(f->name)) {
      throw core::ApiError(core::ErrorCode::kPlanRequired,
                           "The organization's plan (" + e->plan_id + ") does not include " +
                               f->name + "; upgrade the plan to use it.");
    }
  }
  co_return co_await next(ctx);
}

}  // namespace

bool Entitlement::has(std::string_view feature) const {
  auto it = features.find(feature);
  return it != features.end() && it->second;
}

std::optional<std::int64_t> Entitlement::limit(std::string_view key) const {
  auto it = limits.find(key);
  if (it == limits.end()) return std::nullopt;
  return it->second;
}

awaitable<std::shared_ptr<const Entitlement>> Entitlements::of(std::string tenant_id) {
  Cache& c = cache();
  c.sync();
  auto now = Clock::now();
  if (auto it = c.entries.find(tenant_id); it != c.entries.end() && it->second.expires > now) {
    co_return it->second.value;
  }
  std::uint64_t epoch = c.epoch;
  db::Result r = co_await db::pool().tenant_query(tenant_id, kEntitlement);
  if (r.empty()) throw core::ApiError(core::ErrorCode::kNotFound, "No such tenant.");
  std::shared_ptr<const Entitlement> e = parse(tenant_id, r);
  Cache& after = cache();  // the same thread: coroutines resume on the request's executor
  after.sync();
  // A change notified while the query ran may not be in its answer: do not keep it then.
  if (after.epoch == epoch) {
    if (after.entries.size() >= kMaxEntries) after.entries.clear();
    after.entries[tenant_id] = {e, now + kEntitlementTtl};
  }
  co_return e;
}

awaitable<std::map<std::string, std::int64_t, std::less<>>> Entitlements::limits(
    std::string tenant_id) {
  std::shared_ptr<const Entitlement> e = co_await of(std::move(tenant_id));
  co_return e->limits;
}

std::shared_ptr<const Entitlement> Entitlements::cached(const std::string& tenant_id) {
  Cache& c = cache();
  c.sync();
  auto it = c.entries.find(tenant_id);
  if (it == c.entries.end() || it->second.expires <= Clock::now()) return nullptr;
  return it->second.value;
}

void Entitlements::invalidate() { g_epoch.fetch_add(1, std::memory_order_acq_rel); }

void register_entitlements(runtime::Registrar& reg) {
  reg.middleware({.name = "entitlements",
                  .stage = http::Stage::kAdmission,
                  .around = check_feature,
                  .when = needs_feature});
  // One LISTEN connection per process (serve and worker: both act on entitlements).
  reg.on_start([](runtime::Application& app, runtime::Runtime* rt) {
    if (rt == nullptr || app.role == runtime::Role::kCommand) return;
    rt->post(0, [] {
      runtime::spawn(runtime::ThreadContext::current()->io(),
                     db::listen(db::pool().options(), "hsea_billing", Entitlements::invalidate),
                     "billing listener");
    });
  });
}

}  // namespace hsea::billing
