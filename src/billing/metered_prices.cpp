// The Stripe side of metered billing, made by `hsea billing sync-plans`: one Stripe billing meter
// per metered HSEA meter (event_name hsea_<meter>, summing payload[value] per
// payload[stripe_customer_id]) and, per plan and interval, a metered price on that meter whose
// first tier (the plan's included amount, its `limits` entry) is free and whose second charges
// plans.metered[meter].unit_amount_decimal per unit. The metering module reports the usage
// (src/metering/stripe_usage.cpp).
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstdio>
#include <stdexcept>

#include "billing/billing.hpp"
#include "billing/internal.hpp"
#include "core/crypto.hpp"
#include "db/blocking.hpp"
#include "db/db.hpp"

namespace hsea::billing {
namespace {

using boost::json::array;
using boost::json::object;
using boost::json::value;

HSEA_QUERY kMeteredPlan{"billing_metered_plan",
                        "SELECT metered::text AS metered, limits::text AS limits, "
                        "stripe_metered_price_ids::text AS prices FROM plans WHERE id = $1"};
HSEA_QUERY kStripeMeter{"billing_stripe_meter",
                        "SELECT stripe_meter_id FROM stripe_meters WHERE meter = $1"};
HSEA_QUERY kSaveStripeMeter{
    "billing_stripe_meter_save",
    "INSERT INTO stripe_meters (meter, event_name, stripe_meter_id) VALUES ($1, $2, $3) "
    "ON CONFLICT (meter) DO UPDATE SET stripe_meter_id = EXCLUDED.stripe_meter_id"};
HSEA_QUERY kSaveMeteredPrices{"billing_metered_prices_save",
                              "UPDATE plans SET stripe_metered_price_ids = $2::jsonb, "
                              "updated_at = now() WHERE id = $1"};

object object_of(const std::string& text) {
  boost::system::error_code ec;
  value v = boost::json::parse(text, ec);
  return !ec && v.is_object() ? v.as_object() : object{};
}

std::string event_name_of(const std::string& meter) {
  std::string name = "hsea_" + meter;
  for (char& c : name) {
    if (c == '.') c = '_';
  }
  return name;
}

// The Stripe meter of `meter`: stored, else created (or found, when a run before created it
// but did not store it).
std::string ensure_meter(db::BlockingConnection& conn, const std::string& meter) {
  db::Result stored = conn.exec(kStripeMeter, db::params(meter));
  if (!stored.empty()) return stored.text(0, "stripe_meter_id");
  std::string event_name = event_name_of(meter);
  object params{
      {"display_name", "HSEA " + meter},
      {"event_name", event_name},
      {"default_aggregation", object{{"formula", "sum"}}},
      {"customer_mapping", object{{"event_payload_key", "stripe_customer_id"}, {"type", "by_id"}}},
      {"value_settings", object{{"event_payload_key", "value"}}}};
  StripeReply made = stripe_blocking("POST", "/v1/billing/meters", params, "hsea-meter-" + meter);
  std::string id;
  if (made.ok()) {
    id = std::string(made.body.at("id").as_string());
  } else {
    StripeReply list = stripe_blocking("GET", "/v1/billing/meters",
                                       object{{"status", "active"}, {"limit", 100}}, "");
    if (list.ok()) {
      for (const value& m : list.body.at("data").as_array()) {
        if (m.at("event_name").as_string() == event_name) {
          id = std::string(m.at("id").as_string());
        }
      }
    }
    if (id.empty()) throw std::runtime_error("meter " + meter + ": " + made.error_message());
  }
  conn.exec(kSaveStripeMeter, db::params(meter, event_name, id));
  std::printf("meter %-12s %s (event %s)\n", meter.c_str(), id.c_str(), event_name.c_str());
  return id;
}

std::string str(const object& o, std::string_view key) {
  const value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

}  // namespace

void sync_metered_prices(db::BlockingConnection& conn, const std::string& plan,
                         const std::string& product_id, const std::string& currency) {
  db::Result r = conn.exec(kMeteredPlan, db::params(plan));
  if (r.empty()) return;
  object metered = object_of(r.text(0, "metered"));
  if (metered.empty()) return;
  object limits = object_of(r.text(0, "limits"));
  object prices = object_of(r.text(0, "prices"));
  for (const auto& [key, terms_value] : metered) {
    std::string meter(key);
    object terms = terms_value.is_object() ? terms_value.as_object() : object{};
    std::string unit = str(terms, "unit_amount_decimal");
    if (unit.empty())
      throw std::runtime_error("plan " + plan + ": metered." + meter +
                               " needs unit_amount_decimal");
    std::int64_t included = 0;
    if (const value* l = limits.if_contains(meter); l != nullptr && l->is_int64()) {
      included = l->as_int64();
    }
    std::string meter_id = ensure_meter(conn, meter);
    // What the price is: a change of any of these makes a new price (prices are immutable).
    std::string signature = currency + ":" + std::to_string(included) + ":" + unit + ":" + meter_id;
    value& slot = prices[meter];
    if (!slot.is_object()) slot.emplace_object();
    object& ids = slot.as_object();
    for (const char* interval : {"month", "year"}) {
      std::string existing = str(ids, interval);
      if (!existing.empty()) {
        StripeReply got = stripe_blocking("GET", "/v1/prices/" + existing, {}, "");
        if (got.ok() && got.body.contains("metadata") && got.body.at("metadata").is_object() &&
            str(got.body.at("metadata").as_object(), "hsea_terms") == signature) {
          continue;
        }
      }
      object price{{"product", product_id},
                   {"currency", currency},
                   {"recurring",
                    object{{"interval", interval}, {"usage_type", "metered"}, {"meter", meter_id}}},
                   {"lookup_key", "hsea_" + plan + "_" + meter + "_" + interval},
                   {"transfer_lookup_key", true},
                   {"metadata", object{{"hsea_plan", plan},
                                       {"hsea_meter", meter},
                                       {"interval", interval},
                                       {"hsea_terms", signature}}}};
      if (included > 0) {
        price["billing_scheme"] = "tiered";
        price["tiers_mode"] = "graduated";
        price["tiers"] = array{object{{"up_to", included}, {"unit_amount", 0}},
                               object{{"up_to", "inf"}, {"unit_amount_decimal", unit}}};
      } else {
        price["unit_amount_decimal"] = unit;
      }
      StripeReply made =
          stripe_blocking("POST", "/v1/prices", price,
                          "hsea-metered-price-" + plan + "-" + meter + "-" + interval + "-" +
                              core::sha256_hex(signature).substr(0, 16));
      if (!made.ok()) {
        throw std::runtime_error("plan " + plan + ": metered " + meter + " " + interval +
                                 " price: " + made.error_message());
      }
      ids[interval] = made.body.at("id");
    }
    std::printf("%-12s metered %s  month %s  year %s\n", plan.c_str(), meter.c_str(),
                str(ids, "month").c_str(), str(ids, "year").c_str());
  }
  conn.exec(kSaveMeteredPrices, db::params(plan, boost::json::serialize(prices)));
}

}  // namespace hsea::billing
