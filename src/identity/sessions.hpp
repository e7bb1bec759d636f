#pragma once
// Sign-up's building blocks (defined in auth_routes.cpp), shared with the flows that end the
// way sign-up does: accepting an invitation as a new user opens a session and answers what
// sign-in answers, and POST /api/tenants creates a tenant with its owner as sign-up does.
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <string>
#include <string_view>

#include "http/message.hpp"

namespace hsea::http {
struct RequestContext;
}
namespace hsea::db {
class Transaction;
class Result;
}  // namespace hsea::db

namespace hsea::identity {

// The body's `field` as an e-mail address in lower case; 422 naming the field when it is not one.
std::string normalized_email(const boost::json::object& body, std::string_view field = "email");

// The body's `field`, 1 to 200 characters; 422 naming the field otherwise.
std::string bounded_name(const boost::json::object& body, std::string_view field);

// The user row (id, email, name, email_verified, mfa_enabled, created_at) as the API shows it.
// Its address and name are opened (sealed: identity/user_pii.hpp).
boost::asio::awaitable<boost::json::object> user_json(const db::Result& r);

struct Issued {
  std::string session_id;
  std::string refresh_token;
};

// Creates a session and its first refresh token inside the caller's transaction (whose scope
// names the user).
boost::asio::awaitable<Issued> open_session(db::Transaction& tx, const http::RequestContext& ctx,
                                            std::string user_id, std::string tenant_id, bool cookie,
                                            bool second_factor = false);

// Session cookies instead of tokens in the body (the body's "session": "cookie"), for the web UI.
bool wants_cookie(const boost::json::object& body);

// `body` plus the tokens, or plus csrf_token with the session cookies set.
http::Response session_response(const http::RequestContext& ctx, int status,
                                boost::json::object body, bool cookie, const std::string& user_id,
                                const std::string& tenant_id, const Issued& issued);

// A tenant's slug from its name, not reserved and not taken now (checked again at insert).
boost::asio::awaitable<std::string> available_slug(std::string name);

struct NewTenant {
  std::string id, slug, name;
};
// Inserts the tenant `id` (the transaction's app.tenant_id) and makes `owner_id` its owner;
// another slug is chosen if the slug was taken meanwhile (409 when none is found). Emits
// tenant.created and member.added in the transaction.
boost::asio::awaitable<NewTenant> create_tenant(db::Transaction& tx,
                                                const http::RequestContext& ctx, std::string id,
                                                std::string slug, std::string name,
                                                std::string owner_id);

// Work another module does in the transaction that creates a tenant (billing starts the
// tenant's subscription there): declared at registration, run by create_tenant after the
// owner's membership, in declaration order.
using TenantCreatedHook = boost::asio::awaitable<void> (*)(db::Transaction& tx,
                                                           const http::RequestContext& ctx,
                                                           std::string tenant_id);
void on_tenant_created(TenantCreatedHook hook);

}  // namespace hsea::identity
