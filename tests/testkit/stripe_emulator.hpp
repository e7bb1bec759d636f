#pragma once
// The local Stripe emulator (tests/stripe-emulator, TypeScript) for black-box billing tests: a
// child process on a free port that speaks Stripe's API, signs webhook events for the test's HSEA
// server, and offers the control API of tests/stripe-emulator/README.md.
//
//   hsea::testkit::StripeEmulator stripe;                   // started, no webhook endpoint yet
//   TestServer server(db, stripe.hsea_env());              // HSEA_STRIPE_* pointing at it
//   stripe.set_webhook_url(server.url("/api/webhooks/stripe"));
//   ... stripe.complete_checkout(url); stripe.advance_days(3); stripe.wait_webhooks_idle();
#include <boost/json/value.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace hsea::testkit {

class TestDatabase;
class TestServer;
struct Account;
struct RunResult;

class StripeEmulator {
 public:
  // `webhook_url` may be empty and set later (HSEA's port is known only after it starts).
  explicit StripeEmulator(std::string webhook_url = "",
                          std::string webhook_secret = "whsec_hsea_test_emulator_secret");
  ~StripeEmulator();
  StripeEmulator(const StripeEmulator&) = delete;
  StripeEmulator& operator=(const StripeEmulator&) = delete;

  int port() const { return port_; }
  std::string api_base() const;  // http://127.0.0.1:PORT (HSEA_STRIPE_API_BASE)
  const std::string& secret_key() const { return secret_key_; }
  const std::string& webhook_secret() const { return webhook_secret_; }
  // HSEA_STRIPE_API_BASE, HSEA_STRIPE_SECRET_KEY, HSEA_STRIPE_WEBHOOK_SECRET for TestServer.
  std::map<std::string, std::string> hsea_env() const;
  std::string log() const;  // what the emulator printed

  // Sends every event to `url` from now on (replaces the endpoint of the previous call).
  void set_webhook_url(const std::string& url) const;
  // Stripe's own retries after a declined renewal (days after each attempt) and what follows the
  // last: "canceled", "unpaid" or "past_due" (left as is). ({}, "past_due") turns them off.
  void set_dunning(const std::vector<int>& retry_days, const std::string& final_status) const;

  // The control API (JSON in and out; a non-2xx answer records a test failure).
  boost::json::value control(const std::string& method, const std::string& path,
                             const std::string& json_body = "") const;
  // Stripe's own API as a client (form-encoded body or query), e.g. to read what HSEA created.
  boost::json::value api(const std::string& method, const std::string& path,
                         const std::string& form = "") const;

  void reset() const;
  // Pays a Checkout session (its id or its url) with a test card, as the customer would.
  boost::json::value complete_checkout(const std::string& session_id_or_url,
                                       const std::string& card = "pm_card_visa") const;
  void fail_next_charges(const std::string& customer, int count = 1) const;
  void succeed_charges(const std::string& customer) const;
  // Moves the default clock (customers without a test clock) forward, running renewals, trial
  // ends and payment retries due on the way.
  void advance_seconds(long long seconds) const;
  void advance_days(int days) const { advance_seconds(86400LL * days); }
  void hold_webhooks() const;
  // order: "fifo", "reverse" or "shuffle"; duplicate: each held event twice.
  void release_webhooks(const std::string& order = "fifo", bool duplicate = false,
                        int delay_ms = 0) const;
  // Delivers a stored event again (late, or a second time); with `secret` signed with that secret
  // instead of the endpoint's (a bad signature), with `timestamp_offset` (e.g. -600) stale.
  void resend_event(const std::string& event_id, const std::string& secret = "",
                    long long timestamp_offset = 0) const;
  // The id of the newest event of `type` (e.g. "invoice.paid"), or "".
  std::string last_event_id(const std::string& type) const;
  // Waits until every queued delivery got its 2xx or gave up retrying; false on timeout.
  bool wait_webhooks_idle(std::chrono::seconds timeout = std::chrono::seconds(20)) const;
  boost::json::array requests() const;    // every /v1 request HSEA made (see README)
  boost::json::array deliveries() const;  // every webhook delivery attempt

  // Billing fixtures over this emulator and a test's HSEA. `hsea billing sync-plans` against
  // `db` with this emulator's settings plus `env` (Stripe products and prices for the plans).
  RunResult sync_plans(const TestDatabase& db, std::map<std::string, std::string> env = {}) const;
  // A tenant on a paid plan through Checkout: HSEA makes the session, the customer pays, the
  // webhooks are delivered; records a test failure when any step fails. Then wait for the
  // subscription's state the test needs (Stripe's events are processed by HSEA's job worker).
  void subscribe(const TestServer& server, const Account& account, const std::string& plan,
                 const std::string& interval = "month") const;

 private:
  int pid_ = -1;
  int port_ = 0;
  std::string log_path_;
  std::string secret_key_ = "sk_test_hsea_emulator";
  std::string webhook_secret_;
};

}  // namespace hsea::testkit
