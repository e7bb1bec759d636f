#pragma once
// A user's address and name are personal data, stored sealed under the user's own key
// (HSEA-047, docs/encryption.md); look-ups by address use users.email_index, the blind index of
// the normalised address. Every read of users.email / users.name opens them through here.
#include <boost/asio/awaitable.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace hsea::db {
class Transaction;
class Result;
}  // namespace hsea::db

namespace hsea::identity {

// users.email_index of a normalised (lower-case) address.
std::string email_index(std::string_view normalized_email);

struct UserText {
  std::string email;
  std::string name;
};
// The "email" and "name" columns of every row of `r`, opened (one key look-up at most for all
// the rows). A user whose key is gone shows "". Inside a transaction, pass it: the keys are
// read through it rather than through a second connection.
boost::asio::awaitable<std::vector<UserText>> open_users(const db::Result& r,
                                                         db::Transaction* tx = nullptr);
// The address and name sealed under the user's key, inside the transaction that writes them
// (which may be the one creating the user).
boost::asio::awaitable<UserText> seal_user(db::Transaction& tx, std::string user_id,
                                           std::string email, std::string name);

}  // namespace hsea::identity
