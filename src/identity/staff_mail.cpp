// Mail to the operator (HSEA-035's alert): the `staff.notify` job mails every platform staff
// member a platform message (branded as the product, sealed under the member's own key).
// Modules below identity enqueue it by name, in the transaction of the cause:
//   jobs::job("staff.notify", {"template": "rate_limit_alert", "data": {...}})
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <stdexcept>

#include "core/log.hpp"
#include "db/db.hpp"
#include "identity/module.hpp"
#include "identity/user_pii.hpp"
#include "jobs/jobs.hpp"
#include "mail/mail.hpp"
#include "runtime/registrar.hpp"

namespace hsea::identity {
namespace {

using boost::asio::awaitable;

// Across users (SECURITY DEFINER, migrations/0029): the staff's ids and sealed addresses.
HSEA_QUERY kStaffContacts{"identity_staff_contacts",
                          "SELECT user_id, email, name FROM platform_staff_contacts()"};

awaitable<void> notify_staff(jobs::JobContext& job) {
  const boost::json::object& payload = job.payload();
  const boost::json::value* template_name = payload.if_contains("template");
  const boost::json::value* data = payload.if_contains("data");
  if (template_name == nullptr || !template_name->is_string() || data == nullptr ||
      !data->is_object()) {
    throw std::invalid_argument("staff.notify needs a template and a data object");
  }
  db::Transaction* tx = co_await job.transaction();
  db::Result staff = co_await tx->exec(kStaffContacts);
  std::vector<UserText> to = co_await open_users(staff, tx);
  std::string text = boost::json::serialize(*data);
  int sent = 0;
  for (std::size_t i = 0; i < to.size(); ++i) {
    if (to[i].email.empty()) continue;  // a user whose key is gone
    mail::Message m =
        mail::message(std::string(template_name->as_string()), to[i].email, to[i].name, text);
    m.platform = true;
    m.user_id = staff.text(static_cast<int>(i), "user_id");
    co_await mail::send(*tx, std::move(m));
    ++sent;
  }
  if (sent == 0) {
    log::warn("no platform staff to notify", {{"template", std::string(template_name->as_string())},
                                              {"tenant_id", job.tenant_id()}});
  }
}

}  // namespace

void register_staff_mail(runtime::Registrar& reg) {
  jobs::define(reg, {.kind = "staff.notify", .run = notify_staff});
}

}  // namespace hsea::identity
