#include "core/ids.hpp"

#include <gtest/gtest.h>

#include <set>
#include <thread>

namespace hsea::core {
namespace {

TEST(Ids, UuidV7HasVersionVariantAndSortsByTime) {
  std::string a = uuid_v7();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  std::string b = uuid_v7();
  EXPECT_TRUE(is_uuid(a));
  EXPECT_EQ(a[14], '7');
  EXPECT_TRUE(a[19] == '8' || a[19] == '9' || a[19] == 'a' || a[19] == 'b') << a;
  EXPECT_LT(a, b);
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(uuid_v7());
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(Ids, UuidV7IsMonotonicWithinAThread) {
  std::string previous = uuid_v7();
  for (int i = 0; i < 20000; ++i) {
    std::string next = uuid_v7();
    ASSERT_LT(previous, next) << "at " << i;
    ASSERT_EQ(next[14], '7');
    previous = next;
  }
}

TEST(Ids, IsUuid) {
  EXPECT_TRUE(is_uuid("0190f5d2-7c3a-7b8e-9a01-23456789abcd"));
  EXPECT_FALSE(is_uuid("0190f5d2-7c3a-7b8e-9a01-23456789abc"));
  EXPECT_FALSE(is_uuid("0190f5d2x7c3a-7b8e-9a01-23456789abcd"));
  EXPECT_FALSE(is_uuid("' OR 1=1 --"));
}

TEST(Ids, RandomHex) {
  EXPECT_EQ(random_hex(16).size(), 32u);
  EXPECT_NE(random_hex(16), random_hex(16));
}

TEST(Ids, SafeRequestId) {
  EXPECT_TRUE(is_safe_request_id("abc-123_X.y:z"));
  EXPECT_FALSE(is_safe_request_id(""));
  EXPECT_FALSE(is_safe_request_id(std::string(129, 'a')));
  EXPECT_FALSE(is_safe_request_id("a b"));
  EXPECT_FALSE(is_safe_request_id("line\nbreak"));
  EXPECT_FALSE(is_safe_request_id("<script>"));
}

TEST(Ids, Traceparent) {
  EXPECT_EQ(trace_id_from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(trace_id_from_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            "");
  EXPECT_EQ(trace_id_from_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            "");
  EXPECT_EQ(trace_id_from_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            "");
  EXPECT_EQ(trace_id_from_traceparent("garbage"), "");
}

}  // namespace
}  // namespace hsea::core
