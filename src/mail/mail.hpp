#pragma once
// E-mail (HSEA-012, HSEA-064). A message is rendered from a template (templates.hpp) with its
// tenant's branding and stored in the outbox table mail_messages in the transaction of its
// cause, together with the job that delivers it over SMTP ("mail.deliver"): a change that rolls
// back sends nothing, and one that commits is never without its mail.
//   co_await mail::send(tx, mail::message("welcome", email, name, data));
// Without HSEA_SMTP_URL messages are stored unsent ('stored') for GET /api/dev/mail.
#include <boost/asio/awaitable.hpp>

#include <string>

#include "db/db.hpp"

namespace hsea::runtime {
class Registrar;
}

namespace hsea::mail {

struct Message {
  std::string template_name;  // one of templates()
  std::string to_address;
  std::string to_name;
  // A JSON object: the template's data. `recipient` ({name, email}) and `tenant` ({name, slug})
  // are filled in when absent; `brand` is always the tenant's branding.
  std::string data = "{}";
  // A platform message belongs to no tenant (mail_messages.tenant_id NULL): the default
  // branding (HSEA_MAIL_*), `tenant` is the product. For mail about a person rather than a
  // tenant, e.g. a password reset of someone in several tenants or none. No tenant ever sees
  // it; it is sent whatever the transaction's scope.
  bool platform = false;
  // The recipient's account. Required for a platform message: it is sealed under that user's
  // data key (HSEA-047; a tenant's message under the tenant's).
  std::string user_id;
};
// Build Message values with this, not as braced temporaries inside co_await (g++ 12).
inline Message message(std::string template_name, std::string to_address, std::string to_name,
                       std::string data = "{}") {
  Message m;
  m.template_name = std::move(template_name);
  m.to_address = std::move(to_address);
  m.to_name = std::move(to_name);
  m.data = std::move(data);
  return m;
}

// Renders and stores the message in the transaction's tenant (or, for a platform message, in
// none) and enqueues its delivery there. The recipient and the rendered parts are stored sealed
// (docs/encryption.md); the delivery job opens them.
// Returns the message's id. Throws std::invalid_argument for an unknown template or a bad
// address, std::logic_error for a platform message without user_id.
boost::asio::awaitable<std::string> send(db::Transaction& tx, Message message);

// The mail module: settings (HSEA_SMTP_*, HSEA_MAIL_*), the job kinds mail.deliver and
// mail.welcome (on tenant.created), branding, template preview and development routes, metrics.
void Register(runtime::Registrar& registrar);

}  // namespace hsea::mail
