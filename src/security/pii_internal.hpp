#pragma once
// What pii.cpp lends pii_rotation.cpp (the wrapping secret stays in pii.cpp).
#include <string_view>

namespace hsea::db {
class BlockingConnection;
}

namespace hsea::security::pii::detail {

// Re-wraps data key `id` under the current secret when only `previous_secret` opens it; false
// when it already opens under the current one. Throws when neither does.
bool rewrap_if_needed(db::BlockingConnection& conn, std::string_view id, std::string_view wrapped,
                      std::string_view previous_secret);

}  // namespace hsea::security::pii::detail
