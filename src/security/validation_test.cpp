#include <gtest/gtest.h>

#include "security/security.hpp"

namespace hsea::security {
namespace {

bool names(const std::vector<core::FieldError>& errors, const std::string& field) {
  for (const auto& e : errors) {
    if (e.field == field) return true;
  }
  return false;
}

TEST(BodyValidation, AcceptsAValidBody) {
  EXPECT_TRUE(schema_errors("SignupRequest", R"({"email":"a@b.co","password":"x","name":"A",)"
                                             R"("organization_name":"Acme"})")
                  .empty());
}

TEST(BodyValidation, NamesMissingWrongTypedAndUnknownFields) {
  auto missing = schema_errors("SignupRequest", R"({"email":"a@b.co","password":"x","name":"A"})");
  EXPECT_TRUE(names(missing, "/organization_name")) << missing.size();
  auto wrong = schema_errors("UpdateMemberRequest", R"({"role":"emperor"})");
  EXPECT_TRUE(names(wrong, "/role"));
  auto typed = schema_errors("UpdateMeRequest", R"({"name":42})");
  EXPECT_TRUE(names(typed, "/name"));
  auto unknown = schema_errors("RefreshRequest", R"({"refresh_token":"t","admin":true})");
  EXPECT_FALSE(unknown.empty());
  auto empty_scopes = schema_errors("CreateApiKeyRequest", R"({"name":"k","scopes":[]})");
  EXPECT_TRUE(names(empty_scopes, "/scopes"));
}

TEST(BodyValidation, FormatsApplyToStringsOnlyAndNameTheField) {
  // valijson checks `format` on any type and throws for an array or object: never a 500.
  for (const char* expires : {R"({"x":1})", "[1]", "17", "true", "null"}) {
    std::vector<core::FieldError> errors;
    ASSERT_NO_THROW(
        errors = schema_errors(
            "CreateApiKeyRequest",
            std::string(R"({"name":"k","scopes":["read"],"expires_at":)") + expires + "}"))
        << expires;
    EXPECT_TRUE(names(errors, "/expires_at")) << expires;
  }
  for (const char* tenant : {"[1]", R"({"a":1})"}) {
    std::vector<core::FieldError> errors;
    ASSERT_NO_THROW(
        errors = schema_errors("LoginRequest", std::string(R"({"email":"a@b.co","password":"x",)") +
                                                   R"("tenant_id":)" + tenant + "}"));
    EXPECT_TRUE(names(errors, "/tenant_id")) << tenant;
  }
  // The format itself still counts for strings.
  EXPECT_TRUE(names(
      schema_errors("CreateApiKeyRequest", R"({"name":"k","scopes":["read"],"expires_at":"soon"})"),
      "/expires_at"));
  EXPECT_TRUE(schema_errors("CreateApiKeyRequest",
                            R"({"name":"k","scopes":["read"],"expires_at":"2030-01-01T00:00:00Z"})")
                  .empty());
}

TEST(BodyValidation, UnknownSchemaIsAProgrammingError) {
  EXPECT_THROW(schema_errors("NoSuchSchema", "{}"), std::out_of_range);
}

}  // namespace
}  // namespace hsea::security
