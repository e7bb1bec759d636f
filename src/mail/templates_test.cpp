// E-mail templates: every template renders with its sample data, branding and escaping.
#include <gtest/gtest.h>

#include "mail/templates.hpp"

namespace hsea::mail {
namespace {

Branding brand() {
  return Branding{"Acme & Co", "https://cdn.example.com/logo.png", "#ff6600", "Acme Inc., 1 Road"};
}

TEST(MailTemplates, EveryTemplateRendersItsSampleWithTheBranding) {
  ASSERT_EQ(templates().size(), 13u);  // with rate_limit_alert
  for (const TemplateInfo& t : templates()) {
    SCOPED_TRACE(t.name);
    std::string data = t.sample;
    data.insert(1, R"("tenant":{"name":"Globex","slug":"globex"},)");
    Rendered r = render(t.name, brand(), data);
    EXPECT_FALSE(r.subject.empty());
    EXPECT_EQ(r.subject.find('\n'), std::string::npos);
    EXPECT_NE(r.html.find("#ff6600"), std::string::npos);
    EXPECT_NE(r.html.find("https://cdn.example.com/logo.png"), std::string::npos);
    EXPECT_NE(r.html.find("Acme &amp; Co"), std::string::npos);
    EXPECT_NE(r.text.find("Acme & Co"), std::string::npos);
    EXPECT_NE(r.text.find("Acme Inc., 1 Road"), std::string::npos);
    EXPECT_EQ(r.text.find("{{"), std::string::npos);
    EXPECT_EQ(r.html.find("{{"), std::string::npos);
  }
}

TEST(MailTemplates, HtmlIsEscapedInTheHtmlPartOnly) {
  std::string data =
      R"({"recipient":{"name":"<b>Eve</b> & \"co\"","email":"e@example.com"},)"
      R"("tenant":{"name":"O'Brien <script>"},"link":"https://x.example/","button":"Go"})";
  Rendered r = render("welcome", brand(), data);
  EXPECT_EQ(r.html.find("<b>Eve</b>"), std::string::npos);
  EXPECT_EQ(r.html.find("<script>"), std::string::npos);
  EXPECT_NE(r.html.find("&lt;b&gt;Eve&lt;/b&gt; &amp; &quot;co&quot;"), std::string::npos);
  EXPECT_NE(r.html.find("O&#39;Brien &lt;script&gt;"), std::string::npos);
  EXPECT_NE(r.text.find("<b>Eve</b> & \"co\""), std::string::npos);
  EXPECT_NE(r.text.find("O'Brien <script>"), std::string::npos);
  EXPECT_EQ(r.subject, "Welcome to Acme & Co, <b>Eve</b> & \"co\"");
}

TEST(MailTemplates, WithoutALogoTheProductNameIsShown) {
  Branding b = brand();
  b.logo_url = "";
  b.footer = "";
  Rendered r = render("welcome", b, R"({"recipient":{"name":"A"},"tenant":{"name":"T"}})");
  EXPECT_EQ(r.html.find("<img"), std::string::npos);
  EXPECT_NE(r.html.find("<strong style=\"font-size:18px;color:#ff6600\">Acme &amp; Co</strong>"),
            std::string::npos);
}

// A meter billed per use beyond the plan's amount is charged, not refused: its warning says so.
TEST(MailTemplates, TheUsageWarningSaysWhetherUsePastTheLimitIsRefusedOrBilled) {
  auto warning = [](bool billed) {
    return render("usage_warning", brand(),
                  std::string(R"({"recipient":{"name":"A"},"tenant":{"name":"T"},)") +
                      R"("meter":"api_calls","used":80,"limit":100,"percent":80,)" +
                      R"("period_ends_on":"2026-12-31","link":"https://x.example/account/usage",)" +
                      R"("button":"See your usage","billed":)" + (billed ? "true" : "false") + "}");
  };
  Rendered refused = warning(false), billed = warning(true);
  EXPECT_NE(refused.text.find("further use is refused"), std::string::npos);
  EXPECT_EQ(refused.text.find("billed per use"), std::string::npos);
  EXPECT_NE(billed.text.find("further use is billed per use"), std::string::npos);
  EXPECT_EQ(billed.text.find("refused"), std::string::npos);
  EXPECT_NE(billed.html.find("billed per use"), std::string::npos);
  EXPECT_EQ(billed.html.find("refused"), std::string::npos);
}

TEST(MailTemplates, TheOperatorsAlertNamesTheTenantAndEachRule) {
  const TemplateInfo* alert = find_template("rate_limit_alert");
  ASSERT_NE(alert, nullptr);
  EXPECT_TRUE(alert->platform_only);
  Rendered r = render("rate_limit_alert", brand(), alert->sample);
  EXPECT_EQ(r.subject, "Rate limits: Acme was refused 1520 requests");
  EXPECT_NE(r.text.find("api per tenant: 1520 refused"), std::string::npos) << r.text;
  EXPECT_NE(r.html.find("<li>api per tenant: 1520 refused</li>"), std::string::npos) << r.html;
  EXPECT_NE(r.text.find("https://app.example.com/api/admin/rate-limits/report"), std::string::npos);
}

TEST(MailTemplates, UnknownTemplatesAndBadDataAreRefused) {
  EXPECT_THROW(render("nope", brand(), "{}"), std::invalid_argument);
  EXPECT_THROW(render("welcome", brand(), "[]"), std::invalid_argument);
  EXPECT_EQ(find_template("../welcome"), nullptr);
}

}  // namespace
}  // namespace hsea::mail
