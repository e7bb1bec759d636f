#pragma once
// Billing (HSEA-021..025): the platform's plans, each tenant's subscription on Stripe, the
// Stripe client and the intake of Stripe's webhooks, checkout and the subscription's lifecycle,
// and the entitlements (plan features and limits) every node knows in process.
//
// Other modules use:
//   - billing::Feature{"sso"} in a route's policies: a tenant whose plan lacks the feature gets
//     402 problem+json, code plan_required;
//   - billing::Entitlements::of(tenant) / limits(tenant): the tenant's plan, features, limits and
//     billing period, from a per-thread cache (no database call per request) in front of the
//     shared tenant cache;
//   - billing::on_stripe_event(reg, "invoice.paid", handler): a handler of a Stripe event type,
//     run by the job worker in the tenant's transaction (register after billing::Register);
//   - billing::stripe(): the Stripe client (form encoding, Idempotency-Key, retries).
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "billing/policies.hpp"

namespace hsea::runtime {
class Registrar;
}
namespace hsea::db {
class Transaction;
}

namespace hsea::billing {

// ------------------------------------------------------------------------- entitlements

// What a tenant's current subscription entitles it to. A tenant without a subscription, or
// whose subscription was canceled, gets the free plan.
struct Entitlement {
  std::string tenant_id;
  std::string plan_id;  // "free", "starter", ...
  std::string status;   // the subscription's status ("active" for an implicit free plan)
  std::map<std::string, bool, std::less<>> features;
  // plans.limits: api_calls, storage_bytes, seats, requests_per_second, burst, and whatever
  // later meters add. An absent key is no limit.
  std::map<std::string, std::int64_t, std::less<>> limits;
  // plans.metered: the meters Stripe bills by usage over the included amount (their limits warn
  // but never refuse).
  std::map<std::string, bool, std::less<>> metered;
  std::chrono::system_clock::time_point period_start;
  std::optional<std::chrono::system_clock::time_point> period_end;  // none for a free plan

  bool has(std::string_view feature) const;
  std::optional<std::int64_t> limit(std::string_view key) const;
  bool is_metered(std::string_view meter) const { return metered.contains(meter); }
};

class Entitlements {
 public:
  // Call on an I/O thread. From this thread's cache, else one query (then cached for
  // kEntitlementTtl, or until a plan or subscription changes anywhere: every node LISTENs).
  static boost::asio::awaitable<std::shared_ptr<const Entitlement>> of(std::string tenant_id);
  static boost::asio::awaitable<std::map<std::string, std::int64_t, std::less<>>> limits(
      std::string tenant_id);
  // What this thread has cached now, or null (for callers that cannot wait: use a default).
  static std::shared_ptr<const Entitlement> cached(const std::string& tenant_id);
  // Empties every thread's cache of this process (before its next use).
  static void invalidate();
  // Commits a transaction that changed the tenant's subscription (`tx`'s tenant): drops the
  // tenant's shared entry around the commit, so no node refills from a copy older than the
  // change, then invalidate().
  static boost::asio::awaitable<void> commit(db::Transaction& tx);
};
inline constexpr auto kEntitlementTtl = std::chrono::seconds(60);

// ------------------------------------------------------------------------------ Stripe

// Stripe's form encoding of a JSON object: nested objects as a[b][c]=v, arrays as a[0][b]=v,
// booleans true/false, null as an empty value (which unsets a field), keys in the object's
// order. Percent-encoding per application/x-www-form-urlencoded.
std::string form_encode(const boost::json::object& params);

// Verifies a Stripe-Signature header ("t=...,v1=...,v1=...") over `payload` with any of
// `secrets` (rotation): HMAC-SHA256 of "t.payload", compared in constant time, and the
// timestamp within `tolerance` of `now`. Returns why it failed, or "" when it is valid.
std::string verify_signature(std::string_view header, std::string_view payload,
                             const std::vector<std::string>& secrets, std::int64_t now,
                             std::int64_t tolerance = 300);
// A header Stripe would send (tests).
std::string sign_payload(std::string_view payload, std::string_view secret, std::int64_t t);

// An answer of Stripe's API: a status and a JSON body (for errors {"error": {...}}).
struct StripeReply {
  int status = 0;
  boost::json::object body;
  bool ok() const { return status >= 200 && status < 300; }
  std::string error_message() const;  // error.message, or the status
};

// The Stripe API client (HSEA_STRIPE_*): libcurl on the blocking I/O pool; a pinned
// Stripe-Version; every POST carries an Idempotency-Key derived from its cause (stable across
// retries); 429, 5xx and network errors are retried with backoff unless Stripe-Should-Retry says
// false. Throws core::ApiError 503 "billing not configured" when no secret key is set, and 502
// (service unavailable) when Stripe cannot be reached after the retries.
class StripeClient {
 public:
  boost::asio::awaitable<StripeReply> get(std::string path, boost::json::object query);
  // Without a query. Not a coroutine: the empty query is made here, not in a caller's co_await
  // (g++ 12 destroys such an argument twice).
  boost::asio::awaitable<StripeReply> get(std::string path) {
    return get(std::move(path), boost::json::object());
  }
  boost::asio::awaitable<StripeReply> post(std::string path, boost::json::object params,
                                           std::string idempotency_key);
  // DELETE with parameters in the query string (Stripe's cancel: invoice_now, prorate).
  boost::asio::awaitable<StripeReply> del(std::string path, boost::json::object query);
  boost::asio::awaitable<StripeReply> del(std::string path) {
    return del(std::move(path), boost::json::object());
  }
  bool configured() const;
};
StripeClient& stripe();
inline constexpr const char* kStripeVersion = "2024-06-20";

// ---------------------------------------------------------------- Stripe event handlers

// One Stripe event, for the handler of its type.
struct StripeEvent {
  std::string id;                 // evt_...
  std::string type;               // "invoice.paid"
  boost::json::object object;     // data.object as delivered (may be stale: re-read what matters)
  std::string tenant_id;          // the tenant of its customer
  db::Transaction* tx = nullptr;  // the tenant's transaction: commits when the handler returns
};
using StripeHandler = std::function<boost::asio::awaitable<void>(StripeEvent&)>;
// Declares the handler of an event type (one per type). Events of types nobody handles are
// stored and marked ignored.
void on_stripe_event(runtime::Registrar& registrar, std::string type, StripeHandler handler);
// For handlers: re-reads the Stripe subscription (e.g. an invoice's) and applies it to the
// event's tenant (status past_due after a failed payment, active after a payment, ...) under the
// row's lock; audited and emitting subscription.* when something changed, which it returns.
boost::asio::awaitable<bool> sync_subscription(StripeEvent& event,
                                               std::string stripe_subscription_id);

// ------------------------------------------------------------ metered usage reported to Stripe

// Metering (a module above billing) reports usage to Stripe; billing tells it when:
struct UsageReports {
  // Before a change that ends the period of a subscription's metered items now (cancel now, down
  // to Free now, a plan change with billing_cycle_anchor=now): Stripe invoices their usage at
  // once, so the tenant's usage not yet reported must reach it first. Billing awaits it just
  // before such a change; a failure only logs a warning (the periodic report sends it later).
  boost::asio::awaitable<void> (*report_now)(std::string tenant_id) = nullptr;
  // When a period of a subscription with metered items started (HSEA applies Stripe's renewal,
  // or a change that restarted the cycle) or a period-end plan change put the new plan's metered
  // prices on it (the job billing.plan_items): the usage recorded before `since` (Unix seconds)
  // must reach Stripe, the ended period's while the renewal invoice is still a draft (an hour,
  // "Configure an invoice finalization grace period"), the usage held back during the swap dated
  // after it. Enqueues the report in `tx`, the transaction of that change (so it happens exactly
  // when the change commits).
  boost::asio::awaitable<void> (*report_after)(db::Transaction& tx, std::int64_t since) = nullptr;
};
void on_usage_reports(UsageReports reports);

void Register(runtime::Registrar& registrar);

}  // namespace hsea::billing
