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

TEST(BodyValidation, UnknownSchemaIsAProgrammingError) {
  EXPECT_THROW(schema_errors("NoSuchSchema", "{}"), std::out_of_range);
}

}  // namespace
}  // namespace hsea::security
