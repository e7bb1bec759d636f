#include "core/crypto.hpp"

#include <gtest/gtest.h>

namespace hsea::core {
namespace {

TEST(Sealing, OpensOnlyWithTheSameSecretAndContext) {
  std::string sealed = seal("the secret", "server secret 32 bytes long.....", "context a");
  EXPECT_EQ(sealed.find("the secret"), std::string::npos);
  EXPECT_EQ(unseal(sealed, "server secret 32 bytes long.....", "context a"), "the secret");
  EXPECT_FALSE(unseal(sealed, "another secret 32 bytes long....", "context a"));
  EXPECT_FALSE(unseal(sealed, "server secret 32 bytes long.....", "context b"));
  EXPECT_FALSE(unseal(sealed.substr(0, 10), "server secret 32 bytes long.....", "context a"));
  std::string tampered = sealed;
  tampered.back() ^= 1;
  EXPECT_FALSE(unseal(tampered, "server secret 32 bytes long.....", "context a"));
  EXPECT_NE(seal("the secret", "server secret 32 bytes long.....", "context a"), sealed)
      << "every seal has its own nonce";
}

}  // namespace
}  // namespace hsea::core
