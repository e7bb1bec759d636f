#pragma once
// Identity: sign-up, sign-in, tokens, sessions, the caller's profile, API keys; and the
// middleware that resolves the tenant (stage tenant), authenticates (identity) and enforces
// each route's identity::Access policy (admission).
#include <string>
#include <string_view>

#include "identity/access.hpp"

namespace hsea::runtime {
class Registrar;
}

namespace hsea::identity {

// The identity module's settings section.
struct Settings {
  int login_failures_per_account = 100;
  int login_failures_per_ip = 1000;
  int signups_per_ip_per_hour = 20;  // 0: unlimited
  int refresh_token_days = 30;
  // Access tokens' lifetime, and a session cookie's between refreshes (POST /api/auth/refresh).
  int access_token_seconds = 900;
  int api_key_rotation_grace_seconds = 86400;
  int usage_flush_seconds = 10;
  // Account flows (account_flows.cpp): lifetimes of mailed tokens, and how many such mails a
  // user (verification resends, e-mail changes) or an address (password resets) may ask for.
  int email_verification_hours = 48;
  int password_reset_minutes = 60;
  int email_change_hours = 24;
  int account_mails_per_hour = 5;  // 0: unlimited
  std::string base_domain;         // tenants are reachable at <slug>.<base_domain> when set
};

// /api/auth/*, /.well-known/jwks.json, /api/me*, /api/api-keys*; the middleware above; the
// signing keys, the sign-in throttle, `hsea keys rotate` and the API-key usage flush.
void Register(runtime::Registrar& registrar);

// The tenant slug a Host names under HSEA_BASE_DOMAIN ("acme" for ACME.example.com:443), or ""
// (not under it, or no valid slug): the rule tenant resolution applies, for the CORS step.
std::string tenant_slug_of_host(std::string_view host);

}  // namespace hsea::identity
