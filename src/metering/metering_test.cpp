#include "metering/metering.hpp"

#include <gtest/gtest.h>

namespace hsea::metering {
namespace {

TEST(Metering, MonthOfIsTheUtcCalendarMonth) {
  // 2026-12-06T04:00:00Z
  Period p = month_of(1796529600);
  EXPECT_EQ(p.start, 1796083200);  // 2026-12-01
  EXPECT_EQ(p.end, 1798761600);    // 2027-01-01: December rolls over the year
  EXPECT_EQ(month_of(p.start).start, p.start);
  EXPECT_EQ(month_of(p.end - 1).end, p.end);
  EXPECT_EQ(month_of(p.end).start, p.end);
  Period feb = month_of(1709208000);  // 2024-02-29T12:00:00Z (leap year)
  EXPECT_EQ(feb.end - feb.start, 29 * 86400);
}

TEST(Metering, ParsesRfc3339AndRefusesTheRest) {
  EXPECT_EQ(parse_rfc3339("2026-12-06T04:00:00Z"), 1796529600);
  EXPECT_EQ(parse_rfc3339("2026-12-06T04:00:00.123456Z"), 1796529600);
  EXPECT_EQ(parse_rfc3339("2026-12-06T05:30:00+01:30"), 1796529600);
  EXPECT_EQ(parse_rfc3339("2026-12-06T02:00:00-02:00"), 1796529600);
  EXPECT_EQ(parse_rfc3339("2026-12-06t04:00:00z"), 1796529600);
  for (const char* bad : {"", "2026-12-06", "2026-12-06T04:00:00", "2026-12-06 04:00:00Z",
                          "2026-13-06T04:00:00Z", "2026-02-31T04:00:00Z", "2026-12-06T24:00:00Z",
                          "2026-12-06T04:00:00.Z", "2026-12-06T04:00:00+0100",
                          "2026-12-06T04:00:00Zjunk", "yesterday", "1969-12-31T23:59:59Z"}) {
    EXPECT_FALSE(parse_rfc3339(bad).has_value()) << bad;
  }
}

TEST(Metering, MeterNames) {
  EXPECT_TRUE(valid_meter("api_calls"));
  EXPECT_TRUE(valid_meter("emails.sent2"));
  EXPECT_TRUE(valid_meter(std::string(63, 'a')));
  EXPECT_FALSE(valid_meter(std::string(64, 'a')));
  EXPECT_FALSE(valid_meter(""));
  EXPECT_FALSE(valid_meter("2fa"));
  EXPECT_FALSE(valid_meter("Emails"));
  EXPECT_FALSE(valid_meter("a b"));
}

TEST(Metering, QuotaThresholds) {
  Quota q{.limit = 1000, .soft_percent = 80, .hard_percent = 110};
  EXPECT_EQ(q.soft(), 800);
  EXPECT_EQ(q.hard(), 1100);
  EXPECT_FALSE(q.warning(799));
  EXPECT_TRUE(q.warning(800));
  EXPECT_FALSE(q.exceeded(1099));
  EXPECT_TRUE(q.exceeded(1100));
  EXPECT_EQ(q.remaining(1000), 100);
  EXPECT_EQ(q.remaining(5000), 0);
  Quota unlimited;
  EXPECT_FALSE(unlimited.warning(1'000'000'000));
  EXPECT_FALSE(unlimited.exceeded(1'000'000'000));
}

}  // namespace
}  // namespace hsea::metering
