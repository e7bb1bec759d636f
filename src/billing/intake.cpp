// Stripe's webhooks in (HSEA-023): POST /api/webhooks/stripe checks Stripe-Signature, stores the
// event once by its id and enqueues its processing in the same statement's transaction, and
// answers at once. The job worker then runs the handler of the event's type (on_stripe_event)
// in the tenant of the event's customer; the handler's writes and the event's outcome commit
// together, so a job run again after a crash finds the event done.
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <ctime>

#include "billing/billing.hpp"
#include "billing/internal.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/context.hpp"
#include "http/json.hpp"
#include "jobs/jobs.hpp"
#include "metering/policies.hpp"
#include "runtime/registrar.hpp"

namespace hsea::billing {
namespace {

using boost::asio::awaitable;
using boost::json::object;
using boost::json::value;
using core::ApiError;
using core::ErrorCode;

constexpr const char* kProcessKind = "billing.stripe_event";

HSEA_QUERY kStore{"billing_stripe_event_store",
                  "INSERT INTO stripe_events (id, type, stripe_created, payload) "
                  "VALUES ($1, $2, to_timestamp($3::bigint), $4::jsonb) "
                  "ON CONFLICT (id) DO NOTHING RETURNING id"};
HSEA_QUERY kLoad{"billing_stripe_event_load",
                 "SELECT id, type, payload::text AS payload, processed_at IS NOT NULL AS done "
                 "FROM stripe_events WHERE id = $1"};
HSEA_QUERY kFinish{"billing_stripe_event_finish",
                   "UPDATE stripe_events SET processed_at = now(), outcome = $2 WHERE id = $1"};
HSEA_QUERY kTenantOf{"billing_tenant_of_customer",
                     "SELECT billing_tenant_of_customer($1)::text AS tenant_id"};

std::string str_of(const object& o, std::string_view key) {
  const value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

awaitable<http::Response> receive(http::RequestContext& ctx) {
  const State& s = state();
  std::string_view header = ctx.request.header("stripe-signature");
  std::string why = verify_signature(header, ctx.request.body, s.webhook_secrets,
                                     static_cast<std::int64_t>(std::time(nullptr)));
  if (!why.empty()) {
    state().events_refused.fetch_add(1, std::memory_order_relaxed);
    throw ApiError(ErrorCode::kBadRequest, "The Stripe-Signature header does not verify.")
        .internal(why);
  }
  // Parsed here, not by the body step: only a signed body is read, and Stripe's events carry
  // more members than any schema of ours should have to list.
  boost::system::error_code ec;
  value parsed = boost::json::parse(ctx.request.body, ec);
  if (ec || !parsed.is_object()) {
    throw ApiError(ErrorCode::kBadRequest, "The body is not a JSON object.");
  }
  const object& event = parsed.as_object();
  std::string id = str_of(event, "id"), type = str_of(event, "type");
  const value* created = event.if_contains("created");
  if (id.empty() || id.size() > 255 || type.empty() || created == nullptr || !created->is_int64()) {
    throw ApiError(ErrorCode::kValidationFailed, "Not a Stripe event.",
                   {{"/id", "an event has an id, a type and created"}});
  }
  std::int64_t when = created->as_int64();
  db::Scope platform;  // named: g++ 12 destroys a defaulted argument of a co_await'ed call twice
  db::Transaction tx = co_await db::pool().begin(platform);
  db::Result stored = co_await tx.exec(kStore, db::params(id, type, when, ctx.request.body));
  if (stored.empty()) {
    state().events_duplicate.fetch_add(1, std::memory_order_relaxed);
    co_return http::json_response(200, object{{"received", true}, {"duplicate", true}});
  }
  jobs::NewJob job = jobs::job(kProcessKind, boost::json::serialize(object{{"event_id", id}}));
  job.unique_key = "stripe:" + id;
  co_await jobs::enqueue(tx, std::move(job));
  co_await tx.commit();
  state().events_received.fetch_add(1, std::memory_order_relaxed);
  co_return http::json_response(200, object{{"received", true}});
}

// The customer an event's object belongs to (its `customer`, or itself for a customer).
std::string customer_of(const object& o) {
  if (str_of(o, "object") == "customer") return str_of(o, "id");
  const value* c = o.if_contains("customer");
  if (c != nullptr && c->is_string()) return std::string(c->as_string());
  if (c != nullptr && c->is_object()) return str_of(c->as_object(), "id");
  return "";
}

awaitable<void> process(jobs::JobContext& job) {
  const value* id = job.payload().if_contains("event_id");
  if (id == nullptr || !id->is_string()) co_return;
  std::string event_id(id->as_string());
  db::Result r = co_await db::pool().query(kLoad, db::params(event_id));
  if (r.empty() || r.get_bool(0, "done")) co_return;
  std::string type = r.text(0, "type");
  auto handler = state().handlers.find(type);
  boost::system::error_code ec;
  value payload = boost::json::parse(r.get(0, "payload"), ec);
  object data_object;
  if (!ec && payload.is_object()) {
    const value* data = payload.as_object().if_contains("data");
    if (data != nullptr && data->is_object()) {
      const value* o = data->as_object().if_contains("object");
      if (o != nullptr && o->is_object()) data_object = o->as_object();
    }
  }
  std::string tenant;
  if (handler != state().handlers.end()) {
    std::string customer = customer_of(data_object);
    if (!customer.empty()) {
      db::Result t = co_await db::pool().query(kTenantOf, db::params(customer));
      tenant = t.text(0, "tenant_id");
    }
  }
  if (handler == state().handlers.end() || tenant.empty()) {
    std::string outcome =
        handler == state().handlers.end() ? "ignored: no handler" : "ignored: unknown customer";
    co_await db::pool().query(kFinish, db::params(event_id, outcome));
    co_return;
  }
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(tenant));
  StripeEvent event{event_id, type, std::move(data_object), tenant, &tx};
  co_await handler->second(event);
  co_await tx.exec(kFinish, db::params(event_id, "processed"));
  co_await Entitlements::commit(tx);
}

}  // namespace

void on_stripe_event(runtime::Registrar& reg, std::string type, StripeHandler handler) {
  auto [it, added] = state().handlers.emplace(std::move(type), std::move(handler));
  if (!added) throw std::logic_error("two handlers of Stripe event " + it->first);
}

void register_intake(runtime::Registrar& reg) {
  // Public: Stripe signs, it does not sign in. No body schema (see receive). Unmetered: Stripe's
  // events are not the tenant's calls.
  reg.route({.method = http::Method::kPost,
             .path = "/api/webhooks/stripe",
             .handler = receive,
             .policies = http::Policies(metering::Unmetered{})});
  // Retried with the default backoff for about a day: Stripe itself resends for three.
  jobs::define(reg, {.kind = kProcessKind, .run = process, .max_attempts = 15});
}

}  // namespace hsea::billing
