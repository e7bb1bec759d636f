// Plans (HSEA-021): GET /api/plans (public, active plans), the operator API under
// /api/admin/plans (platform staff, like every /api/admin route), `hsea plans ...` and
// `hsea billing sync-plans`, which creates or updates each paid plan's Stripe product and prices.
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "billing/billing.hpp"
#include "billing/internal.hpp"
#include "core/config.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "db/blocking.hpp"
#include "db/db.hpp"
#include "http/context.hpp"
#include "http/json.hpp"
#include "http/page.hpp"
#include "identity/access.hpp"
#include "metering/policies.hpp"
#include "runtime/registrar.hpp"
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

#define HSEA_PLAN_COLUMNS                                                              \
  "id, name, description, currency, monthly_amount, yearly_amount, features::text AS " \
  "features, limits::text AS limits, sort_order, status, stripe_product_id, "          \
  "stripe_monthly_price_id, stripe_yearly_price_id, metered::text AS metered, "        \
  "created_at, updated_at"

// Lists page in their order (sort_order, id), after the plan named by $1 (or from the start).
#define HSEA_PLAN_AFTER \
  "($1::text IS NULL OR (sort_order, id) > (SELECT sort_order, id FROM plans WHERE id = $1))"
HSEA_QUERY kActivePlans{"billing_plans_active",
                        "SELECT " HSEA_PLAN_COLUMNS
                        " FROM plans WHERE status = 'active' "
                        "AND " HSEA_PLAN_AFTER " ORDER BY sort_order, id LIMIT $2"};
HSEA_QUERY kAllPlansPage{"billing_plans_all_page",
                         "SELECT " HSEA_PLAN_COLUMNS " FROM plans WHERE " HSEA_PLAN_AFTER
                         " ORDER BY sort_order, id LIMIT $2"};
// Every plan at once, for the operator's commands (sync-plans, list).
HSEA_QUERY kAllPlans{"billing_plans_all",
                     "SELECT " HSEA_PLAN_COLUMNS " FROM plans ORDER BY sort_order, id"};
HSEA_QUERY kGetPlan{"billing_plan_get", "SELECT " HSEA_PLAN_COLUMNS " FROM plans WHERE id = $1"};
HSEA_QUERY kInsertPlan{
    "billing_plan_insert",
    "INSERT INTO plans (id, name, description, currency, monthly_amount, yearly_amount, "
    "features, limits, sort_order, metered) VALUES ($1, $2, COALESCE($3, ''), COALESCE($4, "
    "'usd'), $5, $6, COALESCE($7::jsonb, '{}'), COALESCE($8::jsonb, '{}'), COALESCE($9::int, 0), "
    "COALESCE($10::jsonb, '{}')) "
    "ON CONFLICT (id) DO NOTHING RETURNING " HSEA_PLAN_COLUMNS};
// The free plan is what every tenant falls back to: it is never archived.
HSEA_QUERY kUpdatePlan{
    "billing_plan_update",
    "UPDATE plans SET name = COALESCE($2, name), description = COALESCE($3, description), "
    "currency = COALESCE($4, currency), monthly_amount = COALESCE($5::bigint, monthly_amount), "
    "yearly_amount = COALESCE($6::bigint, yearly_amount), "
    "features = COALESCE($7::jsonb, features), limits = COALESCE($8::jsonb, limits), "
    "sort_order = COALESCE($9::int, sort_order), metered = COALESCE($11::jsonb, metered), "
    "status = CASE WHEN id = 'free' THEN status ELSE COALESCE($10, status) END, "
    "updated_at = now() WHERE id = $1 RETURNING " HSEA_PLAN_COLUMNS};
HSEA_QUERY kSetStripeIds{"billing_plan_stripe_ids",
                         "UPDATE plans SET stripe_product_id = $2, stripe_monthly_price_id = $3, "
                         "stripe_yearly_price_id = $4, updated_at = now() WHERE id = $1"};

value json_text(std::string_view text) {
  boost::system::error_code ec;
  value v = boost::json::parse(text, ec);
  return ec ? value(object{}) : v;
}

object plan_json(const db::Result& r, int row, bool operator_view) {
  object o{{"id", r.text(row, "id")},
           {"name", r.text(row, "name")},
           {"description", r.text(row, "description")},
           {"currency", r.text(row, "currency")},
           {"monthly_amount", r.get_int(row, "monthly_amount")},
           {"yearly_amount", r.get_int(row, "yearly_amount")},
           {"features", json_text(r.get(row, "features"))},
           {"limits", json_text(r.get(row, "limits"))},
           {"status", r.text(row, "status")}};
  if (operator_view) {
    o["sort_order"] = r.get_int(row, "sort_order");
    o["stripe_product_id"] = r.nullable(row, "stripe_product_id");
    o["stripe_monthly_price_id"] = r.nullable(row, "stripe_monthly_price_id");
    o["stripe_yearly_price_id"] = r.nullable(row, "stripe_yearly_price_id");
    o["metered"] = json_text(r.get(row, "metered"));
    o["created_at"] = r.time(row, "created_at");
    o["updated_at"] = r.time(row, "updated_at");
  }
  return o;
}

[[noreturn]] void invalid(std::string field, std::string message) {
  throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                 {{std::move(field), std::move(message)}});
}

// Whether `s` is a positive decimal as Stripe takes it (unit_amount_decimal: up to 12 places).
bool positive_decimal(std::string_view s) {
  std::size_t dot = s.find('.');
  std::string_view whole = s.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? "" : s.substr(dot + 1);
  auto digits = [](std::string_view d) {
    return std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (whole.empty() || whole.size() > 12 || !digits(whole) || !digits(frac)) return false;
  if (whole.size() > 1 && whole[0] == '0') return false;
  if (dot != std::string_view::npos && (frac.empty() || frac.size() > 12)) return false;
  return std::any_of(s.begin(), s.end(), [](char c) { return c >= '1' && c <= '9'; });
}

// plans.metered: {meter: {"unit_amount_decimal": "0.1"}}. A meter billed by usage is a counted
// one (api_calls or a product meter): the gauges (storage_bytes, seats) and the rate limits are
// not sums of events, so Stripe's meter could not bill them.
void check_metered(const value& v) {
  if (!v.is_object()) invalid("/metered", "must be an object of {unit_amount_decimal} by meter");
  for (const auto& [k, terms] : v.as_object()) {
    std::string meter(k), at = "/metered/" + std::string(k);
    bool named = !meter.empty() && meter.size() <= 63 && meter[0] >= 'a' && meter[0] <= 'z' &&
                 std::all_of(meter.begin(), meter.end(), [](char c) {
                   return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
                 });
    if (!named) invalid(at, "is not a meter name (lower case letters, digits, _ and .)");
    for (const char* other : {"storage_bytes", "seats", "requests_per_second", "burst"}) {
      if (meter == other)
        invalid(at, "is not a counted meter: only counted meters are billed by usage");
    }
    if (!terms.is_object()) invalid(at, "must be an object {unit_amount_decimal}");
    for (const auto& [field, _] : terms.as_object()) {
      if (field != "unit_amount_decimal")
        invalid(at + "/" + std::string(field), "is not a field of a metered price");
    }
    const value* unit = terms.as_object().if_contains("unit_amount_decimal");
    if (unit == nullptr) invalid(at + "/unit_amount_decimal", "is required");
    if (!unit->is_string() || !positive_decimal(unit->as_string())) {
      invalid(at + "/unit_amount_decimal",
              "must be a positive decimal string in minor units, e.g. \"0.1\"");
    }
  }
}

// The body's plan fields as the insert/update parameters $2..$11 (absent: NULL): name ...
// status, then metered. Checks what the schema cannot say: features are booleans, limits
// non-negative integers, metered prices positive decimals of counted meters.
db::Params plan_params(const object& body) {
  db::Params p;
  for (const char* k : {"name", "description", "currency"}) {
    const value* v = body.if_contains(k);
    p.push_back(v != nullptr && v->is_string() ? std::optional<std::string>(v->as_string())
                                               : std::nullopt);
  }
  for (const char* k : {"monthly_amount", "yearly_amount"}) {
    const value* v = body.if_contains(k);
    if (v != nullptr && (!v->is_int64() || v->as_int64() < 0) && !v->is_uint64()) {
      invalid(std::string("/") + k, "must be a non-negative integer (minor units)");
    }
    p.push_back(v != nullptr ? std::optional<std::string>(boost::json::serialize(*v))
                             : std::nullopt);
  }
  if (const value* v = body.if_contains("features")) {
    if (!v->is_object()) invalid("/features", "must be an object of booleans");
    for (const auto& [k, f] : v->as_object()) {
      if (!f.is_bool()) invalid("/features/" + std::string(k), "must be true or false");
    }
    p.push_back(boost::json::serialize(*v));
  } else {
    p.push_back(std::nullopt);
  }
  if (const value* v = body.if_contains("limits")) {
    if (!v->is_object()) invalid("/limits", "must be an object of non-negative integers");
    for (const auto& [k, l] : v->as_object()) {
      if (!(l.is_uint64() || (l.is_int64() && l.as_int64() >= 0))) {
        invalid("/limits/" + std::string(k), "must be a non-negative integer");
      }
    }
    p.push_back(boost::json::serialize(*v));
  } else {
    p.push_back(std::nullopt);
  }
  const value* order = body.if_contains("sort_order");
  p.push_back(order != nullptr && order->is_int64()
                  ? std::optional<std::string>(std::to_string(order->as_int64()))
                  : std::nullopt);
  const value* status = body.if_contains("status");
  p.push_back(status != nullptr && status->is_string()
                  ? std::optional<std::string>(status->as_string())
                  : std::nullopt);
  if (const value* v = body.if_contains("metered")) {
    check_metered(*v);
    p.push_back(boost::json::serialize(*v));
  } else {
    p.push_back(std::nullopt);
  }
  return p;
}

void log_operator_change(const RequestContext& ctx, std::string_view action,
                         const std::string& plan) {
  // Plans belong to no tenant, so no tenant's audit log holds this: the log line does, with
  // the staff user who made the change.
  log::info("plan changed", {{"action", action},
                             {"plan_id", plan},
                             {"actor", "staff"},
                             {"user_id", ctx.principal.user_id},
                             {"request_id", ctx.request_id}});
}

bool plan_cursor(std::string_view id) {
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::islower(static_cast<unsigned char>(c)) ||
           std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
}

awaitable<Response> plan_page(RequestContext& ctx, const db::Query& query, bool operator_view) {
  http::Page page = http::page_of(ctx, plan_cursor);
  db::Result r = co_await db::pool().query(query, db::params(page.starting_after, page.fetch()));
  array data;
  for (int i = 0; i < r.rows(); ++i) data.push_back(plan_json(r, i, operator_view));
  co_return http::json_response(200, http::page_json(std::move(data), page));
}

awaitable<Response> list_plans(RequestContext& ctx) {
  co_return co_await plan_page(ctx, kActivePlans, false);
}

awaitable<Response> admin_list_plans(RequestContext& ctx) {
  co_return co_await plan_page(ctx, kAllPlansPage, true);
}

awaitable<Response> admin_create_plan(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::string id = http::required_string(body, "id");
  db::Params p = plan_params(body);
  if (!p[3] || !p[4]) invalid(!p[3] ? "/monthly_amount" : "/yearly_amount", "is required");
  if (!p[0]) invalid("/name", "is required");
  db::Params params{id};
  params.insert(params.end(), p.begin(), p.begin() + 8);  // no status: a new plan is active
  params.push_back(p[9]);
  db::Result r = co_await db::pool().query(kInsertPlan, std::move(params));
  if (r.empty()) throw ApiError(ErrorCode::kConflict, "A plan with this id exists.");
  log_operator_change(ctx, "plan.created", id);
  co_return http::json_response(201, plan_json(r, 0, true));
}

awaitable<Response> update(RequestContext& ctx, db::Params p, std::string_view action) {
  std::string id(ctx.param("id"));
  if (id == "free" && p[8] && *p[8] == "archived") {
    throw ApiError(ErrorCode::kConflict,
                   "The free plan cannot be archived: tenants without a paid plan use it.");
  }
  p.insert(p.begin(), id);
  db::Result r = co_await db::pool().query(kUpdatePlan, std::move(p));
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such plan.");
  log_operator_change(ctx, action, id);
  co_return http::json_response(200, plan_json(r, 0, true));
}

awaitable<Response> admin_update_plan(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  co_return co_await update(ctx, plan_params(body), "plan.updated");
}

awaitable<Response> admin_archive_plan(RequestContext& ctx) {
  db::Params p(8, std::nullopt);  // every field unchanged but the status
  p.push_back("archived");
  p.push_back(std::nullopt);
  co_return co_await update(ctx, std::move(p), "plan.archived");
}

// ------------------------------------------------------------------------------ commands

int plan_command(const char* name, const std::string& url,
                 const std::function<void(db::BlockingConnection&)>& run) {
  try {
    db::BlockingConnection conn(url, name);
    run(conn);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hsea %s: %s\n", name, e.what());
    return 1;
  }
}

void print_plans(const db::Result& r) {
  for (int i = 0; i < r.rows(); ++i) {
    std::printf("%-12s %-9s %-20s %s %8lld/month %9lld/year  limits %s  features %s\n",
                r.text(i, "id").c_str(), r.text(i, "status").c_str(), r.text(i, "name").c_str(),
                r.text(i, "currency").c_str(),
                static_cast<long long>(r.get_int(i, "monthly_amount")),
                static_cast<long long>(r.get_int(i, "yearly_amount")), r.text(i, "limits").c_str(),
                r.text(i, "features").c_str());
  }
}

// The Stripe product and prices of every paid plan: created when missing, the product updated,
// a new price when the amount or currency changed (Stripe's prices are immutable). Keys are
// derived from what is created, so a rerun after a failure creates nothing twice.
void sync_plans(db::BlockingConnection& conn) {
  if (state().settings.stripe_secret_key.empty()) {
    throw std::runtime_error("billing not configured: set HSEA_STRIPE_SECRET_KEY");
  }
  db::Result r = conn.exec(kAllPlans, {});
  for (int i = 0; i < r.rows(); ++i) {
    std::string id = r.text(i, "id");
    std::int64_t month = r.get_int(i, "monthly_amount"), year = r.get_int(i, "yearly_amount");
    if (month == 0 && year == 0) continue;  // free: nothing to sell
    std::string currency = r.text(i, "currency");
    object product{{"name", r.text(i, "name")},
                   {"active", r.text(i, "status") == "active"},
                   {"metadata", object{{"hsea_plan", id}}}};
    if (!r.text(i, "description").empty()) product["description"] = r.text(i, "description");
    std::string product_id = r.text(i, "stripe_product_id");
    std::string key =
        "hsea-plan-" + id + "-" + core::sha256_hex(form_encode(product)).substr(0, 16);
    StripeReply p = product_id.empty()
                        ? stripe_blocking("POST", "/v1/products", product, key + "-create")
                        : stripe_blocking("POST", "/v1/products/" + product_id, product, key);
    if (!p.ok()) throw std::runtime_error("plan " + id + ": product: " + p.error_message());
    product_id = std::string(p.body.at("id").as_string());
    std::string prices[2] = {r.text(i, "stripe_monthly_price_id"),
                             r.text(i, "stripe_yearly_price_id")};
    const char* intervals[2] = {"month", "year"};
    std::int64_t amounts[2] = {month, year};
    for (int k = 0; k < 2; ++k) {
      if (!prices[k].empty()) {
        StripeReply existing = stripe_blocking("GET", "/v1/prices/" + prices[k], {}, "");
        const auto& b = existing.body;
        if (existing.ok() && b.contains("unit_amount") && b.at("unit_amount").is_int64() &&
            b.at("unit_amount").as_int64() == amounts[k] && b.contains("currency") &&
            b.at("currency").as_string() == currency) {
          continue;
        }
      }
      std::string lookup = "hsea_" + id + "_" + intervals[k];
      object price{{"product", product_id},
                   {"currency", currency},
                   {"unit_amount", amounts[k]},
                   {"recurring", object{{"interval", intervals[k]}}},
                   {"lookup_key", lookup},
                   {"transfer_lookup_key", true},
                   {"metadata", object{{"hsea_plan", id}, {"interval", intervals[k]}}}};
      std::string price_key = "hsea-price-" + id + "-" + intervals[k] + "-" + currency + "-" +
                              std::to_string(amounts[k]);
      StripeReply made = stripe_blocking("POST", "/v1/prices", price, price_key);
      if (!made.ok()) {
        throw std::runtime_error("plan " + id + ": " + intervals[k] +
                                 " price: " + made.error_message());
      }
      prices[k] = std::string(made.body.at("id").as_string());
    }
    conn.exec(kSetStripeIds, db::params(id, product_id, prices[0], prices[1]));
    sync_metered_prices(conn, id, product_id, currency);
    std::printf("%-12s product %s  month %s  year %s\n", id.c_str(), product_id.c_str(),
                prices[0].c_str(), prices[1].c_str());
  }
}

void register_commands(runtime::Registrar& reg) {
  const std::string* admin_url = &reg.settings(db::settings_section()).database_admin_url;
  reg.command({.path = {"plans", "list"},
               .help = "list every plan (active and archived)",
               .run = [admin_url](const core::Config&) {
                 return plan_command("plans list", *admin_url, [](db::BlockingConnection& conn) {
                   print_plans(conn.exec(kAllPlans, {}));
                 });
               }});
  // create and update take the same options; create needs id, name and both prices.
  for (const char* verb : {"create", "update"}) {
    bool create = std::string_view(verb) == "create";
    runtime::CommandOption id{.name = "id", .help = "the plan's id (lower case)", .required = true};
    std::vector<runtime::CommandOption> options{id};
    for (const char* name :
         {"--name", "--description", "--currency", "--monthly-amount", "--yearly-amount",
          "--features", "--limits", "--sort-order", "--metered"}) {
      options.push_back(
          {.name = name,
           .help = std::string_view(name) == "--features" ? "a JSON object of booleans"
                   : std::string_view(name) == "--limits" ? "a JSON object of non-negative integers"
                   : std::string_view(name) == "--metered"
                       ? "a JSON object {meter: {\"unit_amount_decimal\": \"0.1\"}}: the meters "
                         "Stripe bills by usage past the limit"
                       : "the plan's value"});
    }
    reg.command({.path = {"plans", verb},
                 .help = create ? "create a plan" : "change a plan's fields",
                 .options = options,
                 .run = [options, create, admin_url](const core::Config&) {
                   std::string name = std::string("plans ") + (create ? "create" : "update");
                   return plan_command(name.c_str(), *admin_url, [&](db::BlockingConnection& conn) {
                     object body;
                     const char* keys[] = {"name",           "description",   "currency",
                                           "monthly_amount", "yearly_amount", "features",
                                           "limits",         "sort_order",    "metered"};
                     for (std::size_t k = 0; k < 9; ++k) {
                       const std::string& v = *options[k + 1].value;
                       if (v.empty()) continue;
                       if (k >= 3) {
                         boost::system::error_code ec;
                         value parsed = boost::json::parse(v, ec);
                         if (ec) throw std::runtime_error(std::string(keys[k]) + ": not JSON");
                         body[keys[k]] = parsed;
                       } else {
                         body[keys[k]] = v;
                       }
                     }
                     db::Params p;
                     try {
                       p = plan_params(body);
                     } catch (const ApiError& e) {
                       throw std::runtime_error(e.errors().empty() ? std::string(e.detail())
                                                                   : e.errors()[0].field + " " +
                                                                         e.errors()[0].message);
                     }
                     std::string plan = *options[0].value;
                     db::Params params{plan};
                     if (create) {
                       if (!p[0] || !p[3] || !p[4]) {
                         throw std::runtime_error(
                             "--name, --monthly-amount and --yearly-amount are needed");
                       }
                       params.insert(params.end(), p.begin(), p.begin() + 8);
                       params.push_back(p[9]);
                     } else {
                       params.insert(params.end(), p.begin(), p.end());
                     }
                     const db::Query& q = create ? kInsertPlan : kUpdatePlan;
                     db::Result r = conn.exec(q, params);
                     if (r.empty())
                       throw std::runtime_error(create ? "the plan exists" : "no such plan");
                     print_plans(r);
                   });
                 }});
  }
  runtime::CommandOption archived{.name = "id", .help = "the plan's id", .required = true};
  reg.command({.path = {"plans", "archive"},
               .help = "archive a plan (no new subscriptions; current ones keep it)",
               .options = {archived},
               .run = [id = archived.value, admin_url](const core::Config&) {
                 return plan_command(
                     "plans archive", *admin_url, [&](db::BlockingConnection& conn) {
                       if (*id == "free")
                         throw std::runtime_error("the free plan cannot be archived");
                       db::Params p{*id};
                       for (int k = 0; k < 8; ++k) p.push_back(std::nullopt);
                       p.push_back("archived");
                       p.push_back(std::nullopt);  // metered unchanged
                       db::Result r = conn.exec(kUpdatePlan, p);
                       if (r.empty()) throw std::runtime_error("no such plan");
                       print_plans(r);
                     });
               }});
  reg.command({.path = {"billing", "sync-plans"},
               .help = "create or update each paid plan's Stripe product and prices, store ids",
               .run = [admin_url](const core::Config&) {
                 return plan_command("billing sync-plans", *admin_url, sync_plans);
               }});
}

}  // namespace

void register_plans(runtime::Registrar& reg) {
  using http::Method;
  // Unmetered: a tenant past its quota can still see the plans to upgrade to.
  reg.route({.method = Method::kGet,
             .path = "/api/plans",
             .handler = list_plans,
             .policies = http::Policies(metering::Unmetered{})});
  // The operator API: platform staff only (identity's authorization answers 401 without a
  // credential, 403 for anyone else), as the rate-limit admin routes.
  const identity::Access staff{.authenticated = true, .staff = true};
  reg.route({.method = Method::kGet,
             .path = "/api/admin/plans",
             .handler = admin_list_plans,
             .policies = http::Policies(staff)});
  reg.route({.method = Method::kPost,
             .path = "/api/admin/plans",
             .handler = admin_create_plan,
             .policies = http::Policies(staff, security::Body{"PlanCreateRequest"})});
  reg.route({.method = Method::kPatch,
             .path = "/api/admin/plans/{id}",
             .handler = admin_update_plan,
             .policies = http::Policies(staff, security::Body{"PlanUpdateRequest"})});
  reg.route({.method = Method::kPost,
             .path = "/api/admin/plans/{id}/archive",
             .handler = admin_archive_plan,
             .policies = http::Policies(staff)});
  register_commands(reg);
}

}  // namespace hsea::billing
