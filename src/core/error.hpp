#pragma once
// The one error model. Handlers throw ApiError (what the client may see); anything else that
// escapes a handler is logged in full and answered as a 500 problem with the request id only.
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace hsea::core {

// The closed set of problem codes a client can receive (docs/errors.md lists them).
enum class ErrorCode {
  kBadRequest,
  kValidationFailed,
  kUnauthorized,
  kForbidden,
  kNotFound,
  kMethodNotAllowed,
  kConflict,
  kPayloadTooLarge,
  kUnsupportedMediaType,
  kHeadersTooLarge,
  kRateLimited,
  kInternal,
  kServiceUnavailable,
  kTimeout,
  kMfaRequired,
  // Invitations and members (HSEA-017, HSEA-011).
  kEmailUnverified,
  kInvitationInvalid,
  kInvitationExpired,
  kInvitationRevoked,
  kInvitationUsed,
  // Account flows (HSEA-015, HSEA-016): mailed single-use tokens.
  kTokenInvalid,  // unknown, forged, already used, or for another account or purpose
  kTokenExpired,
  // HSEA-043/045 (CORS, CSRF)
  kCsrfFailed,
  kOriginNotAllowed,
  // HSEA-021..025 (billing)
  kBillingNotConfigured,  // no Stripe secret key on this server
  kPlanRequired,          // the tenant's plan lacks the route's feature
  kDowngradeBlocked,      // the tenant uses more than the target plan allows (seats)
  kPaymentProviderError,  // Stripe refused a request HSEA made
  // HSEA-027 (quotas)
  kQuotaExceeded,
  // HSEA-030 (dunning)
  kBillingSuspended,  // the grace period after a failed payment ran out: writes are refused
  kPaymentFailed,     // Stripe declined the payment asked for (POST /api/invoices/{id}/pay)
};

struct ErrorInfo {
  int status;
  std::string_view code;   // stable, snake_case: the `code` member of the problem
  std::string_view title;  // short, human: the `title` member
};

const ErrorInfo& error_info(ErrorCode code);

struct FieldError {
  std::string field;  // JSON pointer or parameter name, e.g. "/email"
  std::string message;
};

class ApiError : public std::runtime_error {
 public:
  ApiError(ErrorCode code, std::string detail, std::vector<FieldError> errors = {})
      : std::runtime_error(detail), code_(code), errors_(std::move(errors)) {}

  ErrorCode code() const { return code_; }
  std::string_view detail() const { return what(); }
  const std::vector<FieldError>& errors() const { return errors_; }
  // For 429 and 503: sent as Retry-After.
  int retry_after_seconds() const { return retry_after_seconds_; }
  ApiError& retry_after(int seconds) {
    retry_after_seconds_ = seconds;
    return *this;
  }
  // What the log gets beside the client's detail (never sent): why the server refused.
  const std::string& internal_reason() const { return internal_reason_; }
  ApiError& internal(std::string reason) {
    internal_reason_ = std::move(reason);
    return *this;
  }

 private:
  ErrorCode code_;
  std::vector<FieldError> errors_;
  int retry_after_seconds_ = 0;
  std::string internal_reason_;
};

// A database statement failed (db::Error is this type). sqlstate is PostgreSQL's code
// ("23505"); for connection trouble it is "08006", for a pool wait past its deadline "53300".
// query is the named statement's name. what() is internal detail: log it, never send it to a
// client (error_code_for_sqlstate picks the client-facing code).
class DatabaseError : public std::runtime_error {
 public:
  DatabaseError(std::string sqlstate, std::string message, std::string constraint = {},
                std::string query = {})
      : std::runtime_error(std::move(message)),
        sqlstate_(std::move(sqlstate)),
        constraint_(std::move(constraint)),
        query_(std::move(query)) {}
  const std::string& sqlstate() const { return sqlstate_; }
  const std::string& constraint() const { return constraint_; }
  const std::string& query() const { return query_; }

 private:
  std::string sqlstate_;
  std::string constraint_;
  std::string query_;
};

// SQLSTATE -> client-facing code, in one place: 23505 unique -> conflict, 23514 check ->
// validation, 08xxx/57P0x -> unavailable, 57014 statement timeout -> timeout, ...
ErrorCode error_code_for_sqlstate(std::string_view sqlstate);

}  // namespace hsea::core
