#include "identity/user_pii.hpp"

#include "db/db.hpp"
#include "security/pii.hpp"

namespace hsea::identity {

namespace pii = security::pii;

std::string email_index(std::string_view normalized_email) {
  return pii::blind_index("users.email", normalized_email);
}

boost::asio::awaitable<std::vector<UserText>> open_users(const db::Result& r, db::Transaction* tx) {
  std::vector<std::string> sealed;
  for (int i = 0; i < r.rows(); ++i) {
    sealed.emplace_back(r.get(i, "email"));
    sealed.emplace_back(r.get(i, "name"));
  }
  if (tx != nullptr) {
    co_await pii::load_keys(*tx, sealed);
  } else {
    co_await pii::load_keys(db::pool(), sealed);
  }
  std::vector<UserText> out;
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(UserText{pii::open("users.email", r.get(i, "email")).value_or(""),
                           pii::open("users.name", r.get(i, "name")).value_or("")});
  }
  co_return out;
}

boost::asio::awaitable<UserText> seal_user(db::Transaction& tx, std::string user_id,
                                           std::string email, std::string name) {
  pii::Owner owner = pii::user_owner(std::move(user_id));
  UserText out;
  out.email = co_await pii::seal(tx, owner, "users.email", email);
  out.name = co_await pii::seal(tx, owner, "users.name", name);
  co_return out;
}

}  // namespace hsea::identity
