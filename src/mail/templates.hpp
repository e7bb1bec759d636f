#pragma once
// E-mail templates: mustache (mstch) files compiled into the binary (templates/mail/), each
// NAME with NAME.subject, NAME.html and NAME.txt; files starting with "_" are partials
// ("{{> _header.html}}"). The HTML part HTML-escapes {{ }}; the subject and the text part do
// not escape. Every template sees `brand` (the tenant's branding) beside its own data.
#include <string>
#include <string_view>
#include <vector>

namespace hsea::mail {

struct Branding {
  std::string product_name;
  std::string logo_url;       // https, or "" for none
  std::string primary_color;  // #rrggbb
  std::string footer;
};

struct Rendered {
  std::string subject;  // one line
  std::string html;
  std::string text;
};

struct TemplateInfo {
  std::string name;
  std::string description;
  std::string sample;  // JSON object: data the preview renders with
  // Sent only as platform mail (to platform staff, branded as the product): not among a
  // tenant's templates, whose branding it never carries.
  bool platform_only = false;
};

// The templates, in a fixed order.
const std::vector<TemplateInfo>& templates();
const TemplateInfo* find_template(std::string_view name);

// Renders template `name` with `data` (a JSON object) and `brand`. Throws std::invalid_argument
// for an unknown template or data that is not a JSON object.
Rendered render(std::string_view name, const Branding& brand, std::string_view data);

// The HTML escape of the HTML part (& < > " ' and `).
std::string html_escape(std::string_view text);

}  // namespace hsea::mail
