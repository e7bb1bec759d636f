#include "core/error.hpp"

namespace hsea::core {

const ErrorInfo& error_info(ErrorCode code) {
  static const ErrorInfo kInfo[] = {
      {400, "bad_request", "Bad request"},
      {422, "validation_failed", "Validation failed"},
      {401, "unauthorized", "Authentication required"},
      {403, "forbidden", "Forbidden"},
      {404, "not_found", "Not found"},
      {405, "method_not_allowed", "Method not allowed"},
      {409, "conflict", "Conflict"},
      {413, "payload_too_large", "Payload too large"},
      {415, "unsupported_media_type", "Unsupported media type"},
      {431, "request_header_fields_too_large", "Request header fields too large"},
      {429, "rate_limited", "Too many requests"},
      {500, "internal_error", "Internal server error"},
      {503, "service_unavailable", "Service unavailable"},
      {504, "timeout", "Timed out"},
      {403, "mfa_required", "Multi-factor sign-in required"},
      // Invitations and members (HSEA-017, HSEA-011).
      {403, "email_unverified", "E-mail address not verified"},
      {400, "invitation_invalid", "Invitation not valid"},
      {410, "invitation_expired", "Invitation expired"},
      {410, "invitation_revoked", "Invitation revoked"},
      {409, "invitation_used", "Invitation already used"},
      // Account flows (HSEA-015, HSEA-016).
      {400, "token_invalid", "Invalid token"},
      {410, "token_expired", "Token expired"},
      // HSEA-043/045 (CORS, CSRF)
      {403, "csrf_failed", "CSRF check failed"},
      {403, "origin_not_allowed", "Origin not allowed"},
      // HSEA-021..025 (billing)
      {503, "billing_not_configured", "Billing not configured"},
      {402, "plan_required", "Plan upgrade required"},
      {409, "downgrade_blocked", "Downgrade not possible"},
      {502, "payment_provider_error", "Payment provider error"},
      // HSEA-027 (quotas)
      {429, "quota_exceeded", "Quota exceeded"},
      // HSEA-030 (dunning)
      {402, "billing_suspended", "Billing suspended"},
      {402, "payment_failed", "Payment failed"},
  };
  return kInfo[static_cast<int>(code)];
}

ErrorCode error_code_for_sqlstate(std::string_view s) {
  if (s == "23505" || s == "23P01" || s == "40001" || s == "40P01") return ErrorCode::kConflict;
  if (s == "23503") return ErrorCode::kConflict;  // still referenced / unknown reference
  // integrity_constraint_violation: raised by triggers that guard a rule across rows, e.g.
  // memberships_keep_an_owner (a tenant keeps an owner).
  if (s == "23000") return ErrorCode::kConflict;
  if (s == "23514" || s == "23502" || s == "22001" || s == "22003" || s == "22P02" ||
      s == "22007" || s == "22008") {
    return ErrorCode::kValidationFailed;
  }
  if (s == "42501") return ErrorCode::kForbidden;  // RLS WITH CHECK or missing privilege
  if (s == "57014") return ErrorCode::kTimeout;    // statement_timeout
  if (s.starts_with("08") || s.starts_with("57P") || s.starts_with("53")) {
    return ErrorCode::kServiceUnavailable;
  }
  return ErrorCode::kInternal;
}

}  // namespace hsea::core
