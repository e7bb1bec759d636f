// Stripe's form encoding and webhook signatures, as Stripe defines them.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "billing/billing.hpp"

namespace hsea::billing {
namespace {

using boost::json::array;
using boost::json::object;

TEST(StripeForm, NestsObjectsAndArraysInBracketsAndEscapesValues) {
  object params{{"mode", "subscription"},
                {"line_items", array{object{{"price", "price_1"}, {"quantity", 2}}}},
                {"metadata", object{{"tenant_id", "t 1&x=y"}, {"plan", "pro"}}},
                {"expand", array{"customer", "subscription"}},
                {"cancel_at_period_end", false},
                {"description", nullptr},
                {"success_url", "https://a.example/ok?session={CHECKOUT_SESSION_ID}"}};
  EXPECT_EQ(form_encode(params),
            "mode=subscription"
            "&line_items[0][price]=price_1&line_items[0][quantity]=2"
            "&metadata[tenant_id]=t%201%26x%3Dy&metadata[plan]=pro"
            "&expand[0]=customer&expand[1]=subscription"
            "&cancel_at_period_end=false"
            "&description="
            "&success_url=https%3A%2F%2Fa.example%2Fok%3Fsession%3D%7BCHECKOUT_SESSION_ID%7D");
  EXPECT_EQ(form_encode(object{}), "");
  // Keys are escaped too, except the brackets of the nesting; UTF-8 byte by byte.
  EXPECT_EQ(form_encode(object{{"a b", object{{"c", "\xc3\xa9"}}}}), "a%20b[c]=%C3%A9");
  EXPECT_EQ(form_encode(object{{"n", -12}, {"big", 9007199254740993LL}}),
            "n=-12&big=9007199254740993");
}

TEST(StripeSignature, AcceptsAnyV1OfAnySecretWithinTheTolerance) {
  const std::string payload = R"({"id":"evt_1","type":"invoice.paid"})";
  const std::int64_t t = 1700000000;
  std::string header = sign_payload(payload, "whsec_new", t);
  EXPECT_EQ(header.substr(0, 15), "t=1700000000,v1");
  EXPECT_EQ(verify_signature(header, payload, {"whsec_new"}, t), "");
  // Rotation: the old and the new secret both verify; a header with several v1 entries too.
  EXPECT_EQ(verify_signature(header, payload, {"whsec_old", "whsec_new"}, t + 10), "");
  std::string several =
      "t=1700000000,v1=" + std::string(64, 'a') + ",v0=zz," + header.substr(header.find("v1="));
  EXPECT_EQ(verify_signature(several, payload, {"whsec_new"}, t), "");
}

TEST(StripeSignature, RefusesWhatStripeWouldNotHaveSent) {
  const std::string payload = R"({"id":"evt_1"})";
  const std::int64_t t = 1700000000;
  std::string header = sign_payload(payload, "whsec_a", t);
  EXPECT_NE(verify_signature(header, payload, {"whsec_b"}, t), "");
  EXPECT_NE(verify_signature(header, payload + " ", {"whsec_a"}, t), "");
  EXPECT_NE(verify_signature(header, payload, {"whsec_a"}, t + 301), "");
  EXPECT_EQ(verify_signature(header, payload, {"whsec_a"}, t + 300), "");
  EXPECT_NE(verify_signature(header, payload, {"whsec_a"}, t - 301), "");
  EXPECT_NE(verify_signature("", payload, {"whsec_a"}, t), "");
  EXPECT_NE(verify_signature("t=1700000000", payload, {"whsec_a"}, t), "");
  EXPECT_NE(
      verify_signature("v1=" + header.substr(header.find("v1=") + 3), payload, {"whsec_a"}, t), "");
  EXPECT_NE(verify_signature("t=17000x0000," + header.substr(header.find("v1=")), payload,
                             {"whsec_a"}, t),
            "");
  EXPECT_NE(verify_signature(header, payload, {}, t), "");
}

}  // namespace
}  // namespace hsea::billing
