#pragma once
// The billing module's own pieces (internal): settings, state and the files' registrations.
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "billing/billing.hpp"

namespace hsea::http {
struct RequestContext;
}
namespace hsea::runtime {
class Registrar;
}
namespace hsea::db {
class Transaction;
class BlockingConnection;
class Result;
}  // namespace hsea::db

namespace hsea::billing {

struct Settings {
  std::string stripe_secret_key;      // HSEA_STRIPE_SECRET_KEY; empty: billing not configured
  std::string stripe_webhook_secret;  // HSEA_STRIPE_WEBHOOK_SECRET, comma-separated
  std::string stripe_api_base = "https://api.stripe.com";  // HSEA_STRIPE_API_BASE
  int stripe_max_retries = 3;                              // HSEA_STRIPE_MAX_RETRIES
  std::string trial_plan;  // HSEA_BILLING_TRIAL_PLAN; empty: new tenants start on free
  int trial_days = 14;     // HSEA_BILLING_TRIAL_DAYS
};

struct State {
  Settings settings;
  std::vector<std::string> webhook_secrets;  // HSEA_STRIPE_WEBHOOK_SECRET split
  std::string public_url;
  std::map<std::string, StripeHandler, std::less<>> handlers;
  std::atomic<std::uint64_t> events_received{0}, events_duplicate{0}, events_refused{0};
};
State& state();

// A Stripe request from a command (blocking, with the same retries): GET params go in the
// query, POST params in the body.
StripeReply stripe_blocking(const std::string& method, const std::string& path,
                            const boost::json::object& params, const std::string& idempotency_key);

// `hsea billing sync-plans`: the Stripe meters and metered prices of a plan's metered meters
// (plans.metered), after its product exists (metered_prices.cpp).
void sync_metered_prices(db::BlockingConnection& conn, const std::string& plan,
                         const std::string& product_id, const std::string& currency);

// The day (YYYY-MM-DD, UTC) of a timestamp column, "" when it is null: what invoices and billing
// mails show (invoices.cpp).
std::string day_of(const db::Result& r, int row, std::string_view column);

// 503 "billing not configured" when no Stripe secret key is set.
void require_stripe();

// Starts a new tenant's subscription in the transaction that creates it (subscriptions.cpp).
boost::asio::awaitable<void> start_subscription(db::Transaction& tx,
                                                const http::RequestContext& ctx,
                                                std::string tenant_id);

// Mails the tenant's owners and billing members with `template_name` in `tx` (its tenant's
// transaction), as every billing mail (invoice_events.cpp).
boost::asio::awaitable<void> mail_billing_contacts(db::Transaction& tx, std::string template_name,
                                                   boost::json::object data);

// How often the job that ends unpaid trials runs (subscriptions.cpp): trials last days, so a
// minute late is immaterial, and the query reads only the open trials' index.
inline constexpr auto kTrialSweep = std::chrono::seconds(60);

void register_plans(runtime::Registrar& registrar);          // plans.cpp
void register_subscriptions(runtime::Registrar& registrar);  // subscriptions.cpp
void register_intake(runtime::Registrar& registrar);         // intake.cpp
void register_entitlements(runtime::Registrar& registrar);   // entitlements.cpp

}  // namespace hsea::billing
