#include "mail/templates.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <mstch/mstch.hpp>

#include <map>
#include <mutex>
#include <stdexcept>

#include "core/embedded.hpp"

namespace hsea::mail {
namespace {

// mstch has one process-wide escape function; it asks this thread which part it renders.
thread_local bool t_escape_html = true;

struct Files {
  std::map<std::string, std::string, std::less<>> templates;  // "welcome.html" -> text
  std::map<std::string, std::string> partials;                // "_header.html" -> text
};

const Files& files() {
  static const Files kFiles = [] {
    Files f;
    for (const embedded::File& file : embedded::mail_templates()) {
      std::string name(file.name);
      constexpr std::string_view kExt = ".mustache";
      if (!name.ends_with(kExt)) continue;
      name.resize(name.size() - kExt.size());
      std::string text(file.text);
      if (name.starts_with('_')) {
        f.partials.emplace(name, text);
      } else {
        f.templates.emplace(name, text);
      }
    }
    return f;
  }();
  return kFiles;
}

const std::string& file(std::string_view name, std::string_view part) {
  std::string key = std::string(name) + "." + std::string(part);
  auto it = files().templates.find(key);
  if (it == files().templates.end()) throw std::logic_error("missing e-mail template " + key);
  return it->second;
}

mstch::node to_node(const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::object: {
      mstch::map m;
      for (const auto& [key, value] : v.get_object()) m.emplace(std::string(key), to_node(value));
      return m;
    }
    case boost::json::kind::array: {
      mstch::array a;
      for (const auto& item : v.get_array()) a.push_back(to_node(item));
      return a;
    }
    case boost::json::kind::string:
      return std::string(v.get_string());
    case boost::json::kind::bool_:
      return v.get_bool();
    case boost::json::kind::int64:
      return std::to_string(v.get_int64());
    case boost::json::kind::uint64:
      return std::to_string(v.get_uint64());
    case boost::json::kind::double_:
      return std::to_string(v.get_double());
    case boost::json::kind::null:
      break;
  }
  return nullptr;
}

std::string render_part(const std::string& tmpl, const mstch::map& context, bool html) {
  static std::once_flag once;
  std::call_once(once, [] {
    mstch::config::escape = [](const std::string& s) { return t_escape_html ? html_escape(s) : s; };
  });
  struct Restore {
    ~Restore() { t_escape_html = true; }  // also when rendering throws
  } restore;
  t_escape_html = html;
  return mstch::render(tmpl, context, files().partials);
}

std::string one_line(std::string s) {
  for (char& c : s) {
    if (c == '\r' || c == '\n' || c == '\t') c = ' ';
  }
  std::size_t begin = s.find_first_not_of(' ');
  std::size_t end = s.find_last_not_of(' ');
  return begin == std::string::npos ? "" : s.substr(begin, end - begin + 1);
}

}  // namespace

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      case '`':
        out += "&#96;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

const std::vector<TemplateInfo>& templates() {
  static const std::vector<TemplateInfo> kTemplates = {
      {"welcome", "Sent to the owner when a tenant signs up.",
       R"({"recipient":{"name":"Ada Lovelace","email":"ada@example.com"},)"
       R"("link":"https://app.example.com/","button":"Get started"})"},
      {"email_verification", "Asks a user to confirm their e-mail address.",
       R"({"recipient":{"name":"Ada Lovelace","email":"ada@example.com"},)"
       R"("link":"https://app.example.com/verify-email?token=sample","button":"Confirm my address",)"
       R"("expires_hours":"48"})"},
      {"password_reset", "A link to choose a new password.",
       R"({"recipient":{"name":"Ada Lovelace","email":"ada@example.com"},)"
       R"("link":"https://app.example.com/reset-password?token=sample","button":"Choose a new password",)"
       R"("expires_minutes":"60"})"},
      {"email_change", "Asks a user to confirm the new address they asked to sign in with.",
       R"({"recipient":{"name":"Ada Lovelace","email":"ada@new.example.com"},)"
       R"("old_email":"ada@example.com","link":"https://app.example.com/confirm-email?token=)"
       R"(sample","button":"Confirm my new address","expires_hours":"24"})"},
      {"email_change_notice", "Tells the old address that a change of address was asked for.",
       R"({"recipient":{"name":"Ada Lovelace","email":"ada@example.com"},)"
       R"("new_email":"ada@new.example.com","link":"https://app.example.com/reset-password",)"
       R"("button":"Secure my account"})"},
      {"password_changed", "Tells a user their password was changed.",
       R"({"recipient":{"name":"Ada Lovelace","email":"ada@example.com"},)"
       R"("how":"from a signed-in session","link":"https://app.example.com/reset-password",)"
       R"("button":"Reset my password"})"},
      {"invitation", "Invites someone to join the tenant.",
       R"({"recipient":{"name":"","email":"grace@example.com"},)"
       R"("inviter":{"name":"Ada Lovelace","email":"ada@example.com"},"role":"admin",)"
       R"("link":"https://app.example.com/invitations/sample","button":"Accept the invitation",)"
       R"("expires_days":"7"})"},
      {"invoice", "An invoice of the tenant's subscription.",
       R"({"recipient":{"name":"Ada Lovelace","email":"ada@example.com"},)"
       R"("invoice":{"number":"INV-2026-0042","period":"November 2026","total":"€49.00",)"
       R"("paid":true,"paid_on":"1 November 2026","due_on":"15 November 2026",)"
       R"("lines":[{"description":"Team plan","amount":"€39.00"},)"
       R"({"description":"API requests over the included 1 000 000","amount":"€10.00"}]},)"
       R"("link":"https://app.example.com/billing/invoices/sample","button":"View the invoice"})"},
      {"payment_failed", "A subscription payment failed; the next attempt's date.",
       R"({"recipient":{"name":"Ada Lovelace","email":"ada@example.com"},"amount":"€49.00",)"
       R"("reason":"the card was declined","retry_on":"4 November 2026",)"
       R"("link":"https://app.example.com/billing","button":"Update the payment method"})"},
      {"usage_warning", "The tenant is close to a plan limit.",
       R"({"recipient":{"name":"Ada Lovelace","email":"ada@example.com"},)"
       R"("meter":"API requests","used":"800 000","limit":"1 000 000","percent":"80",)"
       R"("period_ends_on":"30 November 2026","link":"https://app.example.com/account/usage",)"
       R"("button":"See your usage"})"},
      {"trial_ended", "A trial ended without a paid subscription: the tenant is on the free plan.",
       R"({"recipient":{"name":"Ada Lovelace","email":"ada@example.com"},"plan":"Pro",)"
       R"("trial_end":"2026-11-14","link":"https://app.example.com/account/billing",)"
       R"("button":"Choose a plan"})"},
      {"webhook_disabled", "To owners and admins: a failing webhook endpoint was turned off.",
       R"({"recipient":{"name":"Ada Lovelace","email":"ada@example.com"},)"
       R"("endpoint":{"url":"https://hooks.example.com/hsea","failing_since":)"
       R"("2026-11-29T08:00:00Z","reason":"every delivery failed for 5 days"},)"
       R"("link":"https://app.example.com/","button":"Open the webhook settings"})"},
      {"rate_limit_alert",
       "To platform staff: a tenant was rate limited above the alert threshold (once an hour).",
       R"({"recipient":{"name":"Ada Lovelace","email":"ada@example.com"},)"
       R"("alerted":{"id":"01a24b86-9239-73a8-9269-127b1bd5e530","name":"Acme","slug":"acme"},)"
       R"("limited":1520,"threshold":1000,"rules":[{"rule":"api","key":"tenant","limited":1520}],)"
       R"("link":"https://app.example.com/api/admin/rate-limits/report","button":"Open the report"})",
       true},
  };
  return kTemplates;
}

const TemplateInfo* find_template(std::string_view name) {
  for (const TemplateInfo& t : templates()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Rendered render(std::string_view name, const Branding& brand, std::string_view data) {
  if (find_template(name) == nullptr) {
    throw std::invalid_argument("unknown e-mail template " + std::string(name));
  }
  boost::json::value parsed = boost::json::parse(data);
  if (!parsed.is_object()) throw std::invalid_argument("e-mail data must be a JSON object");
  mstch::node node = to_node(parsed);
  mstch::map context = std::move(boost::get<mstch::map>(node));
  context["brand"] = mstch::map{{"product_name", brand.product_name},
                                {"logo_url", brand.logo_url},
                                {"primary_color", brand.primary_color},
                                {"footer", brand.footer}};
  Rendered out;
  out.subject = one_line(render_part(file(name, "subject"), context, false));
  context["subject"] = out.subject;
  out.html = render_part(file(name, "html"), context, true);
  out.text = render_part(file(name, "txt"), context, false);
  return out;
}

}  // namespace hsea::mail
