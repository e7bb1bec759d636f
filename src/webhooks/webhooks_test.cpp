// Signing (the Standard Webhooks test vector), secret sealing, the SSRF address classifier and
// endpoint URL validation.
#include <gtest/gtest.h>

#include "webhooks/webhooks.hpp"

namespace hsea::webhooks {
namespace {

// From the Standard Webhooks reference libraries' tests (also what `svix` signs).
TEST(WebhookSigning, MatchesTheStandardWebhooksTestVector) {
  const std::string secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  EXPECT_EQ(
      signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, R"({"test": 2432232314})"),
      "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST(WebhookSigning, TwoSecretsGiveTwoSpaceSeparatedSignatures) {
  std::string a = new_secret(), b = new_secret();
  std::string header = signature_header({a, b}, "id1", 42, "{}");
  EXPECT_EQ(header, signature(a, "id1", 42, "{}") + " " + signature(b, "id1", 42, "{}"));
  EXPECT_NE(signature(a, "id1", 42, "{}"), signature(a, "id1", 43, "{}"));
  EXPECT_NE(signature(a, "id1", 42, "{}"), signature(a, "id2", 42, "{}"));
}

TEST(WebhookSigning, NewSecretsAreWhsecAndThirtyTwoRandomBytes) {
  std::string s = new_secret();
  ASSERT_TRUE(s.starts_with("whsec_")) << s;
  auto key = secret_key_bytes(s);
  ASSERT_TRUE(key.has_value());
  EXPECT_EQ(key->size(), 32u);
  EXPECT_NE(s, new_secret());
  EXPECT_FALSE(secret_key_bytes("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").has_value());
  EXPECT_FALSE(secret_key_bytes("whsec_not base64!").has_value());
}

TEST(WebhookSigning, SecretsAreSealedAndOpenOnlyWithTheSameServerKey) {
  std::string secret = new_secret();
  std::string sealed = seal_secret(secret, "server-key-0123456789abcdef0123456789");
  EXPECT_EQ(sealed.find(secret.substr(6)), std::string::npos);
  EXPECT_NE(sealed, seal_secret(secret, "server-key-0123456789abcdef0123456789"));  // nonce
  EXPECT_EQ(unseal_secret(sealed, "server-key-0123456789abcdef0123456789"), secret);
  EXPECT_THROW(unseal_secret(sealed, "another-key-0123456789abcdef012345678"), std::runtime_error);
  EXPECT_THROW(unseal_secret("not sealed", "server-key-0123456789abcdef0123456789"),
               std::runtime_error);
}

TEST(WebhookAddresses, PublicAndNonPublicIPv4) {
  for (const char* ip : {"8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.1",
                         "172.15.255.255", "172.32.0.1", "169.253.0.1", "192.169.0.1"}) {
    EXPECT_EQ(is_public_ip(ip), std::optional<bool>(true)) << ip;
  }
  for (const char* ip :
       {"127.0.0.1", "127.255.255.254", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
        "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.127.255.255", "0.0.0.0", "0.1.2.3",
        "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1",
        "203.0.113.9"}) {
    EXPECT_EQ(is_public_ip(ip), std::optional<bool>(false)) << ip;
  }
}

TEST(WebhookAddresses, PublicAndNonPublicIPv6IncludingMappedAddresses) {
  for (const char* ip : {"2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8",
                         "64:ff9b::808:808", "2002:808:808::1"}) {
    EXPECT_EQ(is_public_ip(ip), std::optional<bool>(true)) << ip;
  }
  for (const char* ip : {"::",
                         "::1",
                         "::ffff:127.0.0.1",
                         "::ffff:10.1.2.3",
                         "::ffff:169.254.169.254",
                         "::ffff:7f00:1",
                         "::127.0.0.1",
                         "fd00:ec2::254",
                         "fc00::1",
                         "fdff::1",
                         "fe80::1",
                         "fe80::1234:5678",
                         "febf::1",
                         "fec0::1",
                         "ff02::1",
                         "ff05::2",
                         "2001:db8::1",
                         "64:ff9b::7f00:1",
                         "64:ff9b::a00:1",
                         "2002:7f00:1::1",
                         "2002:c0a8:101::1",
                         "100::1",
                         "2001::1"}) {
    EXPECT_EQ(is_public_ip(ip), std::optional<bool>(false)) << ip;
  }
  EXPECT_FALSE(is_public_ip("example.com").has_value());
  EXPECT_FALSE(is_public_ip("127.1").has_value());  // not a dotted quad: resolved instead
}

TEST(WebhookUrls, ParsesHttpAndHttpsAndRefusesTheRest) {
  auto u = parse_endpoint_url("https://hooks.example.com:8443/in?x=1", true);
  ASSERT_TRUE(u.has_value()) << u.error();
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->host, "hooks.example.com");
  EXPECT_EQ(u->port, 8443);
  auto v6 = parse_endpoint_url("http://[::1]/hook", false);
  ASSERT_TRUE(v6.has_value()) << v6.error();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 80);
  EXPECT_EQ(parse_endpoint_url("HTTPS://example.com", true)->port, 443);

  EXPECT_EQ(parse_endpoint_url("http://example.com/", true).error(), "must use https");
  for (const char* bad :
       {"", "example.com/hook", "/relative", "ftp://example.com/", "file:///etc/passwd",
        "gopher://example.com", "https://", "https:///path", "https://user:pw@example.com/",
        "https://example.com/#frag", "https://exa mple.com/", "https://example.com:0/",
        "https://example.com:99999/", "javascript:alert(1)"}) {
    EXPECT_FALSE(parse_endpoint_url(bad, false).has_value()) << bad;
  }
  EXPECT_FALSE(parse_endpoint_url("https://example.com/" + std::string(2100, 'a'), false));
}

TEST(WebhookUrls, LiteralAddressesAreCheckedWithoutResolving) {
  auto loopback = parse_endpoint_url("https://127.0.0.1/hook", true);
  ASSERT_TRUE(loopback.has_value());
  EXPECT_FALSE(check_resolves_public(*loopback, false).empty());
  EXPECT_TRUE(check_resolves_public(*loopback, true).empty());
  auto metadata = parse_endpoint_url("http://[fd00:ec2::254]/latest", false);
  ASSERT_TRUE(metadata.has_value());
  EXPECT_FALSE(check_resolves_public(*metadata, false).empty());
  auto localhost = parse_endpoint_url("https://localhost/hook", true);
  ASSERT_TRUE(localhost.has_value());
  EXPECT_FALSE(check_resolves_public(*localhost, false).empty());  // resolves to loopback
  auto pub = parse_endpoint_url("https://8.8.8.8/hook", true);
  EXPECT_TRUE(check_resolves_public(*pub, false).empty());
}

TEST(WebhookRetries, FollowTheScheduleForAboutThreeDays) {
  using namespace std::chrono_literals;
  std::chrono::milliseconds total{0};
  const std::chrono::milliseconds steps[] = {5s, 5min, 30min, 2h, 5h, 10h, 10h};
  for (int attempt = 1; attempt < kMaxAttempts; ++attempt) {
    auto wait = retry_backoff(attempt);
    auto step = steps[std::min(attempt, 7) - 1];
    EXPECT_GE(wait, step) << attempt;
    EXPECT_LE(wait, step + step / 10) << attempt;
    total += wait;
  }
  EXPECT_GE(total, 72h);
  EXPECT_LE(total, 90h);
}

}  // namespace
}  // namespace hsea::webhooks
