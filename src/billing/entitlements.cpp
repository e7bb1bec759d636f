// Entitlements in two levels. Each I/O thread caches every tenant's plan features and limits it
// has seen, so a check costs no query. A thread's miss asks the shared tenant cache (Redis when
// configured, this process's table otherwise) before PostgreSQL, and offers what it loaded
// there. A change of any plan or subscription anywhere (a trigger NOTIFYs hsea_billing when its
// transaction commits) empties every node's per-thread caches; kEntitlementTtl bounds what a
// lost notification could leave stale. The shared entry holds only the tenant's own facts (its
// effective plan, status and period): a plan's terms come from each thread's plan table,
// reloaded after every notification, so a change of a plan's terms needs nothing shared
// dropped. A subscription change goes through Entitlements::commit, which drops the tenant's
// shared entry around its commit (see redis::TenantCache::begin_change for the order).
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <ctime>
#include <exception>
#include <unordered_map>

#include "billing/billing.hpp"
#include "billing/internal.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "db/listen_hook.hpp"
#include "http/context.hpp"
#include "http/middleware.hpp"
#include "redis/tenant_cache.hpp"
#include "runtime/registrar.hpp"

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
// Every plan's terms, for this thread's plan table (plans are platform rows: a handful).
HSEA_QUERY kPlanTerms{"billing_entitlement_plans",
                      "SELECT id, features::text AS features, limits::text AS limits, "
                      "metered::text AS metered FROM plans"};

// The tenant's entry in the shared tenant cache.
const std::string kSharedKey = "billing.entitlement";

struct PlanTerms {
  std::map<std::string, bool, std::less<>> features;
  std::map<std::string, std::int64_t, std::less<>> limits;
  std::map<std::string, bool, std::less<>> metered;
};
using PlanTable = std::unordered_map<std::string, PlanTerms>;

std::atomic<std::uint64_t> g_epoch{1};

struct Cache {
  struct Entry {
    std::shared_ptr<const Entitlement> value;
    Clock::time_point expires;
  };
  std::uint64_t epoch = 0;
  std::unordered_map<std::string, Entry> entries;
  std::shared_ptr<const PlanTable> plans;  // null until loaded in this epoch

  void sync() {
    std::uint64_t now = g_epoch.load(std::memory_order_acquire);
    if (now != epoch) {
      entries.clear();
      plans.reset();
      epoch = now;
    }
  }
};
Cache& cache() {
  static thread_local Cache c;
  return c;
}
constexpr std::size_t kMaxEntries = 50000;

PlanTerms parse_terms(std::string_view features, std::string_view limits,
                      std::string_view metered) {
  PlanTerms t;
  boost::system::error_code ec;
  boost::json::value f = boost::json::parse(features, ec);
  if (!ec && f.is_object()) {
    for (const auto& [k, v] : f.as_object()) {
      t.features.emplace(std::string(k), v.is_bool() && v.as_bool());
    }
  }
  boost::json::value l = boost::json::parse(limits, ec);
  if (!ec && l.is_object()) {
    for (const auto& [k, v] : l.as_object()) {
      if (v.is_int64()) t.limits.emplace(std::string(k), v.as_int64());
      if (v.is_uint64()) t.limits.emplace(std::string(k), static_cast<std::int64_t>(v.as_uint64()));
    }
  }
  boost::json::value m = boost::json::parse(metered, ec);
  if (!ec && m.is_object()) {
    for (const auto& [k, v] : m.as_object()) t.metered.emplace(std::string(k), true);
  }
  return t;
}

std::shared_ptr<const Entitlement> parse(const std::string& tenant_id, const db::Result& r) {
  auto e = std::make_shared<Entitlement>();
  e->tenant_id = tenant_id;
  e->plan_id = r.text(0, "plan_id");
  e->status = r.text(0, "status");
  PlanTerms terms = parse_terms(r.get(0, "features"), r.get(0, "limits"), r.get(0, "metered"));
  e->features = std::move(terms.features);
  e->limits = std::move(terms.limits);
  e->metered = std::move(terms.metered);
  e->period_start = std::chrono::system_clock::from_time_t(r.get_int(0, "period_start"));
  if (!r.is_null(0, r.column("period_end"))) {
    e->period_end = std::chrono::system_clock::from_time_t(r.get_int(0, "period_end"));
  }
  return e;
}

std::int64_t epoch_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// The shared entry: the tenant's own facts and when they were read.
std::string snapshot_of(const Entitlement& e, std::chrono::system_clock::time_point loaded) {
  boost::json::object o{{"plan_id", e.plan_id},
                        {"status", e.status},
                        {"period_start", epoch_seconds(e.period_start)},
                        {"loaded_at", epoch_seconds(loaded)}};
  if (e.period_end) o["period_end"] = epoch_seconds(*e.period_end);
  return boost::json::serialize(o);
}

// This thread's plan table, loaded once per epoch.
awaitable<std::shared_ptr<const PlanTable>> plan_table() {
  Cache& c = cache();
  c.sync();
  if (c.plans) co_return c.plans;
  std::uint64_t epoch = c.epoch;
  db::Result r = co_await db::pool().query(kPlanTerms);
  auto table = std::make_shared<PlanTable>();
  for (int i = 0; i < r.rows(); ++i) {
    table->emplace(r.text(i, "id"),
                   parse_terms(r.get(i, "features"), r.get(i, "limits"), r.get(i, "metered")));
  }
  Cache& after = cache();
  after.sync();
  if (after.epoch == epoch) after.plans = table;
  co_return table;
}

// The entitlement a shared entry describes, or null when it cannot be used (unreadable, too
// old, or naming a plan this thread does not know). `age` is how long ago it was read.
awaitable<std::shared_ptr<const Entitlement>> from_snapshot(std::string tenant_id, std::string text,
                                                            std::chrono::seconds* age) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) co_return nullptr;
  const boost::json::object& o = v.as_object();
  const boost::json::value *plan = o.if_contains("plan_id"), *status = o.if_contains("status"),
                           *start = o.if_contains("period_start"),
                           *loaded = o.if_contains("loaded_at"), *end = o.if_contains("period_end");
  if (plan == nullptr || !plan->is_string() || status == nullptr || !status->is_string() ||
      start == nullptr || !start->is_int64() || loaded == nullptr || !loaded->is_int64() ||
      (end != nullptr && !end->is_int64())) {
    co_return nullptr;
  }
  *age = std::chrono::seconds(epoch_seconds(std::chrono::system_clock::now()) - loaded->as_int64());
  if (*age < std::chrono::seconds(0)) *age = std::chrono::seconds(0);  // another node's clock
  if (*age >= kEntitlementTtl) co_return nullptr;
  std::shared_ptr<const PlanTable> plans = co_await plan_table();
  auto terms = plans->find(std::string(plan->as_string()));
  if (terms == plans->end()) co_return nullptr;
  auto e = std::make_shared<Entitlement>();
  e->tenant_id = std::move(tenant_id);
  e->plan_id = std::string(plan->as_string());
  e->status = std::string(status->as_string());
  e->features = terms->second.features;
  e->limits = terms->second.limits;
  e->metered = terms->second.metered;
  e->period_start = std::chrono::system_clock::from_time_t(start->as_int64());
  if (end != nullptr) e->period_end = std::chrono::system_clock::from_time_t(end->as_int64());
  co_return e;
}

// A notification: this process's table forgets the shared entries first (they may predate the
// change), then every thread's cache empties.
void on_billing_change() {
  redis::TenantCache::forget_local(kSharedKey);
  Entitlements::invalidate();
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
  // Only a miss of this thread reads the shared cache: a hit above costs no I/O.
  redis::TenantCache shared = redis::tenant_cache();
  redis::TenantCache::Lookup found = co_await shared.lookup(tenant_id, kSharedKey);
  std::shared_ptr<const Entitlement> e;
  std::chrono::seconds age(0);
  if (found.value) e = co_await from_snapshot(tenant_id, std::move(*found.value), &age);
  if (!e) {
    auto loaded = std::chrono::system_clock::now();
    db::Result r = co_await db::pool().tenant_query(tenant_id, kEntitlement);
    if (r.empty()) throw core::ApiError(core::ErrorCode::kNotFound, "No such tenant.");
    e = parse(tenant_id, r);
    // Offered only when no change was heard of meanwhile; the stamp refuses it anyway when a
    // writer's change began after the lookup.
    if (g_epoch.load(std::memory_order_acquire) == epoch) {
      std::string snapshot = snapshot_of(*e, loaded);
      co_await shared.fill(tenant_id, kSharedKey, std::move(snapshot), std::move(found.stamp),
                           kEntitlementTtl);
    }
  }
  Cache& after = cache();  // the same thread: coroutines resume on the request's executor
  after.sync();
  // A change notified while the lookups ran may not be in their answer: do not keep it then.
  if (after.epoch == epoch) {
    if (after.entries.size() >= kMaxEntries) after.entries.clear();
    after.entries[tenant_id] = {e, now + (kEntitlementTtl - age)};
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

awaitable<void> Entitlements::commit(db::Transaction& tx) {
  std::string tenant = tx.scope().tenant_id;
  redis::TenantCache shared = redis::tenant_cache();
  co_await shared.begin_change(tenant, kSharedKey);
  std::exception_ptr failed;
  try {
    co_await tx.commit();
  } catch (...) {
    failed = std::current_exception();
  }
  co_await shared.end_change(tenant, kSharedKey);
  invalidate();
  if (failed) std::rethrow_exception(failed);
}

void register_entitlements(runtime::Registrar& reg) {
  reg.middleware({.name = "entitlements",
                  .stage = http::Stage::kAdmission,
                  .around = check_feature,
                  .when = needs_feature});
  // One LISTEN connection per process (serve and worker: both act on entitlements).
  db::listen_in_every_process(reg, "hsea_billing", on_billing_change);
}

}  // namespace hsea::billing
