// The testkit's Stripe emulator starter (tests/testkit/stripe_emulator.hpp) as the billing tests
// use it: Stripe's API through plain HTTP, checkout paid through the control API, a failed renewal
// after moving the clock, and the request log.
#include <gtest/gtest.h>

#include <boost/json/value.hpp>

#include <string>

#include "testkit/stripe_emulator.hpp"
#include "testkit/testkit.hpp"

namespace hsea {
namespace {

std::string s(const boost::json::value& v, const char* key) {
  if (!v.is_object() || !v.as_object().contains(key) || !v.as_object().at(key).is_string()) {
    return "";
  }
  return std::string(v.as_object().at(key).as_string());
}

TEST(StripeEmulatorKit, CheckoutRenewalFailureAndRequestLog) {
  testkit::StripeEmulator stripe;
  ASSERT_GT(stripe.port(), 0);
  EXPECT_EQ(stripe.hsea_env().at("HSEA_STRIPE_API_BASE"), stripe.api_base());

  auto unauthorized = testkit::http("GET", stripe.api_base() + "/v1/customers");
  EXPECT_EQ(unauthorized.status, 401);

  auto customer = stripe.api("POST", "/v1/customers", "email=owner%40example.com");
  ASSERT_EQ(s(customer, "object"), "customer") << stripe.log();
  auto product = stripe.api("POST", "/v1/products", "name=Pro");
  auto price = stripe.api("POST", "/v1/prices",
                          "product=" + s(product, "id") +
                              "&currency=eur&unit_amount=2900&recurring%5Binterval%5D=month");
  auto session = stripe.api("POST", "/v1/checkout/sessions",
                            "mode=subscription&customer=" + s(customer, "id") +
                                "&line_items%5B0%5D%5Bprice%5D=" + s(price, "id") +
                                "&success_url=http%3A%2F%2Fapp.test%2Fok");
  ASSERT_EQ(s(session, "status"), "open");
  auto done = stripe.complete_checkout(s(session, "url"));
  EXPECT_EQ(s(done, "status"), "complete");
  auto sub = stripe.api("GET", "/v1/subscriptions/" + s(done, "subscription"));
  EXPECT_EQ(s(sub, "status"), "active");

  // The renewal a month later is declined: the subscription goes past_due (and stays so: Stripe's
  // own retries are off).
  stripe.set_dunning({}, "past_due");
  stripe.fail_next_charges(s(customer, "id"));
  stripe.advance_days(32);
  sub = stripe.api("GET", "/v1/subscriptions/" + s(done, "subscription"));
  EXPECT_EQ(s(sub, "status"), "past_due");
  // Paying the open invoice (the next charge succeeds) restores it.
  auto invoice = stripe.api("GET", "/v1/invoices/" + s(sub, "latest_invoice"));
  EXPECT_EQ(s(invoice, "status"), "open");
  auto paid = stripe.api("POST", "/v1/invoices/" + s(invoice, "id") + "/pay");
  EXPECT_EQ(s(paid, "status"), "paid");
  sub = stripe.api("GET", "/v1/subscriptions/" + s(done, "subscription"));
  EXPECT_EQ(s(sub, "status"), "active");

  // Webhooks: every event goes to the set URL (nothing listens on port 9: the delivery fails, is
  // retried once on the shortened schedule and given up); an event can be sent again.
  stripe.control("POST", "/webhooks/retry_delays", R"({"ms":[10]})");
  stripe.set_webhook_url("http://127.0.0.1:9/hook");
  std::string event = stripe.last_event_id("invoice.paid");
  ASSERT_FALSE(event.empty());
  stripe.resend_event(event);
  EXPECT_TRUE(stripe.wait_webhooks_idle());
  auto deliveries = stripe.deliveries();
  ASSERT_EQ(deliveries.size(), 2u);
  EXPECT_EQ(deliveries[0].as_object().at("event").as_string(), event);
  EXPECT_EQ(deliveries[0].as_object().at("url").as_string(), "http://127.0.0.1:9/hook");
  EXPECT_EQ(deliveries[1].as_object().at("attempt").as_int64(), 2);

  auto log = stripe.requests();
  ASSERT_GE(log.size(), 8u);
  EXPECT_EQ(log.front().as_object().at("path").as_string(), "/v1/customers");
  EXPECT_EQ(log.front().as_object().at("status").as_int64(), 401);
}

}  // namespace
}  // namespace hsea
