#include "identity/throttle.hpp"

#include <gtest/gtest.h>

namespace hsea::identity {
namespace {

TEST(SignupThrottle, CountsPerAddressUpToTheLimit) {
  SignupThrottle throttle;
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(throttle.admit("198.51.100.7", 3)) << i;
  auto wait = throttle.admit("198.51.100.7", 3);
  ASSERT_TRUE(wait);
  EXPECT_GT(*wait, 3500);  // the rest of the hour
  EXPECT_LE(*wait, 3600);
  EXPECT_TRUE(throttle.admit("198.51.100.7", 3));   // refusals count nothing, and stay refused
  EXPECT_FALSE(throttle.admit("198.51.100.8", 3));  // another address
  // 0 turns the limit off.
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(throttle.admit("203.0.113.1", 0));
}

TEST(SignupThrottle, IPv6CountsPerSlash64) {
  EXPECT_EQ(SignupThrottle::client_key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(SignupThrottle::client_key("2001:DB8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
  EXPECT_EQ(SignupThrottle::client_key("2001:db8:1:3::1"), "2001:db8:1:3::/64");
  EXPECT_EQ(SignupThrottle::client_key("::1"), "::/64");
  EXPECT_EQ(SignupThrottle::client_key("::ffff:198.51.100.7"), "198.51.100.7");
  EXPECT_EQ(SignupThrottle::client_key("198.51.100.7"), "198.51.100.7");
  EXPECT_EQ(SignupThrottle::client_key("not an address"), "not an address");

  SignupThrottle throttle;
  EXPECT_FALSE(throttle.admit("2001:db8:1:2::1", 2));
  EXPECT_FALSE(throttle.admit("2001:db8:1:2:abcd::9", 2));
  EXPECT_TRUE(throttle.admit("2001:db8:1:2::ffff", 2));
  EXPECT_FALSE(throttle.admit("2001:db8:1:3::1", 2));
}

}  // namespace
}  // namespace hsea::identity
