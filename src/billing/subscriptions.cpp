// Subscriptions (HSEA-022, 024, 025): every tenant has one, started on the free plan (or the
// configured trial) in the transaction that creates the tenant; GET /api/subscriptions/current;
// checkout through Stripe Checkout; upgrade, downgrade, cancel, reactivate and the proration
// preview. Stripe is the source of truth for paid subscriptions: every change HSEA asks for is
// applied from the subscription object Stripe answers (and again from its webhooks), under the
// row's lock, so replays and reordering change nothing twice.
#include <algorithm>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

#include "billing/billing.hpp"
#include "billing/internal.hpp"
#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/context.hpp"
#include "http/json.hpp"
#include "identity/access.hpp"
#include "identity/sessions.hpp"
#include "jobs/jobs.hpp"
#include "metering/policies.hpp"
#include "runtime/registrar.hpp"
#include "security/audit.hpp"
#include "security/cors.hpp"
#include "security/policies.hpp"

namespace hsea::billing {
namespace {

using boost::asio::awaitable;
using boost::json::array;
using boost::json::object;
using boost::json::value;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

#define HSEA_SUBSCRIPTION_COLUMNS                                                        \
  "s.id, s.plan_id, s.billing_interval, s.status, s.trial_end, s.current_period_start, " \
  "s.current_period_end, s.cancel_at_period_end, s.canceled_at, s.pending_plan_id, "     \
  "s.pending_interval, s.stripe_customer_id, s.stripe_subscription_id, s.created_at, "   \
  "s.updated_at, EXTRACT(epoch FROM s.current_period_end)::bigint AS period_end_epoch, " \
  "EXTRACT(epoch FROM s.current_period_start)::bigint AS period_start_epoch, "           \
  "p.name AS plan_name, p.currency, p.monthly_amount, p.yearly_amount, "                 \
  "p.features::text AS features, p.limits::text AS limits"

HSEA_QUERY kInsertSubscription{
    "billing_subscription_insert",
    "INSERT INTO subscriptions (tenant_id, id, plan_id, status, trial_end, current_period_end) "
    "VALUES (current_setting('app.tenant_id')::uuid, $1, $2, $3, "
    "CASE WHEN $4::int > 0 THEN now() + make_interval(days => $4::int) END, "
    "CASE WHEN $4::int > 0 THEN now() + make_interval(days => $4::int) END) RETURNING id"};
HSEA_QUERY kCurrent{"billing_subscription_current",
                    "SELECT " HSEA_SUBSCRIPTION_COLUMNS
                    " FROM subscriptions s JOIN plans p ON p.id = s.plan_id"};
// Locked in a subquery: with `FOR UPDATE OF s` on the join, a caller that waited for another
// transaction's change of plan_id would get no row (PostgreSQL re-checks the join against the plan
// row it read before waiting); here the newest row is joined to its own plan.
HSEA_QUERY kLock{
    "billing_subscription_lock",
    "SELECT " HSEA_SUBSCRIPTION_COLUMNS
    " FROM (SELECT * FROM subscriptions FOR UPDATE) s JOIN plans p ON p.id = s.plan_id"};
HSEA_QUERY kSetCustomer{"billing_subscription_set_customer",
                        "UPDATE subscriptions SET stripe_customer_id = $1, updated_at = now() "
                        "WHERE stripe_customer_id IS NULL RETURNING stripe_customer_id"};
HSEA_QUERY kApply{
    "billing_subscription_apply",
    "UPDATE subscriptions SET plan_id = $1, billing_interval = $2, status = $3, "
    "trial_end = to_timestamp($4::bigint), current_period_start = "
    "COALESCE(to_timestamp($5::bigint), current_period_start), "
    "current_period_end = to_timestamp($6::bigint), cancel_at_period_end = $7::boolean, "
    "canceled_at = to_timestamp($8::bigint), pending_plan_id = $9, pending_interval = $10, "
    "stripe_subscription_id = $11, metered_items_pending = metered_items_pending OR $12::boolean, "
    "updated_at = now() RETURNING id"};
// The job billing.plan_items is done: the applied plan's metered prices are on the Stripe
// subscription (since $1, Stripe's time, when it put them there), usage is no longer held back.
HSEA_QUERY kMeteredItemsSet{
    "billing_subscription_metered_items_set",
    "UPDATE subscriptions SET metered_items_pending = false, metered_items_at = "
    "COALESCE(to_timestamp($1::bigint), metered_items_at), updated_at = now() "
    "WHERE metered_items_pending OR $1::bigint IS NOT NULL RETURNING id"};
HSEA_QUERY kPlan{"billing_plan_for_sale",
                 "SELECT id, name, status, currency, monthly_amount, yearly_amount, sort_order, "
                 "limits::text AS limits, stripe_monthly_price_id, stripe_yearly_price_id, "
                 "metered::text AS metered, stripe_metered_price_ids::text AS metered_prices "
                 "FROM plans WHERE id = $1"};
HSEA_QUERY kPlanOfPrice{
    "billing_plan_of_price",
    "SELECT id, CASE WHEN stripe_monthly_price_id = $1 THEN 'month' ELSE 'year' END AS interval "
    "FROM plans WHERE stripe_monthly_price_id = $1 OR stripe_yearly_price_id = $1"};
HSEA_QUERY kSeats{"billing_seats_used", "SELECT count(*) AS n FROM memberships"};
// Trials HSEA started that ended unpaid (migration 0024), at most $1 tenants a run.
HSEA_QUERY kExpiredTrials{"billing_expired_trials",
                          "SELECT t::text AS tenant_id FROM billing_expired_trials($1) AS t"};
// The trial ends on the free plan, from now; the same conditions as the search, checked again
// under the row's lock (a checkout may have completed meanwhile).
HSEA_QUERY kEndTrial{
    "billing_trial_end",
    "UPDATE subscriptions SET plan_id = 'free', billing_interval = 'month', status = 'active', "
    "current_period_start = now(), current_period_end = NULL, pending_plan_id = NULL, "
    "pending_interval = NULL, updated_at = now() "
    "WHERE status = 'trialing' AND stripe_subscription_id IS NULL AND trial_end <= now() "
    "RETURNING id"};
HSEA_QUERY kTenantName{"billing_tenant_name", "SELECT name FROM tenants"};
HSEA_QUERY kAllowedOrigins{"billing_allowed_origins",
                           "SELECT array_to_json(allowed_origins)::text AS origins "
                           "FROM tenant_settings"};

// ------------------------------------------------------------------------------ helpers

// Who caused a change: a request's principal, or a Stripe event.
struct Cause {
  security::Actor actor;
  security::Origin origin;
};
Cause cause_of(const RequestContext& ctx) {
  return Cause{security::actor_of(ctx), security::origin_of(ctx)};
}

value json_text(std::string_view text) {
  boost::system::error_code ec;
  value v = boost::json::parse(text, ec);
  return ec ? value(object{}) : v;
}

object subscription_json(const db::Result& r) {
  return object{{"id", r.text(0, "id")},
                {"plan_id", r.text(0, "plan_id")},
                {"interval", r.text(0, "billing_interval")},
                {"status", r.text(0, "status")},
                {"trial_end", r.nullable_time(0, "trial_end")},
                {"current_period_start", r.time(0, "current_period_start")},
                {"current_period_end", r.nullable_time(0, "current_period_end")},
                {"cancel_at_period_end", r.get_bool(0, "cancel_at_period_end")},
                {"canceled_at", r.nullable_time(0, "canceled_at")},
                {"pending_plan_id", r.nullable(0, "pending_plan_id")},
                {"pending_interval", r.nullable(0, "pending_interval")},
                {"stripe_customer_id", r.nullable(0, "stripe_customer_id")},
                {"stripe_subscription_id", r.nullable(0, "stripe_subscription_id")},
                {"plan", object{{"id", r.text(0, "plan_id")},
                                {"name", r.text(0, "plan_name")},
                                {"currency", r.text(0, "currency")},
                                {"monthly_amount", r.get_int(0, "monthly_amount")},
                                {"yearly_amount", r.get_int(0, "yearly_amount")},
                                {"features", json_text(r.get(0, "features"))},
                                {"limits", json_text(r.get(0, "limits"))}}},
                {"created_at", r.time(0, "created_at")},
                {"updated_at", r.time(0, "updated_at")}};
}

std::string str_of(const object& o, std::string_view key) {
  const value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}
std::optional<std::int64_t> int_of(const object& o, std::string_view key) {
  const value* v = o.if_contains(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->as_uint64());
  return std::nullopt;
}
bool bool_of(const object& o, std::string_view key) {
  const value* v = o.if_contains(key);
  return v != nullptr && v->is_bool() && v->as_bool();
}
// A subscription holds the plan's flat (licensed) price and, for a plan with metered meters, its
// metered prices (billed in arrears from the usage reported to Stripe).
std::vector<const object*> items_of(const object& sub) {
  std::vector<const object*> out;
  const value* items = sub.if_contains("items");
  if (items == nullptr || !items->is_object()) return out;
  const value* data = items->as_object().if_contains("data");
  if (data == nullptr || !data->is_array()) return out;
  for (const value& item : data->as_array()) {
    if (item.is_object()) out.push_back(&item.as_object());
  }
  return out;
}
std::string item_price(const object& item) {
  const value* price = item.if_contains("price");
  if (price != nullptr && price->is_object()) return str_of(price->as_object(), "id");
  if (price != nullptr && price->is_string()) return std::string(price->as_string());
  return "";
}
bool item_metered(const object& item) {
  const value* price = item.if_contains("price");
  if (price == nullptr || !price->is_object()) return false;
  const value* recurring = price->as_object().if_contains("recurring");
  return recurring != nullptr && recurring->is_object() &&
         str_of(recurring->as_object(), "usage_type") == "metered";
}
// The item of the plan's flat price: the one the plan is known by.
const object* flat_item(const object& sub) {
  std::vector<const object*> items = items_of(sub);
  for (const object* item : items) {
    if (!item_metered(*item)) return item;
  }
  return items.empty() ? nullptr : items.front();
}
std::string price_of(const object& sub) {
  const object* item = flat_item(sub);
  return item == nullptr ? "" : item_price(*item);
}
// Stripe's periods sit on the subscription (API 2024-06-20) or on its item (later versions).
std::optional<std::int64_t> period_of(const object& sub, std::string_view key) {
  if (auto v = int_of(sub, key)) return v;
  if (const object* item = flat_item(sub)) return int_of(*item, key);
  return std::nullopt;
}

[[noreturn]] void provider_refused(const StripeReply& reply, std::string_view what) {
  throw ApiError(ErrorCode::kPaymentProviderError, std::string("The payment provider refused to ") +
                                                       std::string(what) + ": " +
                                                       reply.error_message())
      .internal("stripe status " + std::to_string(reply.status));
}

// The Idempotency-Key of a Stripe POST a request causes: the client's own Idempotency-Key when
// it sent one (a retried request repeats the Stripe call, not its effect), else the request id
// (stable across the client's retries of the Stripe call within this request).
std::string idempotency_key(const RequestContext& ctx, std::string_view what) {
  std::string_view client = ctx.request.header("idempotency-key");
  std::string base = !client.empty() && client.size() <= 200
                         ? "hsea-" + ctx.tenant_id + "-" + std::string(client)
                         : "hsea-" + ctx.request_id;
  return base + "-" + std::string(what);
}

// ------------------------------------------------------------------- applying Stripe state

struct Applied {
  std::string plan_id, interval, status;
  std::optional<std::int64_t> trial_end, period_start, period_end, canceled_at;
  bool cancel_at_period_end = false;
  std::optional<std::string> pending_plan, pending_interval;
  std::string stripe_subscription_id;
  // A period-end plan change applied: its metered items are swapped later (finish_pending_plan).
  bool metered_items_pending = false;
};

// What the row becomes for Stripe's subscription `sub`, given the row now (locked).
awaitable<std::optional<Applied>> applied_from(db::Transaction& tx, const db::Result& row,
                                               const object& sub) {
  std::string sub_id = str_of(sub, "id");
  std::string current = row.text(0, "stripe_subscription_id");
  std::string status = str_of(sub, "status");
  // A late event of a subscription this tenant replaced (canceled, then checked out anew)
  // must not overwrite the new one.
  if (!current.empty() && current != sub_id &&
      (status == "canceled" || status == "incomplete_expired")) {
    co_return std::nullopt;
  }
  Applied a;
  a.stripe_subscription_id = sub_id;
  a.status = status;
  std::string price = price_of(sub);
  db::Result plan = co_await tx.exec(kPlanOfPrice, db::params(price));
  if (!plan.empty()) {
    a.plan_id = plan.text(0, "id");
    a.interval = plan.text(0, "interval");
  } else {
    // A price HSEA does not know (changed in Stripe's dashboard): the plan in its metadata.
    const value* md = sub.if_contains("metadata");
    a.plan_id = md != nullptr && md->is_object() ? str_of(md->as_object(), "hsea_plan") : "";
    if (a.plan_id.empty()) a.plan_id = row.text(0, "plan_id");
    a.interval = row.text(0, "billing_interval");
  }
  a.trial_end = int_of(sub, "trial_end");
  a.period_start = period_of(sub, "current_period_start");
  a.period_end = period_of(sub, "current_period_end");
  a.canceled_at = int_of(sub, "canceled_at");
  a.cancel_at_period_end = bool_of(sub, "cancel_at_period_end");
  // A downgrade at the period's end: Stripe already bills the new price from the next period,
  // the tenant keeps the plan it paid for until then.
  std::optional<std::string> pending = row.optional(0, "pending_plan_id");
  if (pending && current == sub_id && a.plan_id == *pending && row.text(0, "plan_id") != *pending &&
      !row.is_null(0, row.column("period_end_epoch")) && a.period_end &&
      *a.period_end == row.get_int(0, "period_end_epoch")) {
    a.pending_plan = pending;
    a.pending_interval = row.optional(0, "pending_interval");
    a.plan_id = row.text(0, "plan_id");
    a.interval = row.text(0, "billing_interval");
  }
  if (status == "canceled" || status == "incomplete_expired") {
    a.pending_plan.reset();
    a.pending_interval.reset();
  }
  co_return a;
}

std::string event_type_for(const db::Result& before, const Applied& a) {
  bool was_canceling = before.get_bool(0, "cancel_at_period_end");
  if (a.status == "canceled" && before.text(0, "status") != "canceled") {
    return "subscription.canceled";
  }
  if (a.cancel_at_period_end && !was_canceling) return "subscription.canceled";
  if (!a.cancel_at_period_end && was_canceling && a.status != "canceled") {
    return "subscription.reactivated";
  }
  if (before.text(0, "stripe_subscription_id") != a.stripe_subscription_id) {
    return "subscription.created";
  }
  return "subscription.updated";
}

UsageReports g_usage;

// Writes `a` over the locked row when it differs; audits and emits the event. Returns whether
// it changed anything.
awaitable<bool> write(db::Transaction& tx, const db::Result& before, const Applied& a,
                      const Cause& cause) {
  co_await tx.exec(
      kApply, db::params(a.plan_id, a.interval, a.status, a.trial_end, a.period_start, a.period_end,
                         a.cancel_at_period_end, a.canceled_at, a.pending_plan, a.pending_interval,
                         a.stripe_subscription_id, a.metered_items_pending));
  // A new period of the same Stripe subscription started: the usage of the period ended reaches
  // Stripe while that period's invoice is a draft (metering's report, enqueued in this
  // transaction). Once per period: a replayed or stale event finds the period already written.
  if (a.period_start && g_usage.report_after != nullptr &&
      before.text(0, "stripe_subscription_id") == a.stripe_subscription_id &&
      *a.period_start > before.get_int(0, "period_start_epoch")) {
    co_await g_usage.report_after(tx, *a.period_start);
  }
  db::Result after = co_await tx.exec(kCurrent);
  object from{{"plan_id", before.text(0, "plan_id")},
              {"interval", before.text(0, "billing_interval")},
              {"status", before.text(0, "status")},
              {"cancel_at_period_end", before.get_bool(0, "cancel_at_period_end")},
              {"pending_plan_id", before.nullable(0, "pending_plan_id")},
              {"current_period_end", before.nullable_time(0, "current_period_end")}};
  object to{{"plan_id", after.text(0, "plan_id")},
            {"interval", after.text(0, "billing_interval")},
            {"status", after.text(0, "status")},
            {"cancel_at_period_end", after.get_bool(0, "cancel_at_period_end")},
            {"pending_plan_id", after.nullable(0, "pending_plan_id")},
            {"current_period_end", after.nullable_time(0, "current_period_end")}};
  if (from == to && before.text(0, "stripe_subscription_id") == a.stripe_subscription_id) {
    co_return false;  // a replay or a stale event: nothing to tell anyone
  }
  std::string type = event_type_for(before, a);
  std::string metadata = boost::json::serialize(object{{"from", from}, {"to", to}});
  co_await security::record(tx, cause.actor, cause.origin,
                            security::event(type, "subscription", after.text(0, "id"), metadata));
  std::string data = boost::json::serialize(subscription_json(after));
  co_await jobs::emit(tx, cause.actor, cause.origin.request_id, type, std::move(data));
  co_return true;
}

constexpr const char* kPlanItemsKind = "billing.plan_items";

// A downgrade at the period's end applies when Stripe renews the subscription into the next
// period (applied_from then drops the pending plan). Its flat price billed the period ahead
// already; the metered items become the new plan's later, by the job set_plan_items, once Stripe
// has billed the period's usage for good. Once per renewal (the job's key).
// Until then the subscription is marked metered_items_pending: metering holds the new period's
// usage back, as the old metered item (which the job deletes, billing none of its usage in Stripe's
// classic mode) would take it; the job clears the mark and has that usage reported.
awaitable<void> finish_pending_plan(db::Transaction& tx, const db::Result& row, Applied& a) {
  std::optional<std::string> pending = row.optional(0, "pending_plan_id");
  if (!pending || a.pending_plan || a.plan_id != *pending || a.status == "canceled" ||
      a.status == "incomplete_expired" ||
      row.text(0, "stripe_subscription_id") != a.stripe_subscription_id) {
    co_return;
  }
  std::string period_end = std::to_string(a.period_end.value_or(0));
  object payload{{"subscription", a.stripe_subscription_id},
                 {"plan_id", *pending},
                 {"interval", row.optional(0, "pending_interval").value_or(a.interval)},
                 {"period_end", period_end}};
  jobs::NewJob job = jobs::job(kPlanItemsKind, boost::json::serialize(payload));
  job.unique_key = "plan-items:" + a.stripe_subscription_id + ":" + period_end;
  co_await jobs::enqueue(tx, std::move(job));
  a.metered_items_pending = true;
}

// `row`: the subscription as kLock read it, in `tx`.
awaitable<bool> apply_to_locked(db::Transaction& tx, const db::Result& row, const object& sub,
                                const Cause& cause) {
  if (row.empty()) co_return false;
  std::optional<Applied> a = co_await applied_from(tx, row, sub);
  if (!a) co_return false;
  co_await finish_pending_plan(tx, row, *a);
  co_return co_await write(tx, row, *a, cause);
}

awaitable<bool> apply_stripe_subscription(db::Transaction& tx, const object& sub,
                                          const Cause& cause) {
  db::Result row = co_await tx.exec(kLock);
  co_return co_await apply_to_locked(tx, row, sub, cause);
}

// ---------------------------------------------------------------------- Stripe customer

// The tenant's Stripe customer, created once: the key is the tenant's, so concurrent first
// uses (and retries) get the same customer from Stripe.
awaitable<std::string> ensure_customer(const RequestContext& ctx) {
  db::Result row = co_await db::pool().tenant_query(ctx.tenant_id, kCurrent);
  if (row.empty()) throw ApiError(ErrorCode::kNotFound, "The organization has no subscription.");
  if (auto id = row.optional(0, "stripe_customer_id")) co_return *id;
  db::Result t = co_await db::pool().tenant_query(ctx.tenant_id, kTenantName);
  object params{{"name", t.text(0, "name")}, {"metadata", object{{"tenant_id", ctx.tenant_id}}}};
  StripeReply reply =
      co_await stripe().post("/v1/customers", std::move(params), "hsea-customer-" + ctx.tenant_id);
  if (!reply.ok()) provider_refused(reply, "create the customer");
  std::string customer = str_of(reply.body, "id");
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result set = co_await tx.exec(kSetCustomer, db::params(customer));
  if (set.empty()) {
    db::Result now = co_await tx.exec(kCurrent);
    co_return now.text(0, "stripe_customer_id");
  }
  std::string metadata = boost::json::serialize(object{{"stripe_customer_id", customer}});
  co_await security::record(
      tx, ctx,
      security::event("billing.customer_created", "subscription", row.text(0, "id"), metadata));
  co_await tx.commit();
  co_return customer;
}

// ------------------------------------------------------------------------------ checks

struct PlanForSale {
  std::string id, name, currency, price_id;
  std::int64_t amount = 0, monthly = 0, yearly = 0, sort_order = 0;
  std::optional<std::int64_t> seats;
  // The interval's metered prices of the plan's metered meters (plans.stripe_metered_price_ids).
  std::vector<std::string> metered_price_ids;
  bool metered_unsynced = false;  // a metered meter without its Stripe price yet
};

std::string checked_interval(const object& body) {
  std::string interval = http::optional_string(body, "interval").value_or("month");
  if (interval != "month" && interval != "year") {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{"/interval", "must be month or year"}});
  }
  return interval;
}

// `current`: the tenant's own plan, which may have been archived since.
awaitable<PlanForSale> plan_for_sale(std::string plan_id, std::string interval, std::string field,
                                     bool current) {
  db::Result r = co_await db::pool().query(kPlan, db::params(plan_id));
  if (r.empty() || (!current && r.text(0, "status") != "active")) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{field, "must be the id of an active plan (GET /api/plans)"}});
  }
  PlanForSale p;
  p.id = plan_id;
  p.name = r.text(0, "name");
  p.currency = r.text(0, "currency");
  p.monthly = r.get_int(0, "monthly_amount");
  p.yearly = r.get_int(0, "yearly_amount");
  p.sort_order = r.get_int(0, "sort_order");
  p.amount = interval == "year" ? p.yearly : p.monthly;
  p.price_id = r.text(0, interval == "year" ? "stripe_yearly_price_id" : "stripe_monthly_price_id");
  value limits = json_text(r.get(0, "limits"));
  if (limits.is_object()) p.seats = int_of(limits.as_object(), "seats");
  value metered = json_text(r.get(0, "metered"));
  value prices = json_text(r.get(0, "metered_prices"));
  if (metered.is_object()) {
    for (const auto& entry : metered.as_object()) {
      std::string id;
      if (prices.is_object()) {
        if (const value* m = prices.as_object().if_contains(entry.key()); m && m->is_object()) {
          id = str_of(m->as_object(), interval);
        }
      }
      if (id.empty())
        p.metered_unsynced = true;
      else
        p.metered_price_ids.push_back(std::move(id));
    }
  }
  co_return p;
}

void require_price(const PlanForSale& p) {
  if (p.price_id.empty() || p.metered_unsynced) {
    throw ApiError(ErrorCode::kServiceUnavailable, "The plan is not on sale yet; try again later.")
        .retry_after(60)
        .internal("plan " + p.id + " has no Stripe price: run `hsea billing sync-plans`");
  }
}

// A redirect URL must lead back to the tenant's own site (an allowed origin) or to this
// server, so a checkout link cannot send the customer elsewhere.
awaitable<void> check_redirect(const RequestContext& ctx, std::string url, std::string field) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  std::string origin, reason;
  bool ok = parsed.has_value() && (parsed->scheme() == "http" || parsed->scheme() == "https") &&
            url.size() <= 2048 &&
            security::normalize_origin(
                std::string(parsed->scheme()) + "://" + std::string(parsed->encoded_authority()),
                origin, reason);
  if (!ok) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{field, "must be an absolute http(s) URL"}});
  }
  std::string own;
  auto pub = boost::urls::parse_absolute_uri(state().public_url);
  if (pub.has_value()) {
    security::normalize_origin(
        std::string(pub->scheme()) + "://" + std::string(pub->encoded_authority()), own, reason);
  }
  if (origin == own) co_return;
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kAllowedOrigins);
  if (!r.empty()) {
    value list = json_text(r.get(0, "origins"));
    if (list.is_array()) {
      for (const value& o : list.as_array()) {
        if (o.is_string() && o.as_string() == origin) co_return;
      }
    }
  }
  throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                 {{field,
                   "must be on this server or one of the organization's allowed origins "
                   "(GET /api/tenant/settings)"}});
}

void require_paid_subscription(const db::Result& row) {
  std::string status = row.text(0, "status");
  if (row.is_null(0, row.column("stripe_subscription_id")) || status == "canceled" ||
      status == "incomplete_expired") {
    throw ApiError(ErrorCode::kConflict,
                   "The organization has no paid subscription: start one with POST "
                   "/api/subscriptions/checkout.");
  }
}

// ------------------------------------------------------------------------------ handlers

awaitable<Response> current(RequestContext& ctx) {
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kCurrent);
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "The organization has no subscription.");
  co_return http::json_response(200, subscription_json(r));
}

awaitable<Response> checkout(RequestContext& ctx) {
  require_stripe();
  const object& body = http::json_body(ctx);
  std::string interval = checked_interval(body);
  PlanForSale plan =
      co_await plan_for_sale(http::required_string(body, "plan_id"), interval, "/plan_id", false);
  if (plan.amount == 0) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{"/plan_id", "the free plan needs no checkout"}});
  }
  require_price(plan);
  std::string success = http::required_string(body, "success_url");
  std::string cancel = http::required_string(body, "cancel_url");
  co_await check_redirect(ctx, success, "/success_url");
  co_await check_redirect(ctx, cancel, "/cancel_url");
  db::Result row = co_await db::pool().tenant_query(ctx.tenant_id, kCurrent);
  std::string status = row.text(0, "status");
  if (!row.is_null(0, row.column("stripe_subscription_id")) && status != "canceled" &&
      status != "incomplete_expired") {
    throw ApiError(ErrorCode::kConflict,
                   "The organization already has a paid subscription: change it with "
                   "/api/subscriptions/upgrade or /downgrade.");
  }
  if (plan.seats) {
    db::Result seats = co_await db::pool().tenant_query(ctx.tenant_id, kSeats);
    if (seats.get_int(0, "n") > *plan.seats) {
      throw ApiError(ErrorCode::kDowngradeBlocked,
                     "The organization has " + std::to_string(seats.get_int(0, "n")) +
                         " members; the " + plan.name + " plan allows " +
                         std::to_string(*plan.seats) + ". Remove members first.");
    }
  }
  std::string customer = co_await ensure_customer(ctx);
  object metadata{{"tenant_id", ctx.tenant_id}, {"hsea_plan", plan.id}};
  // The flat price, and the metered prices (no quantity: Stripe bills them by the meter's usage).
  array line_items{object{{"price", plan.price_id}, {"quantity", 1}}};
  for (const std::string& metered : plan.metered_price_ids) {
    line_items.push_back(object{{"price", metered}});
  }
  object params{{"mode", "subscription"},
                {"customer", customer},
                {"client_reference_id", ctx.tenant_id},
                {"line_items", std::move(line_items)},
                {"success_url", success},
                {"cancel_url", cancel},
                {"metadata", metadata},
                {"subscription_data", object{{"metadata", metadata}}}};
  StripeReply reply = co_await stripe().post("/v1/checkout/sessions", std::move(params),
                                             idempotency_key(ctx, "checkout"));
  if (!reply.ok()) provider_refused(reply, "start the checkout");
  std::string url = str_of(reply.body, "url"), session = str_of(reply.body, "id");
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  std::string audit = boost::json::serialize(
      object{{"plan_id", plan.id}, {"interval", interval}, {"checkout_session", session}});
  co_await security::record(
      tx, ctx,
      security::event("subscription.checkout_started", "subscription", row.text(0, "id"), audit));
  co_await tx.commit();
  co_return http::json_response(201, object{{"checkout_url", url}, {"session_id", session}});
}

// Which items a change moves to the target plan.
enum class Items {
  kAll,
  // Only the flat price: the metered items stay until the new plan applies at the period's end.
  // Stripe bills the period ahead at the flat price the subscription has at renewal, but a
  // metered item for its usage in the period ended: removed earlier, the period's usage after
  // the change would go unbilled; the target's metered price added earlier would bill the same
  // meter twice.
  kFlatOnly,
};

// The items[] that move a subscription to `target`: the flat item gets the target's price; a
// metered item whose price the target does not bill is deleted, the target's metered prices not on
// the subscription are added. (Stripe's documentation, "Manage your usage-based billing setup":
// a deleted item with a billing meter price bills none of its usage in the classic billing mode,
// and bills it at once in the flexible mode unless proration_behavior is none. So a change that
// deletes one ends the period as well: ends_metered.)
array items_change(const object& sub, const PlanForSale& target, Items which) {
  const object* flat = flat_item(sub);
  if (flat == nullptr) {
    throw ApiError(ErrorCode::kPaymentProviderError,
                   "The payment provider's subscription has no item.")
        .internal("stripe subscription " + str_of(sub, "id") + " without items");
  }
  array items{object{{"id", str_of(*flat, "id")}, {"price", target.price_id}}};
  if (which == Items::kFlatOnly) return items;
  std::vector<std::string> kept;
  for (const object* item : items_of(sub)) {
    if (item == flat || !item_metered(*item)) continue;
    std::string price = item_price(*item);
    if (std::find(target.metered_price_ids.begin(), target.metered_price_ids.end(), price) !=
        target.metered_price_ids.end()) {
      kept.push_back(price);
    } else {
      items.push_back(object{{"id", str_of(*item, "id")}, {"deleted", true}});
    }
  }
  for (const std::string& price : target.metered_price_ids) {
    if (std::find(kept.begin(), kept.end(), price) == kept.end()) {
      items.push_back(object{{"price", price}});
    }
  }
  return items;
}

// Whether `items` (of items_change) delete a metered item. Our subscriptions are in Stripe's
// classic billing mode, where that item's usage so far would never be billed, so such a change
// also sends billing_cycle_anchor=now: Stripe ends the period at once and invoices it, with the
// usage of the metered items the period had ("Reset the anchor to the current time using
// billing_cycle_anchor=now ... the customer being invoiced immediately"), and the new period
// starts with the new plan's items. A change that deletes none keeps the cycle.
bool ends_metered(const array& items) {
  return std::any_of(items.begin(), items.end(), [](const value& item) {
    const value* deleted = item.as_object().if_contains("deleted");
    return deleted != nullptr && deleted->is_bool() && deleted->as_bool();
  });
}

// Before a change that ends the metered items' period now: the tenant's usage not yet reported
// goes to Stripe, so the invoice Stripe makes at once bills it. Never blocks the change: a failed
// report stays pending and the periodic report sends it later (with the same identifier, counted
// once), dated then.
awaitable<void> report_usage_now(std::string tenant_id) {
  if (g_usage.report_now == nullptr) co_return;
  try {
    co_await g_usage.report_now(tenant_id);
  } catch (const std::exception& e) {
    log::warn("billing: usage not reported before the period ends now",
              {{"tenant_id", tenant_id}, {"error", std::string(e.what())}});
  }
}

// Ends the paid subscription now (cancel now, down to Free now). With a metered item, the usage
// not yet reported goes first (unless the caller reported it already), and invoice_now=true makes
// Stripe's final invoice bill the period's metered usage so far ("Cancel a subscription":
// invoice_now "generate[s] a final invoice that invoices for any un-invoiced metered usage";
// without it that usage is never billed). prorate=false: cancel now gives no credit for the paid
// time left, as the route documents (openapi.yaml), the same with or without metered items.
awaitable<StripeReply> end_now(std::string tenant_id, std::string sub_id, bool report_first) {
  StripeReply sub = co_await stripe().get("/v1/subscriptions/" + sub_id);
  if (!sub.ok()) provider_refused(sub, "read the subscription");
  std::vector<const object*> items = items_of(sub.body);
  object query;
  if (std::any_of(items.begin(), items.end(), [](const object* i) { return item_metered(*i); })) {
    if (report_first) co_await report_usage_now(tenant_id);
    query["invoice_now"] = true;
    query["prorate"] = false;
  }
  co_return co_await stripe().del("/v1/subscriptions/" + sub_id, std::move(query));
}

// The swap itself: the time (Stripe's) the new metered items were put on the subscription, or
// nullopt when nothing was changed.
awaitable<std::optional<std::int64_t>> swap_plan_items(jobs::JobContext& job, db::Transaction& tx) {
  std::string sub_id = str_of(job.payload(), "subscription");
  std::string plan_id = str_of(job.payload(), "plan_id");
  db::Result row = co_await tx.exec(kCurrent);
  if (row.empty() || row.text(0, "stripe_subscription_id") != sub_id ||
      row.text(0, "plan_id") != plan_id || !row.is_null(0, row.column("pending_plan_id"))) {
    co_return std::nullopt;
  }
  StripeReply sub = co_await stripe().get("/v1/subscriptions/" + sub_id);
  if (sub.status == 404) co_return std::nullopt;
  if (!sub.ok()) provider_refused(sub, "read the subscription");
  std::string status = str_of(sub.body, "status");
  if (status == "canceled" || status == "incomplete_expired") co_return std::nullopt;
  if (std::string latest = str_of(sub.body, "latest_invoice"); !latest.empty()) {
    StripeReply invoice = co_await stripe().get("/v1/invoices/" + latest);
    if (!invoice.ok()) provider_refused(invoice, "read the invoice");
    if (str_of(invoice.body, "status") == "draft") {
      throw std::runtime_error("the renewal invoice " + latest + " is a draft yet");  // retried
    }
  }
  PlanForSale target =
      co_await plan_for_sale(plan_id, str_of(job.payload(), "interval"), "plan_id", true);
  array items = items_change(sub.body, target, Items::kAll);
  if (items.size() == 1 && price_of(sub.body) == target.price_id) co_return std::nullopt;
  object params{{"items", std::move(items)}, {"proration_behavior", "none"}};
  std::string key = "hsea-" + sub_id + "-plan-items-" + str_of(job.payload(), "period_end");
  StripeReply reply = co_await stripe().post("/v1/subscriptions/" + sub_id, std::move(params), key);
  if (reply.ok()) {
    // The newest metered item's creation: usage dated before it is not billed by it.
    std::optional<std::int64_t> at;
    for (const object* item : items_of(reply.body)) {
      std::optional<std::int64_t> created = int_of(*item, "created");
      if (item_metered(*item) && created && (!at || *created > *at)) at = created;
    }
    co_return at;
  }
  // Stripe busy or down: the job's retries.
  if (reply.status == 0 || reply.status == 429 || reply.status >= 500) {
    provider_refused(reply, "change the subscription's items");
  }
  // Refused for good (a price archived on Stripe, say): the plan applied all the same; the
  // subscription's items need an operator.
  log::error("billing: the new plan's metered prices could not be set on Stripe",
             {{"tenant_id", job.tenant_id()},
              {"subscription", sub_id},
              {"plan_id", plan_id},
              {"error", reply.error_message()}});
  co_return std::nullopt;
}

// The job of finish_pending_plan: the subscription's metered items become the applied plan's.
// Removed now, the old ones lose none of the period's usage: Stripe billed it on the renewal
// invoice, which the job waits to see final (while a draft, Stripe may still add late usage to
// it). So no clear_usage (a price with a billing meter ignores it anyway), and no proration: the
// new period's usage is the new plan's, whose metered prices start here, so no meter is billed
// by two prices. Nothing is sent when a later change decided the items, or they are right already.
// Whatever the outcome (but a retry), the usage held back meanwhile is released and reported,
// dated from the swap on (in the same transaction: exactly when the job is done).
awaitable<void> set_plan_items(jobs::JobContext& job) {
  db::Transaction* tx = co_await job.transaction();
  std::optional<std::int64_t> swapped = co_await swap_plan_items(job, *tx);
  co_await tx->exec(kMeteredItemsSet, db::params(swapped));
  if (g_usage.report_after != nullptr) {
    std::int64_t since = swapped.value_or(static_cast<std::int64_t>(std::time(nullptr)));
    co_await g_usage.report_after(*tx, since);
  }
}

enum class Direction { kUpgrade, kDowngrade };

awaitable<Response> change_plan(RequestContext& ctx, Direction direction) {
  require_stripe();
  const object& body = http::json_body(ctx);
  db::Result row = co_await db::pool().tenant_query(ctx.tenant_id, kCurrent);
  std::string interval =
      body.contains("interval") ? checked_interval(body) : row.text(0, "billing_interval");
  std::string when = http::optional_string(body, "when")
                         .value_or(direction == Direction::kUpgrade ? "now" : "period_end");
  if (when != "now" && when != "period_end") {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{"/when", "must be now or period_end"}});
  }
  PlanForSale target =
      co_await plan_for_sale(http::required_string(body, "plan_id"), interval, "/plan_id", false);
  PlanForSale now = co_await plan_for_sale(row.text(0, "plan_id"), row.text(0, "billing_interval"),
                                           "/plan_id", true);
  // Compared by the plan's place in the price list, then by the yearly price.
  auto rank = [](const PlanForSale& p) { return std::pair(p.sort_order, p.yearly); };
  bool same = target.id == now.id && interval == row.text(0, "billing_interval");
  if (same) throw ApiError(ErrorCode::kConflict, "The organization is on this plan already.");
  bool up = rank(target) > rank(now) ||
            (target.id == now.id && interval == "year");  // monthly to yearly: more committed
  if (direction == Direction::kUpgrade && !up) {
    throw ApiError(
        ErrorCode::kValidationFailed, "Check the fields.",
        {{"/plan_id", "is not above the current plan: use /api/subscriptions/downgrade"}});
  }
  if (direction == Direction::kDowngrade && up) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{"/plan_id", "is not below the current plan: use /api/subscriptions/upgrade"}});
  }
  if (target.seats) {
    db::Result seats = co_await db::pool().tenant_query(ctx.tenant_id, kSeats);
    std::int64_t used = seats.get_int(0, "n");
    if (used > *target.seats) {
      throw ApiError(ErrorCode::kDowngradeBlocked,
                     "The organization has " + std::to_string(used) + " members; the " +
                         target.name + " plan allows " + std::to_string(*target.seats) +
                         ". Remove " + std::to_string(used - *target.seats) + " member(s) first.");
    }
  }
  require_paid_subscription(row);
  std::string sub_id = row.text(0, "stripe_subscription_id");
  Cause cause = cause_of(ctx);
  // A change now (or to a new interval) from a plan with metered prices ends their period now:
  // down to Free cancels now (invoice_now), any other deletes the metered item (each plan and
  // interval has its own metered price) with billing_cycle_anchor=now. Its usage not yet reported
  // goes first, before the lock below: the report takes connections of its own.
  if (!now.metered_price_ids.empty() &&
      (when == "now" || interval != row.text(0, "billing_interval"))) {
    co_await report_usage_now(ctx.tenant_id);
  }
  // Locked before Stripe is told: the webhook of this very change is applied under the same lock,
  // so it finds the pending plan written here instead of moving the tenant to the new plan now.
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result locked = co_await tx.exec(kLock);
  StripeReply reply;
  if (target.amount == 0) {
    // Down to free: the paid subscription ends (now, or when the paid period ends).
    if (when == "now") {
      reply = co_await end_now(ctx.tenant_id, sub_id, false);  // reported above
    } else {
      object params{{"cancel_at_period_end", true}};
      reply = co_await stripe().post("/v1/subscriptions/" + sub_id, std::move(params),
                                     idempotency_key(ctx, "downgrade"));
    }
  } else {
    require_price(target);
    StripeReply sub = co_await stripe().get("/v1/subscriptions/" + sub_id);
    if (!sub.ok()) provider_refused(sub, "read the subscription");
    // At the period's end with the same interval, the metered items wait for the new plan
    // (set_plan_items); a new interval restarts Stripe's cycle now anyway.
    Items which = when == "period_end" && interval == row.text(0, "billing_interval")
                      ? Items::kFlatOnly
                      : Items::kAll;
    array items = items_change(sub.body, target, which);
    bool ends_period = ends_metered(items);
    // Now: prorated and invoiced at once. At the period's end: no proration, the new price
    // bills from the next period (the row keeps the paid plan until then).
    object params{{"items", std::move(items)},
                  {"proration_behavior", when == "now" ? "always_invoice" : "none"},
                  {"cancel_at_period_end", false},
                  {"metadata", object{{"tenant_id", ctx.tenant_id}, {"hsea_plan", target.id}}}};
    // A metered item deleted: the period so far is invoiced now, its usage included.
    if (ends_period) params["billing_cycle_anchor"] = "now";
    reply = co_await stripe().post("/v1/subscriptions/" + sub_id, std::move(params),
                                   idempotency_key(ctx, "change"));
  }
  if (!reply.ok()) provider_refused(reply, "change the subscription");
  std::optional<Applied> a = co_await applied_from(tx, locked, reply.body);
  if (a && when == "period_end" && target.amount != 0) {
    a->pending_plan = target.id;
    a->pending_interval = interval;
    a->plan_id = locked.text(0, "plan_id");
    a->interval = locked.text(0, "billing_interval");
  }
  if (a) co_await write(tx, locked, *a, cause);
  db::Result out = co_await tx.exec(kCurrent);
  co_await Entitlements::commit(tx);
  co_return http::json_response(200, subscription_json(out));
}

awaitable<Response> upgrade(RequestContext& ctx) { return change_plan(ctx, Direction::kUpgrade); }
awaitable<Response> downgrade(RequestContext& ctx) {
  return change_plan(ctx, Direction::kDowngrade);
}

awaitable<Response> cancel(RequestContext& ctx) {
  require_stripe();
  const object& body = http::json_body(ctx);
  bool at_period_end = true;
  if (const value* v = body.if_contains("at_period_end")) at_period_end = v->as_bool();
  db::Result row = co_await db::pool().tenant_query(ctx.tenant_id, kCurrent);
  require_paid_subscription(row);
  std::string sub_id = row.text(0, "stripe_subscription_id");
  StripeReply reply;
  if (at_period_end) {
    object params{{"cancel_at_period_end", true}};
    reply = co_await stripe().post("/v1/subscriptions/" + sub_id, std::move(params),
                                   idempotency_key(ctx, "cancel"));
  } else {
    reply = co_await end_now(ctx.tenant_id, sub_id, true);
  }
  if (!reply.ok()) provider_refused(reply, "cancel the subscription");
  Cause cause = cause_of(ctx);
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  co_await apply_stripe_subscription(tx, reply.body, cause);
  db::Result out = co_await tx.exec(kCurrent);
  co_await Entitlements::commit(tx);
  co_return http::json_response(200, subscription_json(out));
}

awaitable<Response> reactivate(RequestContext& ctx) {
  require_stripe();
  db::Result row = co_await db::pool().tenant_query(ctx.tenant_id, kCurrent);
  require_paid_subscription(row);
  if (!row.get_bool(0, "cancel_at_period_end")) {
    throw ApiError(ErrorCode::kConflict, "The subscription is not set to end.");
  }
  std::string sub_id = row.text(0, "stripe_subscription_id");
  object params{{"cancel_at_period_end", false}};
  StripeReply reply = co_await stripe().post("/v1/subscriptions/" + sub_id, std::move(params),
                                             idempotency_key(ctx, "reactivate"));
  if (!reply.ok()) provider_refused(reply, "reactivate the subscription");
  Cause cause = cause_of(ctx);
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  co_await apply_stripe_subscription(tx, reply.body, cause);
  db::Result out = co_await tx.exec(kCurrent);
  co_await Entitlements::commit(tx);
  co_return http::json_response(200, subscription_json(out));
}

// What the change would cost now: Stripe's upcoming invoice with the new price prorated from
// now (for a tenant without a paid subscription, the plan's price).
awaitable<Response> preview(RequestContext& ctx) {
  require_stripe();
  std::string plan_id, interval;
  ctx.request.query_param("plan_id", plan_id);
  db::Result row = co_await db::pool().tenant_query(ctx.tenant_id, kCurrent);
  if (!ctx.request.query_param("interval", interval)) interval = row.text(0, "billing_interval");
  if (interval != "month" && interval != "year") {
    throw ApiError(ErrorCode::kValidationFailed, "Check the parameters.",
                   {{"interval", "must be month or year"}});
  }
  if (plan_id.empty()) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the parameters.",
                   {{"plan_id", "is required"}});
  }
  PlanForSale target = co_await plan_for_sale(plan_id, interval, "plan_id", false);
  object out{{"plan_id", target.id}, {"interval", interval}, {"currency", target.currency}};
  std::string status = row.text(0, "status");
  if (row.is_null(0, row.column("stripe_subscription_id")) || status == "canceled") {
    out["amount_due"] = target.amount;
    out["proration_amount"] = 0;
    out["lines"] = array{object{{"description", target.name + " (" + interval + ")"},
                                {"amount", target.amount},
                                {"proration", false}}};
    co_return http::json_response(200, out);
  }
  require_price(target);
  std::string sub_id = row.text(0, "stripe_subscription_id");
  StripeReply sub = co_await stripe().get("/v1/subscriptions/" + sub_id);
  if (!sub.ok()) provider_refused(sub, "read the subscription");
  array items = items_change(sub.body, target, Items::kAll);
  bool ends_period = ends_metered(items);
  // As the change would: the usage so far reaches Stripe first, so the preview shows it.
  if (ends_period) co_await report_usage_now(ctx.tenant_id);
  object query{{"customer", row.text(0, "stripe_customer_id")},
               {"subscription", sub_id},
               {"subscription_items", std::move(items)},
               {"subscription_proration_behavior", "always_invoice"},
               {"subscription_proration_date", static_cast<std::int64_t>(std::time(nullptr))}};
  // As the change itself: the period ended now, with the usage so far (change_plan).
  if (ends_period) query["subscription_billing_cycle_anchor"] = "now";
  StripeReply upcoming = co_await stripe().get("/v1/invoices/upcoming", std::move(query));
  if (!upcoming.ok()) provider_refused(upcoming, "preview the invoice");
  std::int64_t proration = 0;
  array lines;
  if (const value* l = upcoming.body.if_contains("lines"); l != nullptr && l->is_object()) {
    if (const value* data = l->as_object().if_contains("data"); data && data->is_array()) {
      for (const value& line : data->as_array()) {
        if (!line.is_object()) continue;
        const object& o = line.as_object();
        bool prorated = bool_of(o, "proration");
        std::int64_t amount = int_of(o, "amount").value_or(0);
        if (prorated) proration += amount;
        lines.push_back(object{{"description", str_of(o, "description")},
                               {"amount", amount},
                               {"proration", prorated}});
      }
    }
  }
  out["amount_due"] = int_of(upcoming.body, "amount_due").value_or(0);
  out["proration_amount"] = proration;
  out["lines"] = std::move(lines);
  if (const value* c = upcoming.body.if_contains("currency"); c && c->is_string()) {
    out["currency"] = c->as_string();
  }
  co_return http::json_response(200, out);
}

// ------------------------------------------------------------------ Stripe event handlers

Cause cause_of(const StripeEvent& e) {
  return Cause{security::Actor{security::Actor::Kind::kStripeWebhook, e.id},
               security::Origin{"", "", e.id}};
}

// Stripe's current state of the subscription, never the event's copy: events come late, twice
// and out of order.
awaitable<void> subscription_changed(StripeEvent& e) {
  std::string id =
      e.type.starts_with("checkout.") ? str_of(e.object, "subscription") : str_of(e.object, "id");
  if (id.empty()) co_return;  // a checkout in another mode
  co_await sync_subscription(e, id);
}

awaitable<void> payment_method_attached(StripeEvent& e) {
  std::string data = boost::json::serialize(
      object{{"payment_method", str_of(e.object, "id")}, {"type", str_of(e.object, "type")}});
  Cause cause = cause_of(e);
  db::Result row = co_await e.tx->exec(kCurrent);
  if (row.empty()) co_return;
  co_await security::record(
      *e.tx, cause.actor, cause.origin,
      security::event("billing.payment_method_attached", "subscription", row.text(0, "id"), data));
  co_await jobs::emit(*e.tx, cause.actor, cause.origin.request_id,
                      "billing.payment_method_attached", std::move(data));
}

// ------------------------------------------------------------------- trials ending unpaid

// Ends one tenant's expired trial in its own transaction: the free plan, active; the history row
// (trigger), the audit entry, the event and the mail to the billing contacts commit together.
// False when there was nothing to end (already ended, or paid meanwhile).
awaitable<bool> end_trial(std::string tenant_id, std::string job_id) {
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(tenant_id));
  db::Result before = co_await tx.exec(kLock);
  if (before.empty()) co_return false;
  db::Result ended = co_await tx.exec(kEndTrial);
  if (ended.empty()) co_return false;
  db::Result after = co_await tx.exec(kCurrent);
  security::Actor actor{security::Actor::Kind::kJob, job_id};
  security::Origin origin{"", "", job_id};
  object from{{"plan_id", before.text(0, "plan_id")},
              {"status", before.text(0, "status")},
              {"trial_end", before.nullable_time(0, "trial_end")}};
  object to{{"plan_id", after.text(0, "plan_id")}, {"status", after.text(0, "status")}};
  std::string metadata = boost::json::serialize(object{{"from", from}, {"to", to}});
  co_await security::record(
      tx, actor, origin,
      security::event("subscription.trial_ended", "subscription", after.text(0, "id"), metadata));
  std::string data = boost::json::serialize(subscription_json(after));
  co_await jobs::emit(tx, actor, job_id, "subscription.trial_ended", std::move(data));
  object mail{{"plan", before.text(0, "plan_name")},
              {"trial_end", day_of(before, 0, "trial_end")},
              {"link", state().public_url + "/account/billing"},
              {"button", "Choose a plan"}};
  co_await mail_billing_contacts(tx, "trial_ended", std::move(mail));
  co_await Entitlements::commit(tx);
  co_return true;
}

// The periodic job (every kTrialSweep, once across the cluster): every trial HSEA started that
// ended without a paid subscription moves to the free plan. A tenant that fails is logged and
// retried next run; the others go on.
awaitable<void> expire_trials(jobs::JobContext& job) {
  constexpr int kBatch = 500;
  int failed = 0;
  for (;;) {
    db::Result r = co_await db::pool().query(kExpiredTrials, db::params(kBatch));
    int ended = 0;
    for (int i = 0; i < r.rows(); ++i) {
      std::string tenant = r.text(i, "tenant_id");
      try {
        if (co_await end_trial(tenant, job.id())) ++ended;
      } catch (const std::exception& e) {
        ++failed;
        log::warn("billing: the trial could not be ended",
                  {{"tenant_id", tenant}, {"error", std::string(e.what())}});
      }
    }
    if (ended > 0) log::info("billing: expired trials ended", {{"tenants", ended}});
    // A full batch may have more behind it; a batch that ended nothing would find the same rows.
    if (r.rows() < kBatch || ended == 0) break;
  }
  if (failed > 0) throw std::runtime_error(std::to_string(failed) + " trials could not be ended");
}

}  // namespace

void on_usage_reports(UsageReports reports) { g_usage = reports; }

awaitable<bool> sync_subscription(StripeEvent& e, std::string id) {
  // Lock, then read Stripe: a change a request makes meanwhile (cancel now) applies after this
  // one under the same lock, so an older read of Stripe never overwrites a newer one.
  db::Result row = co_await e.tx->exec(kLock);
  StripeReply sub = co_await stripe().get("/v1/subscriptions/" + id);
  if (sub.status == 404) co_return false;
  if (!sub.ok()) provider_refused(sub, "show the subscription");
  Cause cause = cause_of(e);
  co_return co_await apply_to_locked(*e.tx, row, sub.body, cause);
}

awaitable<void> start_subscription(db::Transaction& tx, const RequestContext& ctx,
                                   std::string tenant_id) {
  const Settings& s = state().settings;
  bool trial = !s.trial_plan.empty() && s.trial_days > 0;
  std::string id = core::uuid_v7();
  std::string plan = trial ? s.trial_plan : "free";
  co_await tx.exec(kInsertSubscription,
                   db::params(id, plan, trial ? "trialing" : "active", trial ? s.trial_days : 0));
  db::Result r = co_await tx.exec(kCurrent);
  security::Actor actor = security::actor_of(ctx);
  if (actor.kind == security::Actor::Kind::kAnonymous) actor = {security::Actor::Kind::kSystem, ""};
  security::Origin origin = security::origin_of(ctx);
  std::string metadata = boost::json::serialize(object{{"plan_id", plan}});
  co_await security::record(tx, actor, origin,
                            security::event("subscription.created", "subscription", id, metadata));
  std::string data = boost::json::serialize(subscription_json(r));
  co_await jobs::emit(tx, actor, ctx.request_id, "subscription.created", std::move(data));
}

void register_subscriptions(runtime::Registrar& reg) {
  using http::Method;
  using http::Policies;
  // Unmetered: a tenant past its quota can still see its plan, pay and upgrade.
  using metering::Unmetered;
  using security::Body;
  identity::on_tenant_created(start_subscription);
  jobs::event_type(reg, {"subscription.trial_ended",
                         "A trial ended without a paid subscription: the free plan applies."});
  jobs::define(reg, {.kind = "billing.trials_expire", .run = expire_trials, .max_attempts = 3});
  jobs::schedule(reg, {.kind = "billing.trials_expire", .interval = kTrialSweep});
  // Retried for hours: Stripe keeps a renewal invoice a draft for about one.
  jobs::define(reg, {.kind = kPlanItemsKind, .run = set_plan_items, .max_attempts = 15});
  const identity::Access read{.authenticated = true,
                              .tenant = true,
                              .roles = {"owner", "admin", "member", "billing"},
                              .scopes = {"billing:read"}};
  // Billing changes and their prices: owners and the billing role (docs/permissions.md). Not
  // API keys: an admin could otherwise make a key that does what admins may not.
  const identity::Access change{
      .authenticated = true, .tenant = true, .roles = {"owner", "billing"}};
  const identity::Access look = change;
  reg.route({.method = Method::kGet,
             .path = "/api/subscriptions/current",
             .handler = current,
             .policies = Policies(read, Unmetered{})});
  reg.route({.method = Method::kGet,
             .path = "/api/subscriptions/preview",
             .handler = preview,
             .policies = Policies(look, Unmetered{})});
  for (auto [path, handler, schema] :
       {std::tuple{"/api/subscriptions/checkout", &checkout, "CheckoutRequest"},
        std::tuple{"/api/subscriptions/upgrade", &upgrade, "PlanChangeRequest"},
        std::tuple{"/api/subscriptions/downgrade", &downgrade, "PlanChangeRequest"},
        std::tuple{"/api/subscriptions/cancel", &cancel, "CancelSubscriptionRequest"},
        std::tuple{"/api/subscriptions/reactivate", &reactivate, ""}}) {
    http::Route route{.method = Method::kPost, .path = path, .handler = *handler};
    // OpenWhenSuspended: changing the subscription is a suspended tenant's way out.
    route.policies = *schema != '\0'
                         ? Policies(change, Body{schema}, Unmetered{}, OpenWhenSuspended{})
                         : Policies(change, Unmetered{}, OpenWhenSuspended{});
    reg.route(std::move(route));
  }
  on_stripe_event(reg, "checkout.session.completed", subscription_changed);
  on_stripe_event(reg, "customer.subscription.created", subscription_changed);
  on_stripe_event(reg, "customer.subscription.updated", subscription_changed);
  on_stripe_event(reg, "customer.subscription.deleted", subscription_changed);
  on_stripe_event(reg, "payment_method.attached", payment_method_attached);
}

}  // namespace hsea::billing
