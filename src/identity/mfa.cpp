// Multi-factor sign-in (HSEA-018): TOTP enrolment with a QR code, recovery codes, turning it
// off, and the second factor check that sign-in's second step (auth_routes.cpp) uses.
#include <fmt/format.h>
#include <liboath/oath.h>
#include <qrencode.h>
#include <sodium.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <algorithm>
#include <ctime>
#include <memory>

#include "core/config.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/ids.hpp"
#include "db/db.hpp"
#include "http/json.hpp"
#include "identity/auth_cache.hpp"
#include "identity/module.hpp"
#include "identity/password.hpp"
#include "identity/user_pii.hpp"
#include "metering/policies.hpp"
#include "runtime/registrar.hpp"
#include "security/audit.hpp"
#include "security/policies.hpp"

namespace hsea::identity {
namespace {

using boost::asio::awaitable;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

constexpr std::string_view kSealContext = "hsea totp secret v1";
constexpr int kSecretBytes = 20;  // RFC 4226's recommended 160 bits
constexpr int kRecoveryCodes = 10;

HSEA_QUERY kUser{"mfa_user",
                 "SELECT email, name, mfa_enabled, password_hash FROM users WHERE id = $1"};
HSEA_QUERY kStartTotp{
    "mfa_start_totp",
    "INSERT INTO user_totp (user_id, secret_sealed) VALUES ($1, $2) "
    "ON CONFLICT (user_id) DO UPDATE SET secret_sealed = EXCLUDED.secret_sealed, "
    "confirmed_at = NULL, last_step = 0, created_at = now() WHERE user_totp.confirmed_at IS NULL"};
HSEA_QUERY kTotpForUpdate{"mfa_totp_for_update",
                          "SELECT secret_sealed, last_step, confirmed_at IS NOT NULL AS confirmed "
                          "FROM user_totp WHERE user_id = $1 FOR UPDATE"};
HSEA_QUERY kConfirmTotp{
    "mfa_confirm_totp",
    "UPDATE user_totp SET confirmed_at = now(), last_step = $2 WHERE user_id = $1"};
HSEA_QUERY kTotpStep{"mfa_totp_step", "UPDATE user_totp SET last_step = $2 WHERE user_id = $1"};
HSEA_QUERY kSetMfaEnabled{"mfa_set_enabled",
                          "UPDATE users SET mfa_enabled = $2, updated_at = now() WHERE id = $1"};
HSEA_QUERY kDeleteCodes{"mfa_delete_codes", "DELETE FROM mfa_recovery_codes WHERE user_id = $1"};
HSEA_QUERY kInsertCodes{
    "mfa_insert_codes",
    "INSERT INTO mfa_recovery_codes (user_id, code_hash) SELECT $1, unnest($2::text[])"};
HSEA_QUERY kSpendCode{"mfa_spend_code",
                      "UPDATE mfa_recovery_codes SET used_at = now() "
                      "WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL"};
HSEA_QUERY kCodesLeft{
    "mfa_codes_left",
    "SELECT count(*) AS n FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL"};
HSEA_QUERY kDeleteTotp{"mfa_delete_totp", "DELETE FROM user_totp WHERE user_id = $1"};
HSEA_QUERY kMarkSession{"mfa_mark_session",
                        "UPDATE sessions SET mfa_at = now() WHERE id = $1 AND user_id = $2"};

// RFC 4648 base32 without padding, as authenticator apps expect in otpauth URIs.
std::string base32(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 5) {
      out.push_back(kAlphabet[(buffer >> (bits - 5)) & 31]);
      bits -= 5;
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(buffer << (5 - bits)) & 31]);
  return out;
}

std::string percent_encoded(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// The issuer shown by authenticator apps: the host of HSEA_PUBLIC_URL.
std::string issuer() {
  std::string_view url = config().public_url;
  if (auto scheme = url.find("://"); scheme != std::string_view::npos)
    url.remove_prefix(scheme + 3);
  url = url.substr(0, url.find_first_of(":/"));
  return url.empty() ? std::string("HSEA") : std::string(url);
}

// The QR code of `text` as an SVG image: one path of dark modules, a 4-module quiet zone.
std::string qr_svg(const std::string& text) {
  std::unique_ptr<QRcode, decltype(&QRcode_free)> qr(
      QRcode_encodeString(text.c_str(), 0, QR_ECLEVEL_M, QR_MODE_8, 1), &QRcode_free);
  if (!qr) throw std::runtime_error("QR encoding failed");
  const int width = qr->width, size = width + 8;
  std::string path;
  for (int y = 0; y < width; ++y) {
    for (int x = 0; x < width; ++x) {
      if (qr->data[y * width + x] & 1) path += fmt::format("M{} {}h1v1h-1z", x + 4, y + 4);
    }
  }
  return fmt::format(
      R"(<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {0} {0}" width="{1}" height="{1}" )"
      R"(shape-rendering="crispEdges" role="img" aria-label="QR code for the authenticator app">)"
      R"(<rect width="{0}" height="{0}" fill="#fff"/><path fill="#000" d="{2}"/></svg>)",
      size, size * 6, path);
}

std::string opened_secret(std::string_view sealed) {
  auto plain = unseal_text(sealed, config().secret_key, kSealContext);
  if (!plain) throw std::runtime_error("a TOTP secret does not open under HSEA_SECRET_KEY");
  return *plain;
}

// The time step of `code` when it is a current code of `secret` (within one step either way).
std::optional<std::uint64_t> totp_step(std::string_view secret, const std::string& code) {
  if (code.size() != 6 || !std::ranges::all_of(code, [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  int position = 0;
  std::uint64_t step = 0;
  int rc = oath_totp_validate3(secret.data(), secret.size(), std::time(nullptr), 30, 0, 1,
                               &position, &step, code.c_str());
  if (rc < 0) return std::nullopt;
  return step;
}

std::string normalized_recovery_code(std::string_view code) {
  std::string out;
  for (unsigned char c : code) {
    if (c == '-' || c == ' ') continue;
    out.push_back(static_cast<char>(std::tolower(c)));
  }
  return out;
}

// Ten new codes replace the old ones; returns them (shown once).
awaitable<boost::json::array> new_recovery_codes(db::Transaction& tx, const std::string& user_id) {
  boost::json::array shown;
  std::string hashes = "{";
  for (int i = 0; i < kRecoveryCodes; ++i) {
    std::string raw = core::random_hex(5);  // 40 bits, single use, behind the password
    shown.emplace_back(raw.substr(0, 5) + "-" + raw.substr(5));
    hashes += (i ? "," : "") + core::sha256_hex(raw);
  }
  hashes += "}";
  co_await tx.exec(kDeleteCodes, db::params(user_id));
  co_await tx.exec(kInsertCodes, db::params(user_id, hashes));
  co_return shown;
}

ApiError wrong_code() {
  return ApiError(ErrorCode::kUnauthorized, "The code is wrong or was already used.");
}

awaitable<void> audit(db::Transaction& tx, RequestContext& ctx, std::string action) {
  if (ctx.tenant_id.empty()) co_return;
  co_await security::record(tx, ctx,
                            security::event(std::move(action), "user", ctx.principal.user_id));
}

// ----------------------------------------------------------------------------- handlers

awaitable<Response> start_totp(RequestContext& ctx) {
  const std::string& user_id = ctx.principal.user_id;
  db::Transaction tx = co_await db::pool().begin(db::scope(ctx.tenant_id, user_id));
  db::Result user = co_await tx.exec(kUser, db::params(user_id));
  if (user.empty()) throw ApiError(ErrorCode::kUnauthorized, "The session has ended.");
  if (user.get_bool(0, "mfa_enabled")) {
    throw ApiError(ErrorCode::kConflict, "MFA is already on; turn it off first to enrol again.");
  }
  std::string raw(kSecretBytes, '\0');
  randombytes_buf(raw.data(), raw.size());
  co_await tx.exec(kStartTotp,
                   db::params(user_id, seal_text(raw, config().secret_key, kSealContext)));
  co_await tx.commit();
  std::string secret = base32(raw);
  UserText text = (co_await open_users(user)).at(0);  // sealed
  std::string label = issuer() + ":" + text.email;
  std::string uri = fmt::format(
      "otpauth://totp/{}?secret={}&issuer={}&algorithm=SHA1&digits=6"
      "&period=30",
      percent_encoded(label), secret, percent_encoded(issuer()));
  co_return http::json_response(
      200, object{{"secret", secret}, {"otpauth_uri", uri}, {"qr_svg", qr_svg(uri)}});
}

awaitable<Response> confirm_totp(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::string code = http::required_string(body, "code");
  const std::string& user_id = ctx.principal.user_id;
  db::Transaction tx = co_await db::pool().begin(db::scope(ctx.tenant_id, user_id));
  db::Result totp = co_await tx.exec(kTotpForUpdate, db::params(user_id));
  if (totp.empty() || totp.get_bool(0, "confirmed")) {
    throw ApiError(ErrorCode::kConflict, "No enrolment is waiting: start one first.");
  }
  auto step = totp_step(opened_secret(totp.get(0, "secret_sealed")), code);
  if (!step) throw wrong_code();
  co_await tx.exec(kConfirmTotp, db::params(user_id, static_cast<std::int64_t>(*step)));
  co_await tx.exec(kSetMfaEnabled, db::params(user_id, true));
  boost::json::array codes = co_await new_recovery_codes(tx, user_id);
  // The factor was just proven in this session: a tenant that requires MFA admits it now.
  co_await tx.exec(kMarkSession, db::params(ctx.principal.session_id, user_id));
  co_await audit(tx, ctx, "mfa.enabled");
  co_await tx.commit();
  invalidate_auth_cache();
  co_return http::json_response(200, object{{"recovery_codes", std::move(codes)}});
}

awaitable<Response> regenerate_codes(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::string code = http::required_string(body, "code");
  const std::string& user_id = ctx.principal.user_id;
  db::Transaction tx = co_await db::pool().begin(db::scope(ctx.tenant_id, user_id));
  if (!co_await check_second_factor(tx, user_id, code, std::nullopt)) throw wrong_code();
  boost::json::array codes = co_await new_recovery_codes(tx, user_id);
  co_await audit(tx, ctx, "mfa.recovery_codes_replaced");
  co_await tx.commit();
  co_return http::json_response(200, object{{"recovery_codes", std::move(codes)}});
}

awaitable<Response> disable_mfa(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  auto code = http::optional_string(body, "code");
  auto password = http::optional_string(body, "password");
  if (!code && !password) {
    throw ApiError(ErrorCode::kValidationFailed, "Send a current code or your password.",
                   {{"/code", "a current code, or the password, is required"}});
  }
  const std::string& user_id = ctx.principal.user_id;
  LoginThrottle& throttle = *state().throttle;
  const std::string throttle_key = "user:" + user_id;
  co_await throttle.refuse_if_blocked(throttle_key, ctx.request.remote_ip,
                                      "Too many failed attempts; try again later.");
  db::Transaction tx = co_await db::pool().begin(db::scope(ctx.tenant_id, user_id));
  db::Result user = co_await tx.exec(kUser, db::params(user_id));
  if (user.empty()) throw ApiError(ErrorCode::kUnauthorized, "The session has ended.");
  if (!user.get_bool(0, "mfa_enabled")) throw ApiError(ErrorCode::kConflict, "MFA is not on.");
  bool ok = false;
  if (code) {
    ok = co_await check_second_factor(tx, user_id, *code, std::nullopt);
  } else if (!user.is_null(0, user.column("password_hash"))) {
    std::string hash(user.get(0, "password_hash"));
    auto verify_work = [hash, p = *password] { return verify_password(hash, p); };
    ok = co_await runtime::cpu_pool().run(std::move(verify_work));
  }
  if (!ok) {
    co_await throttle.record_failure(throttle_key, ctx.request.remote_ip);
    throw ApiError(ErrorCode::kUnauthorized,
                   code ? "The code is wrong or was already used." : "The password is wrong.");
  }
  co_await tx.exec(kDeleteTotp, db::params(user_id));
  co_await tx.exec(kDeleteCodes, db::params(user_id));
  co_await tx.exec(kSetMfaEnabled, db::params(user_id, false));
  co_await audit(tx, ctx, "mfa.disabled");
  co_await tx.commit();
  invalidate_auth_cache();
  co_return Response::no_content();
}

}  // namespace

awaitable<bool> check_second_factor(db::Transaction& tx, const std::string& user_id,
                                    std::optional<std::string> code,
                                    std::optional<std::string> recovery_code) {
  if (recovery_code) {
    std::string normalized = normalized_recovery_code(*recovery_code);
    if (normalized.empty() || normalized.size() > 64) co_return false;
    db::Result spent =
        co_await tx.exec(kSpendCode, db::params(user_id, core::sha256_hex(normalized)));
    co_return spent.affected() == 1;
  }
  if (!code) co_return false;
  db::Result totp = co_await tx.exec(kTotpForUpdate, db::params(user_id));
  if (totp.empty() || !totp.get_bool(0, "confirmed")) co_return false;
  auto step = totp_step(opened_secret(totp.get(0, "secret_sealed")), *code);
  // A code is accepted once: its step must be later than the last accepted one.
  if (!step || static_cast<std::int64_t>(*step) <= totp.get_int(0, "last_step")) co_return false;
  co_await tx.exec(kTotpStep, db::params(user_id, static_cast<std::int64_t>(*step)));
  co_return true;
}

void register_mfa_routes(runtime::Registrar& reg) {
  if (oath_init() != OATH_OK) throw std::runtime_error("liboath failed to initialise");
  using http::Method;
  using http::Policies;
  // Unmetered: signing in and the signed-in user stay reachable past a quota.
  using metering::Unmetered;
  using security::Body;
  const Access user{.authenticated = true};
  reg.route({.method = Method::kPost,
             .path = "/api/me/mfa/totp",
             .handler = start_totp,
             .policies = Policies(user, Unmetered{})});
  reg.route({.method = Method::kPost,
             .path = "/api/me/mfa/totp/confirm",
             .handler = confirm_totp,
             .policies = Policies(user, Body{"MfaCodeRequest"}, Unmetered{})});
  reg.route({.method = Method::kPost,
             .path = "/api/me/mfa/recovery-codes",
             .handler = regenerate_codes,
             .policies = Policies(user, Body{"MfaCodeRequest"}, Unmetered{})});
  reg.route({.method = Method::kDelete,
             .path = "/api/me/mfa",
             .handler = disable_mfa,
             .policies = Policies(user, Body{"DisableMfaRequest"}, Unmetered{})});
}

}  // namespace hsea::identity
