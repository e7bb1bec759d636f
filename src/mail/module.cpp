// The mail module: settings, mail::send (render, store, enqueue), the delivery and welcome
// jobs, branding, template preview and development routes, metrics.
#include <fmt/format.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <array>
#include <atomic>
#include <regex>
#include <stdexcept>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/settings.hpp"
#include "db/db.hpp"
#include "http/json.hpp"
#include "http/page.hpp"
#include "identity/access.hpp"
#include "jobs/jobs.hpp"
#include "mail/mail.hpp"
#include "mail/mime.hpp"
#include "mail/smtp.hpp"
#include "mail/templates.hpp"
#include "runtime/registrar.hpp"
#include "security/audit.hpp"
#include "security/pii.hpp"
#include "security/policies.hpp"

namespace hsea::mail {
namespace {

using boost::asio::awaitable;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

constexpr int kDeliveryAttempts = 20;  // 5 s doubling to 1 h: about 12 hours of retries

HSEA_QUERY kTenantBranding{
    "mail_tenant_branding",
    "SELECT t.id::text AS tenant_id, t.name AS tenant_name, t.slug, b.product_name, b.logo_url, "
    "b.primary_color, b.footer FROM tenants t LEFT JOIN tenant_branding b ON b.tenant_id = t.id"};
HSEA_QUERY kInsertMessage{
    "mail_insert_message",
    "INSERT INTO mail_messages (tenant_id, id, template, from_name, from_address, to_name, "
    "to_address, subject, html, text, message_id, status) VALUES "
    "(current_setting('app.tenant_id')::uuid, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"};
HSEA_QUERY kLoadMessage{
    "mail_load_message",
    "SELECT from_name, from_address, to_name, to_address, subject, html, text, message_id, "
    "status, extract(epoch FROM created_at)::bigint AS date FROM mail_messages WHERE id = $1"};
// Platform messages (tenant_id NULL) only through these SECURITY DEFINER functions
// (migrations/0010_account_flows.sql): no tenant's policy matches their rows.
HSEA_QUERY kPlatformInsert{
    "mail_platform_insert",
    "SELECT mail_platform_insert($1, $12, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"};
HSEA_QUERY kPlatformLoad{"mail_platform_load", "SELECT * FROM mail_platform_message($1)"};
HSEA_QUERY kPlatformMarkSent{"mail_platform_mark_sent", "SELECT mail_platform_mark_sent($1)"};
HSEA_QUERY kPlatformRecordFailure{"mail_platform_record_failure",
                                  "SELECT mail_platform_record_failure($1, $2, $3)"};
HSEA_QUERY kMarkSent{"mail_mark_sent",
                     "UPDATE mail_messages SET status = 'sent', attempts = attempts + 1, "
                     "last_error = NULL, sent_at = now() WHERE id = $1"};
HSEA_QUERY kRecordFailure{
    "mail_record_failure",
    "UPDATE mail_messages SET attempts = attempts + 1, last_error = left($2, 2000), "
    "status = CASE WHEN $3::bool THEN 'failed' ELSE status END "
    "WHERE id = $1 AND status <> 'sent'"};
HSEA_QUERY kGetBranding{
    "mail_get_branding",
    "SELECT product_name, logo_url, primary_color, footer FROM tenant_branding"};
// Each field: $2n-1 the value ("" resets to the default), $2n whether the request set it.
HSEA_QUERY kSetBranding{
    "mail_set_branding",
    "INSERT INTO tenant_branding (tenant_id, product_name, logo_url, primary_color, footer) "
    "VALUES (current_setting('app.tenant_id')::uuid, CASE WHEN $2 THEN NULLIF($1, '') END, "
    "CASE WHEN $4 THEN NULLIF($3, '') END, CASE WHEN $6 THEN NULLIF($5, '') END, "
    "CASE WHEN $8 THEN NULLIF($7, '') END) "
    "ON CONFLICT (tenant_id) DO UPDATE SET "
    "product_name = CASE WHEN $2 THEN NULLIF($1, '') ELSE tenant_branding.product_name END, "
    "logo_url = CASE WHEN $4 THEN NULLIF($3, '') ELSE tenant_branding.logo_url END, "
    "primary_color = CASE WHEN $6 THEN NULLIF($5, '') ELSE tenant_branding.primary_color END, "
    "footer = CASE WHEN $8 THEN NULLIF($7, '') ELSE tenant_branding.footer END, "
    "updated_at = now() "
    "RETURNING product_name, logo_url, primary_color, footer"};
HSEA_QUERY kDevMessages{
    "mail_dev_messages",
    "SELECT id, template, to_name, to_address, subject, status, attempts, last_error, "
    "message_id, html, text, created_at, sent_at FROM mail_messages "
    "WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"};
HSEA_QUERY kOwner{"mail_owner", "SELECT email, name FROM users WHERE id = $1"};
HSEA_QUERY kAdmins{"mail_admins",
                   "SELECT u.email, u.name FROM memberships m JOIN users u ON u.id = m.user_id "
                   "WHERE m.role IN ('owner', 'admin') ORDER BY m.user_id"};

struct Settings {
  std::string smtp_url;
  bool starttls = false;
  int smtp_timeout_seconds = 30;
  std::string from = "no-reply@localhost";
  std::string product_name = "HSEA";
  std::string logo_url;
  std::string primary_color = "#2563eb";
  std::string footer;
};

std::optional<std::string> check_smtp_url(std::string& v) {
  if (v.empty() || v.starts_with("smtp://") || v.starts_with("smtps://")) return std::nullopt;
  return "must be an smtp:// or smtps:// URL (or empty: store mail without sending)";
}
std::optional<std::string> check_from(std::string& v) {
  if (valid_address(v)) return std::nullopt;
  return "must be an e-mail address (local@domain)";
}
bool valid_color(std::string& v) {
  static const std::regex kColor("^#[0-9a-fA-F]{6}$");
  if (!std::regex_match(v, kColor)) return false;
  for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return true;
}
std::optional<std::string> check_color(std::string& v) {
  if (valid_color(v)) return std::nullopt;
  return "must be a colour #rrggbb";
}
bool valid_logo(const std::string& v) {
  static const std::regex kHttps("^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\\s\"'<>\\\\]*)?$");
  return v.size() <= 2000 && std::regex_match(v, kHttps);
}
std::optional<std::string> check_logo(std::string& v) {
  if (v.empty() || valid_logo(v)) return std::nullopt;
  return "must be an https:// URL (or empty)";
}
std::optional<std::string> check_product(std::string& v) {
  if (!v.empty() && v.size() <= 100) return std::nullopt;
  return "must be 1 to 100 characters";
}
std::optional<std::string> check_footer(std::string& v) {
  if (v.size() <= 500) return std::nullopt;
  return "must be at most 500 characters";
}

const core::Section<Settings> kSettings{
    "mail",
    {core::string_setting(&Settings::smtp_url, "HSEA_SMTP_URL", "",
                          "SMTP server, smtp://[user:password@]host[:port] or smtps:// (implicit "
                          "TLS); unset: messages are stored unsent, read at GET /api/dev/mail",
                          check_smtp_url, core::Show::kUrl),
     core::bool_setting(&Settings::starttls, "HSEA_SMTP_STARTTLS", "false",
                        "require STARTTLS on an smtp:// server"),
     core::int_setting(&Settings::smtp_timeout_seconds, "HSEA_SMTP_TIMEOUT_SECONDS", "30", 1, 600,
                       "time one SMTP delivery may take before it fails (and is retried)"),
     core::string_setting(&Settings::from, "HSEA_MAIL_FROM", "no-reply@localhost",
                          "sender address of every e-mail (the display name is the tenant's "
                          "product name)",
                          check_from),
     core::string_setting(&Settings::product_name, "HSEA_MAIL_PRODUCT_NAME", "HSEA",
                          "product name in e-mails of tenants without their own branding",
                          check_product),
     core::string_setting(&Settings::logo_url, "HSEA_MAIL_LOGO_URL", "",
                          "default logo (https URL) in e-mails; empty: the product name",
                          check_logo),
     core::string_setting(&Settings::primary_color, "HSEA_MAIL_PRIMARY_COLOR", "#2563eb",
                          "default primary colour (#rrggbb) of e-mails", check_color),
     core::string_setting(&Settings::footer, "HSEA_MAIL_FOOTER", "",
                          "default footer text of e-mails (at most 500 characters)",
                          check_footer)}};

struct State {
  const Settings* settings = nullptr;
  std::string host;        // the right side of Message-IDs, from HSEA_PUBLIC_URL
  std::string public_url;  // links in e-mails
  bool development = false;
  std::atomic<long> sent{0};
  std::atomic<long> failed{0};
  std::atomic<long> stored{0};
};
State* g_state = nullptr;

State& state() {
  if (g_state == nullptr) throw std::logic_error("the mail module is not registered");
  return *g_state;
}

// "https://app.example.com:8443/x" -> "app.example.com".
std::string host_of(const std::string& url) {
  std::size_t start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  std::size_t end = url.find_first_of("/?#", start);
  std::string authority = url.substr(start, end == std::string::npos ? end : end - start);
  if (auto at = authority.rfind('@'); at != std::string::npos) authority.erase(0, at + 1);
  if (!authority.starts_with('[')) {
    if (auto colon = authority.rfind(':'); colon != std::string::npos) authority.resize(colon);
  } else if (auto close = authority.find(']'); close != std::string::npos) {
    authority.resize(close + 1);
  }
  return authority.empty() ? "localhost" : authority;
}

Branding branding_of(const db::Result& r, const Settings& s) {
  auto pick = [&](std::string_view column, const std::string& fallback) {
    if (r.empty() || r.is_null(0, r.column(column))) return fallback;
    return r.text(0, column);
  };
  return Branding{pick("product_name", s.product_name), pick("logo_url", s.logo_url),
                  pick("primary_color", s.primary_color), pick("footer", s.footer)};
}

object branding_json(const Branding& b) {
  return object{{"product_name", b.product_name},
                {"logo_url", b.logo_url},
                {"primary_color", b.primary_color},
                {"footer", b.footer}};
}

// ------------------------------------------------------------------------------ sealing

// The sealed columns of mail_messages (migration 0022): each its own purpose, so a value never
// opens in another column.
constexpr std::array<std::string_view, 5> kSealedColumns{"to_address", "to_name", "subject", "html",
                                                         "text"};

std::string purpose_of(std::string_view column) { return fmt::format("mail_messages.{}", column); }

// A message's personal parts in plain text.
struct Opened {
  std::string to_address, to_name, subject, html, text;
  bool readable = true;  // false when its key is gone (a purged tenant, a deleted recipient)
};

// Opens the messages of a result (one key look-up for all its rows, none when cached).
awaitable<std::vector<Opened>> open_messages(const db::Result& r) {
  std::vector<std::string> sealed;
  for (int i = 0; i < r.rows(); ++i) {
    for (std::string_view c : kSealedColumns) sealed.emplace_back(r.get(i, c));
  }
  co_await security::pii::load_keys(db::pool(), sealed);
  std::vector<Opened> out;
  for (int i = 0; i < r.rows(); ++i) {
    Opened o;
    std::string* fields[] = {&o.to_address, &o.to_name, &o.subject, &o.html, &o.text};
    for (std::size_t c = 0; c < kSealedColumns.size(); ++c) {
      auto plain = security::pii::open(purpose_of(kSealedColumns[c]), r.get(i, kSealedColumns[c]));
      if (!plain) o.readable = false;
      *fields[c] = plain.value_or("");
    }
    out.push_back(std::move(o));
  }
  co_return out;
}

// ------------------------------------------------------------------------------ delivery

awaitable<void> deliver(jobs::JobContext& job) {
  State& s = state();
  const auto* id_value = job.payload().if_contains("message_id");
  if (id_value == nullptr || !id_value->is_string()) co_return;  // nothing to deliver
  std::string id(id_value->as_string());
  const auto* platform_value = job.payload().if_contains("platform");
  bool platform =
      platform_value != nullptr && platform_value->is_bool() && platform_value->as_bool();
  // Read outside the job's transaction: no connection is held while SMTP talks.
  db::Result m;
  if (platform) {
    m = co_await db::pool().query(kPlatformLoad, db::params(id));
  } else {
    m = co_await db::pool().tenant_query(job.tenant_id(), kLoadMessage, db::params(id));
  }
  if (m.empty() || m.get(0, "status") == "sent") co_return;  // gone, or sent by an earlier run
  if (s.settings->smtp_url.empty()) {
    throw std::runtime_error("HSEA_SMTP_URL is not set on this node; the message waits");
  }
  Opened opened = (co_await open_messages(m)).at(0);
  if (!opened.readable) {
    // Its key was destroyed with its tenant or recipient: nobody is left to send it to. Failed
    // for good, not retried.
    const std::string why = "its data key is gone (tenant purged or recipient deleted)";
    log::warn("mail not delivered", {{"message", id}, {"error", why}});
    if (platform) {
      co_await db::pool().query(kPlatformRecordFailure, db::params(id, why, true));
    } else {
      co_await db::pool().tenant_query(job.tenant_id(), kRecordFailure, db::params(id, why, true));
    }
    co_return;
  }
  Envelope e;
  e.from_name = m.text(0, "from_name");
  e.from_address = m.text(0, "from_address");
  e.to_name = std::move(opened.to_name);
  e.to_address = std::move(opened.to_address);
  e.subject = std::move(opened.subject);
  e.message_id = m.text(0, "message_id");
  e.date = m.get_int(0, "date");
  e.text = std::move(opened.text);
  e.html = std::move(opened.html);
  SmtpOptions options{s.settings->smtp_url, s.settings->starttls, s.settings->smtp_timeout_seconds};
  auto work = [options, from = e.from_address, to = e.to_address, data = compose(e)] {
    smtp_send(options, from, to, data);
  };
  std::optional<std::string> error;
  try {
    co_await runtime::io_pool().run(std::move(work));
  } catch (const std::exception& ex) {
    error = ex.what();
  }
  if (error) {
    ++s.failed;
    bool last = job.attempt() >= kDeliveryAttempts;
    if (platform) {
      co_await db::pool().query(kPlatformRecordFailure, db::params(id, *error, last));
    } else {
      co_await db::pool().tenant_query(job.tenant_id(), kRecordFailure,
                                       db::params(id, *error, last));
    }
    log::warn("mail delivery failed",
              {{"message", id}, {"attempt", job.attempt()}, {"error", *error}});
    throw std::runtime_error(*error);
  }
  // Marked in the job's transaction: if the process dies before it commits, the job runs again
  // and sends the same message (same Message-ID) once more.
  db::Transaction* tx = co_await job.transaction();
  co_await tx->exec(platform ? kPlatformMarkSent : kMarkSent, db::params(id));
  ++s.sent;
}

struct Recipient {
  std::string address;
  std::string name;
};
// Users' addresses and names are sealed under each user's key (HSEA-047): opened here, with
// one key look-up for all the rows.
awaitable<std::vector<Recipient>> recipients(db::Transaction& tx, const db::Result& users) {
  std::vector<std::string> sealed;
  for (int i = 0; i < users.rows(); ++i) {
    sealed.emplace_back(users.get(i, "email"));
    sealed.emplace_back(users.get(i, "name"));
  }
  co_await security::pii::load_keys(tx, sealed);  // the job's transaction: no second connection
  std::vector<Recipient> out;
  for (int i = 0; i < users.rows(); ++i) {
    out.push_back(Recipient{security::pii::open("users.email", users.get(i, "email")).value_or(""),
                            security::pii::open("users.name", users.get(i, "name")).value_or("")});
  }
  co_return out;
}

// The welcome e-mail to the owner of a new tenant (event tenant.created).
awaitable<void> welcome(jobs::JobContext& job) {
  std::optional<jobs::Event> event = co_await jobs::event_of(job);
  if (!event) co_return;
  boost::json::value data = boost::json::parse(event->data);
  const auto* owner = data.as_object().if_contains("owner");
  if (owner == nullptr || !owner->is_string()) co_return;
  db::Transaction* tx = co_await job.transaction();
  // The job runs in the tenant's scope: users are visible to it as members of the tenant.
  db::Result user = co_await tx->exec(kOwner, db::params(std::string(owner->as_string())));
  if (user.empty()) co_return;  // the account is gone already
  std::string payload =
      boost::json::serialize(object{{"link", state().public_url}, {"button", "Get started"}});
  std::vector<Recipient> to = co_await recipients(*tx, user);
  Message welcome = message("welcome", to[0].address, to[0].name, payload);
  co_await send(*tx, std::move(welcome));
}

// To the tenant's owners and admins when a failing webhook endpoint was turned off (event
// webhook_endpoint.disabled, emitted by the webhooks module).
awaitable<void> webhook_disabled(jobs::JobContext& job) {
  std::optional<jobs::Event> event = co_await jobs::event_of(job);
  if (!event) co_return;
  boost::json::value endpoint = boost::json::parse(event->data);
  db::Transaction* tx = co_await job.transaction();
  db::Result admins = co_await tx->exec(kAdmins);
  std::string payload = boost::json::serialize(object{{"endpoint", endpoint},
                                                      {"link", state().public_url},
                                                      {"button", "Open the webhook settings"}});
  std::vector<Recipient> to = co_await recipients(*tx, admins);
  for (const Recipient& r : to) {
    Message notice = message("webhook_disabled", r.address, r.name, payload);
    co_await send(*tx, std::move(notice));
  }
}

// To the tenant's owners and admins, once per period, when a meter passed its soft quota
// threshold (event usage.limit_warning, emitted by the metering module).
awaitable<void> usage_warning(jobs::JobContext& job) {
  std::optional<jobs::Event> event = co_await jobs::event_of(job);
  if (!event) co_return;
  boost::json::object warning = boost::json::parse(event->data).as_object();
  std::string period_end(warning["period_end"].is_string() ? warning["period_end"].as_string()
                                                           : "");
  warning["limit"] = warning["quota"];
  warning["period_ends_on"] = period_end.substr(0, 10);
  warning["link"] = state().public_url + "/account/usage";
  warning["button"] = "See your usage";
  std::string payload = boost::json::serialize(warning);
  db::Transaction* tx = co_await job.transaction();
  db::Result admins = co_await tx->exec(kAdmins);
  std::vector<Recipient> to = co_await recipients(*tx, admins);
  for (const Recipient& r : to) {
    Message notice = message("usage_warning", r.address, r.name, payload);
    co_await send(*tx, std::move(notice));
  }
}

// -------------------------------------------------------------------------------- routes

awaitable<Response> get_branding(RequestContext& ctx) {
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kGetBranding);
  co_return http::json_response(200, branding_json(branding_of(r, *state().settings)));
}

awaitable<Response> patch_branding(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::vector<core::FieldError> errors;
  std::optional<std::string> product = http::optional_string(body, "product_name");
  std::optional<std::string> logo = http::optional_string(body, "logo_url");
  std::optional<std::string> color = http::optional_string(body, "primary_color");
  std::optional<std::string> footer = http::optional_string(body, "footer");
  // "" resets a field to the default; the schema bounds the lengths.
  if (product && product->size() > 100) errors.push_back({"/product_name", "is too long"});
  if (logo && !logo->empty() && !valid_logo(*logo)) {
    errors.push_back({"/logo_url", "must be an https:// URL"});
  }
  if (color && !color->empty() && !valid_color(*color)) {
    errors.push_back({"/primary_color", "must be a colour #rrggbb"});
  }
  if (footer && footer->size() > 500) errors.push_back({"/footer", "is too long"});
  if (!errors.empty()) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.", std::move(errors));
  }
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r = co_await tx.exec(
      kSetBranding,
      db::params(product.value_or(""), product.has_value(), logo.value_or(""), logo.has_value(),
                 color.value_or(""), color.has_value(), footer.value_or(""), footer.has_value()));
  std::string changes = boost::json::serialize(body);
  co_await security::record(tx, ctx,
                            security::event("branding.updated", "tenant", ctx.tenant_id, changes));
  co_await tx.commit();
  co_return http::json_response(200, branding_json(branding_of(r, *state().settings)));
}

awaitable<Response> list_templates(RequestContext&) {
  boost::json::array data;
  for (const TemplateInfo& t : templates()) {
    if (t.platform_only) continue;
    data.push_back(object{{"name", t.name}, {"description", t.description}});
  }
  co_return http::json_response(200, object{{"data", std::move(data)}});
}

awaitable<Response> preview_template(RequestContext& ctx) {
  const TemplateInfo* info = find_template(ctx.param("name"));
  if (info == nullptr || info->platform_only) {
    throw ApiError(ErrorCode::kNotFound, "No such template.");
  }
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kTenantBranding);
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such tenant.");
  boost::json::value data = boost::json::parse(info->sample);
  data.as_object()["tenant"] =
      object{{"name", r.text(0, "tenant_name")}, {"slug", r.text(0, "slug")}};
  Rendered out =
      render(info->name, branding_of(r, *state().settings), boost::json::serialize(data));
  co_return http::json_response(
      200,
      object{
          {"name", info->name}, {"subject", out.subject}, {"html", out.html}, {"text", out.text}});
}

awaitable<Response> dev_mail(RequestContext& ctx) {
  if (!state().development) throw ApiError(ErrorCode::kNotFound, "Not found.");
  http::Page page = http::page_of(ctx);
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kDevMessages,
                                                  db::params(page.starting_after, page.fetch()));
  std::vector<Opened> opened = co_await open_messages(r);
  boost::json::array data;
  for (int i = 0; i < r.rows(); ++i) {
    const Opened& o = opened[static_cast<std::size_t>(i)];
    data.push_back(object{{"id", r.get(i, "id")},
                          {"template", r.get(i, "template")},
                          {"to", mailbox(o.to_name, o.to_address)},
                          {"subject", o.subject},
                          {"status", r.get(i, "status")},
                          {"attempts", r.get_int(i, "attempts")},
                          {"last_error", r.nullable(i, "last_error")},
                          {"message_id", r.get(i, "message_id")},
                          {"created_at", r.time(i, "created_at")},
                          {"sent_at", r.nullable_time(i, "sent_at")},
                          {"html", o.html},
                          {"text", o.text}});
  }
  co_return http::json_response(200, http::page_json(std::move(data), page));
}

// The same messages as a page a developer opens in the browser (signed in with the cookie
// session): each message's HTML in a sandboxed frame, its text part below.
awaitable<Response> dev_mail_page(RequestContext& ctx) {
  if (!state().development) throw ApiError(ErrorCode::kNotFound, "Not found.");
  http::Page page = http::page_of(ctx);
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kDevMessages,
                                                  db::params(page.starting_after, page.fetch()));
  std::string body =
      "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Development "
      "mail</title></head><body style=\"font-family:sans-serif;max-width:60rem;margin:2rem "
      "auto\"><h1>Development mail</h1><p>Messages of this tenant, stored because no "
      "HSEA_SMTP_URL is set. JSON: <code>GET /api/dev/mail</code>.</p>";
  if (r.empty()) body += "<p>No messages yet.</p>";
  std::vector<Opened> opened = co_await open_messages(r);
  int shown = std::min(r.rows(), page.limit);
  for (int i = 0; i < shown; ++i) {
    const Opened& o = opened[static_cast<std::size_t>(i)];
    body += fmt::format(
        "<article><h2>{}</h2><p>To {} &middot; {} &middot; {} &middot; {}</p>"
        "<iframe sandbox title=\"HTML part\" style=\"width:100%;height:28rem;border:1px solid "
        "#ccc\" srcdoc=\"{}\"></iframe><details><summary>Text part</summary><pre>{}</pre>"
        "</details></article><hr>",
        html_escape(o.subject), html_escape(mailbox(o.to_name, o.to_address)),
        html_escape(r.get(i, "template")), html_escape(r.get(i, "status")),
        html_escape(r.time(i, "created_at")), html_escape(o.html), html_escape(o.text));
  }
  if (r.rows() > page.limit) {
    body += fmt::format("<p><a href=\"?starting_after={}\">Older messages</a></p>",
                        html_escape(r.get(page.limit - 1, "id")));
  }
  body += "</body></html>";
  Response response = Response::text(200, std::move(body), "text/html; charset=utf-8");
  // The messages' own inline styles and images, in a sandboxed frame; nothing runs.
  response.set_header("content-security-policy",
                      "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
                      "frame-ancestors 'none'; base-uri 'none'");
  co_return response;
}

void render_metrics(std::string& out) {
  State& s = state();
  fmt::format_to(std::back_inserter(out),
                 "# HELP hsea_mail_sent_total E-mails accepted by the SMTP server.\n"
                 "# TYPE hsea_mail_sent_total counter\n"
                 "hsea_mail_sent_total {}\n"
                 "# HELP hsea_mail_failed_total E-mail delivery attempts that failed.\n"
                 "# TYPE hsea_mail_failed_total counter\n"
                 "hsea_mail_failed_total {}\n"
                 "# HELP hsea_mail_stored_total E-mails stored unsent (no HSEA_SMTP_URL).\n"
                 "# TYPE hsea_mail_stored_total counter\n"
                 "hsea_mail_stored_total {}\n",
                 s.sent.load(), s.failed.load(), s.stored.load());
}

}  // namespace

awaitable<std::string> send(db::Transaction& tx, Message m) {
  State& s = state();
  if (!valid_address(m.to_address)) throw std::invalid_argument("bad e-mail address");
  if (m.platform && m.user_id.empty()) {
    throw std::logic_error("a platform message needs its recipient's user_id (its key seals it)");
  }
  db::Result t;
  if (!m.platform) {
    t = co_await tx.exec(kTenantBranding);
    if (t.empty()) throw std::logic_error("mail::send needs a transaction in a tenant's scope");
  }
  Branding brand = branding_of(t, *s.settings);  // no row: the defaults
  boost::json::value parsed = boost::json::parse(m.data);
  if (!parsed.is_object()) throw std::invalid_argument("e-mail data must be a JSON object");
  object& data = parsed.as_object();
  if (!data.contains("recipient")) {
    data["recipient"] = object{{"name", m.to_name}, {"email", m.to_address}};
  }
  if (!data.contains("tenant")) {
    data["tenant"] = m.platform
                         ? object{{"name", brand.product_name}, {"slug", ""}}
                         : object{{"name", t.text(0, "tenant_name")}, {"slug", t.text(0, "slug")}};
  }
  Rendered r = render(m.template_name, brand, boost::json::serialize(parsed));
  std::string id = core::uuid_v7();
  std::string message_id = "<" + id + "@" + s.host + ">";
  bool deliver = !s.settings->smtp_url.empty();
  // Sealed under the tenant's key, a platform message under its recipient's (HSEA-047).
  security::pii::Owner owner = m.platform ? security::pii::user_owner(m.user_id)
                                          : security::pii::tenant_owner(t.text(0, "tenant_id"));
  std::string to_address =
      co_await security::pii::seal(tx, owner, purpose_of("to_address"), m.to_address);
  std::string to_name = co_await security::pii::seal(tx, owner, purpose_of("to_name"), m.to_name);
  std::string subject = co_await security::pii::seal(tx, owner, purpose_of("subject"), r.subject);
  std::string html = co_await security::pii::seal(tx, owner, purpose_of("html"), r.html);
  std::string text = co_await security::pii::seal(tx, owner, purpose_of("text"), r.text);
  if (m.platform) {
    co_await tx.exec(
        kPlatformInsert,
        db::params(id, m.template_name, brand.product_name, s.settings->from, to_name, to_address,
                   subject, html, text, message_id, deliver ? "queued" : "stored", m.user_id));
  } else {
    co_await tx.exec(
        kInsertMessage,
        db::params(id, m.template_name, brand.product_name, s.settings->from, to_name, to_address,
                   subject, html, text, message_id, deliver ? "queued" : "stored"));
  }
  if (deliver) {
    // A platform message's job says so: it is found outside any tenant, whatever tenant the
    // transaction (and so the job) has.
    object payload{{"message_id", id}};
    if (m.platform) payload["platform"] = true;
    jobs::NewJob job = jobs::job("mail.deliver", boost::json::serialize(payload));
    co_await jobs::enqueue(tx, std::move(job));
  } else {
    ++s.stored;
    log::info("e-mail stored, not sent (no HSEA_SMTP_URL): read it at GET /api/dev/mail",
              {{"message", id}, {"template", m.template_name}});
  }
  co_return id;
}

void Register(runtime::Registrar& reg) {
  using http::Method;
  using http::Policies;
  using identity::Access;
  const Settings& settings = reg.settings(kSettings);
  g_state = &reg.process(std::make_unique<State>());
  g_state->settings = &settings;
  g_state->host = host_of(reg.config().public_url);
  g_state->public_url = reg.config().public_url;
  g_state->development = reg.config().development();

  // The outbox's personal parts, for `hsea keys rotate-data`: a tenant's messages under its
  // key, platform messages (no tenant) under their recipient's.
  for (std::string_view c : kSealedColumns) {
    security::pii::register_sealed_column({.table = "mail_messages",
                                           .id_column = "id",
                                           .column = std::string(c),
                                           .purpose = purpose_of(c),
                                           .owner_column = "tenant_id",
                                           .owner_is_tenant = true,
                                           .user_owner_column = "user_id"});
  }
  jobs::define(reg, {.kind = "mail.deliver",
                     .run = deliver,
                     .max_attempts = kDeliveryAttempts,
                     .timeout = std::chrono::seconds(settings.smtp_timeout_seconds + 30)});
  jobs::define(reg, {.kind = "mail.welcome", .run = welcome});
  jobs::subscribe(reg, {.kind = "mail.welcome", .types = {"tenant.created"}});
  jobs::define(reg, {.kind = "mail.webhook_disabled", .run = webhook_disabled});
  jobs::subscribe(reg, {.kind = "mail.webhook_disabled", .types = {"webhook_endpoint.disabled"}});
  jobs::define(reg, {.kind = "mail.usage_warning", .run = usage_warning});
  jobs::subscribe(reg, {.kind = "mail.usage_warning", .types = {"usage.limit_warning"}});

  const std::vector<std::string> admins{"owner", "admin"};
  reg.route(
      {.method = Method::kGet,
       .path = "/api/tenant/branding",
       .handler = get_branding,
       .policies = Policies(Access{
           .authenticated = true, .tenant = true, .roles = admins, .scopes = {"tenant:read"}})});
  reg.route(
      {.method = Method::kPatch,
       .path = "/api/tenant/branding",
       .handler = patch_branding,
       .policies = Policies(
           Access{
               .authenticated = true, .tenant = true, .roles = admins, .scopes = {"tenant:write"}},
           security::Body{"UpdateBrandingRequest"})});
  reg.route(
      {.method = Method::kGet,
       .path = "/api/email/templates",
       .handler = list_templates,
       .policies = Policies(Access{
           .authenticated = true, .tenant = true, .roles = admins, .scopes = {"tenant:read"}})});
  reg.route(
      {.method = Method::kGet,
       .path = "/api/email/templates/{name}/preview",
       .handler = preview_template,
       .policies = Policies(Access{
           .authenticated = true, .tenant = true, .roles = admins, .scopes = {"tenant:read"}})});
  // Development only (404 otherwise): the tenant's messages with their rendered parts.
  reg.route({.method = Method::kGet,
             .path = "/api/dev/mail",
             .handler = dev_mail,
             .policies = Policies(Access{.authenticated = true, .tenant = true, .roles = admins})});
  reg.route({.method = Method::kGet,
             .path = "/dev/mail",
             .handler = dev_mail_page,
             .policies = Policies(Access{.authenticated = true, .tenant = true, .roles = admins})});
  reg.metrics(render_metrics);
}

}  // namespace hsea::mail
