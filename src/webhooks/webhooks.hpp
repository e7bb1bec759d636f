#pragma once
// Outbound webhooks (HSEA-074): tenants register endpoints, every domain event of the outbox is
// fanned out to the endpoints subscribed to its type, and the job worker delivers each one
// signed per Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature), retrying for
// about three days. Endpoint URLs are checked against server-side request forgery when
// registered and at every connection.
#include <chrono>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct sockaddr;

namespace hsea::runtime {
class Registrar;
}

namespace hsea::webhooks {

// ------------------------------------------------------------------------------ signing

// A new signing secret: "whsec_" + base64 of 32 random bytes (Standard Webhooks).
std::string new_secret();
// The key bytes of a "whsec_..." secret (the base64 after the prefix), or nullopt if malformed.
std::optional<std::string> secret_key_bytes(std::string_view secret);
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" for one secret.
std::string signature(std::string_view secret, std::string_view id, std::int64_t timestamp,
                      std::string_view body);
// The webhook-signature header: one signature per secret, space-separated.
std::string signature_header(const std::vector<std::string>& secrets, std::string_view id,
                             std::int64_t timestamp, std::string_view body);

// Secrets at rest: sealed with libsodium secretbox under a key derived from HSEA_SECRET_KEY.
std::string seal_secret(std::string_view plain, std::string_view server_secret);
// Throws std::runtime_error when the sealed text is malformed or HSEA_SECRET_KEY changed.
std::string unseal_secret(std::string_view sealed, std::string_view server_secret);

std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

// ------------------------------------------------------------------------ SSRF rules

// Whether an address may be the target of a webhook: false for loopback, private (RFC 1918,
// fc00::/7), link-local (169.254/16, fe80::/10, incl. the metadata services 169.254.169.254
// and fd00:ec2::254), CGNAT (100.64/10), multicast, unspecified, broadcast, documentation and
// reserved ranges; IPv4-mapped, -compatible, NAT64 and 6to4 IPv6 addresses are judged by the
// IPv4 address inside.
bool is_public_address(const sockaddr* address);
// The same for a textual IP literal; nullopt when `text` is not one.
std::optional<bool> is_public_ip(std::string_view text);

struct EndpointUrl {
  std::string url;     // as given
  std::string scheme;  // "http" | "https"
  std::string host;    // without brackets for IPv6
  int port = 0;
};
// Parses and checks an endpoint URL: absolute http(s), a host, no user info or fragment, at most
// 2048 characters; `require_https` refuses http. The error is the 422 message for /url.
std::expected<EndpointUrl, std::string> parse_endpoint_url(std::string_view url,
                                                           bool require_https);

// Resolves the host (blocking: call on the I/O pool) and refuses any non-public address unless
// `allow_private`. Returns the error message, empty when allowed.
std::string check_resolves_public(const EndpointUrl& url, bool allow_private);

// ------------------------------------------------------------------------------ retries

// The wait before retry `attempt` (1 after the first failure): 5 s, 5 min, 30 min, 2 h, 5 h,
// then 10 h, each plus up to 10% jitter.
std::chrono::milliseconds retry_backoff(int attempt);
// Attempts of one delivery job: the schedule above covers about three days.
inline constexpr int kMaxAttempts = 13;

void Register(runtime::Registrar& registrar);

}  // namespace hsea::webhooks
