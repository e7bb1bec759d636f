// Server-side request forgery rules: which addresses a webhook may reach, and endpoint URLs.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <cstring>
#include <memory>

#include "webhooks/webhooks.hpp"

namespace hsea::webhooks {
namespace {

bool in_v4(std::uint32_t a, std::uint32_t net, int bits) {
  std::uint32_t mask = bits == 0 ? 0 : ~std::uint32_t{0} << (32 - bits);
  return (a & mask) == (net & mask);
}

constexpr std::uint32_t v4(int a, int b, int c, int d) {
  return (std::uint32_t(a) << 24) | (std::uint32_t(b) << 16) | (std::uint32_t(c) << 8) |
         std::uint32_t(d);
}

// `a` in host order.
bool public_v4(std::uint32_t a) {
  struct Net {
    std::uint32_t net;
    int bits;
  };
  static constexpr Net kBlocked[] = {
      {v4(0, 0, 0, 0), 8},        // "this network", unspecified
      {v4(10, 0, 0, 0), 8},       // private
      {v4(100, 64, 0, 0), 10},    // carrier-grade NAT
      {v4(127, 0, 0, 0), 8},      // loopback
      {v4(169, 254, 0, 0), 16},   // link-local, cloud metadata (169.254.169.254)
      {v4(172, 16, 0, 0), 12},    // private
      {v4(192, 0, 0, 0), 24},     // IETF protocol assignments
      {v4(192, 0, 2, 0), 24},     // documentation
      {v4(192, 88, 99, 0), 24},   // 6to4 relay anycast
      {v4(192, 168, 0, 0), 16},   // private
      {v4(198, 18, 0, 0), 15},    // benchmarking
      {v4(198, 51, 100, 0), 24},  // documentation
      {v4(203, 0, 113, 0), 24},   // documentation
      {v4(224, 0, 0, 0), 4},      // multicast
      {v4(240, 0, 0, 0), 4},      // reserved, broadcast
  };
  for (const Net& n : kBlocked) {
    if (in_v4(a, n.net, n.bits)) return false;
  }
  return true;
}

std::uint32_t v4_at(const unsigned char* b) {
  return (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) |
         std::uint32_t(b[3]);
}

bool public_v6(const unsigned char* b) {
  static constexpr unsigned char kZero[16] = {};
  // ::/96 holds :: (unspecified), ::1 (loopback) and the deprecated IPv4-compatible addresses.
  if (std::memcmp(b, kZero, 12) == 0) {
    std::uint32_t tail = v4_at(b + 12);
    return tail > 1 && public_v4(tail);
  }
  // ::ffff:0:0/96 IPv4-mapped.
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(b, kMapped, 12) == 0) return public_v4(v4_at(b + 12));
  // 64:ff9b::/96 NAT64 (and 64:ff9b:1::/48, local use): the IPv4 address at the end.
  static constexpr unsigned char kNat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(b, kNat64, 12) == 0) return public_v4(v4_at(b + 12));
  if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0 && b[5] == 1) {
    return false;
  }
  // 2002::/16 6to4: the IPv4 address in bits 16-47.
  if (b[0] == 0x20 && b[1] == 0x02) return public_v4(v4_at(b + 2));
  if ((b[0] & 0xfe) == 0xfc) return false;                  // fc00::/7 unique local (fd00:ec2::254)
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return false;  // fe80::/10 link-local
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return false;  // fec0::/10 site-local (deprecated)
  if (b[0] == 0xff) return false;                           // multicast
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) return false;  // 2001:db8::/32
  if (b[0] == 0x01 && b[1] == 0x00 && std::memcmp(b + 2, kZero, 6) == 0) return false;  // 100::/64
  // 2001::/23 IETF protocol assignments (Teredo 2001::/32 among them).
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] < 0x02) return false;
  return true;
}

}  // namespace

bool is_public_address(const sockaddr* address) {
  if (address == nullptr) return false;
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    return public_v4(ntohl(in->sin_addr.s_addr));
  }
  if (address->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    return public_v6(in6->sin6_addr.s6_addr);
  }
  return false;
}

std::optional<bool> is_public_ip(std::string_view text) {
  std::string s(text);
  sockaddr_in in{};
  if (inet_pton(AF_INET, s.c_str(), &in.sin_addr) == 1) {
    in.sin_family = AF_INET;
    return is_public_address(reinterpret_cast<const sockaddr*>(&in));
  }
  sockaddr_in6 in6{};
  if (inet_pton(AF_INET6, s.c_str(), &in6.sin6_addr) == 1) {
    in6.sin6_family = AF_INET6;
    return is_public_address(reinterpret_cast<const sockaddr*>(&in6));
  }
  return std::nullopt;
}

std::expected<EndpointUrl, std::string> parse_endpoint_url(std::string_view text,
                                                           bool require_https) {
  if (text.empty() || text.size() > 2048) return std::unexpected("must be 1 to 2048 characters");
  auto parsed = boost::urls::parse_absolute_uri(text);
  if (!parsed) return std::unexpected("must be an absolute http or https URL");
  const boost::urls::url_view& u = *parsed;
  std::string scheme(u.scheme());
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "http" && scheme != "https") {
    return std::unexpected("must be an absolute http or https URL");
  }
  if (require_https && scheme != "https") return std::unexpected("must use https");
  if (!u.has_authority() || u.encoded_host().empty()) return std::unexpected("must name a host");
  if (u.has_userinfo()) return std::unexpected("must not hold a user name or password");
  if (u.has_fragment()) return std::unexpected("must not have a fragment");
  EndpointUrl out;
  out.url = std::string(text);
  out.scheme = scheme;
  switch (u.host_type()) {
    case boost::urls::host_type::ipv6:
      out.host = std::string(u.encoded_host_address());
      break;
    case boost::urls::host_type::ipv4:
    case boost::urls::host_type::name:
      out.host = u.host();
      break;
    default:
      return std::unexpected("must name a host by DNS name or IP address");
  }
  for (char c : out.host) {
    if (c == '%' || static_cast<unsigned char>(c) <= ' ') {
      return std::unexpected("must name a host by DNS name or IP address");
    }
  }
  if (u.has_port()) {
    std::string_view port = u.port();
    long n = 0;
    for (char c : port) n = n > 65535 ? n : n * 10 + (c - '0');
    if (port.empty() || port.size() > 5 || n < 1 || n > 65535) {
      return std::unexpected("has a bad port");
    }
    out.port = static_cast<int>(n);
  } else {
    out.port = scheme == "https" ? 443 : 80;
  }
  return out;
}

std::string check_resolves_public(const EndpointUrl& url, bool allow_private) {
  if (allow_private) return "";
  if (auto literal = is_public_ip(url.host)) {
    return *literal ? "" : "must not point at a loopback, private, link-local or reserved address";
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::string port = std::to_string(url.port);
  if (getaddrinfo(url.host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return "names a host that does not resolve";
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(found, freeaddrinfo);
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    if (!is_public_address(a->ai_addr)) {
      return "resolves to a loopback, private, link-local or reserved address";
    }
  }
  return "";
}

}  // namespace hsea::webhooks
