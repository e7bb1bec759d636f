#include "identity/auth_cache.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace hsea::identity {
namespace {

TEST(AuthCache, RemembersUntilInvalidated) {
  AuthCache& cache = AuthCache::for_this_thread();
  cache.put_api_key("h1", {"t1", "k1", {"read"}});
  cache.put_session("u1", "s1", "t1", {"owner", "active"});
  ASSERT_TRUE(cache.api_key("h1"));
  EXPECT_EQ(cache.api_key("h1")->tenant_id, "t1");
  EXPECT_EQ(cache.session("u1", "s1", "t1")->role, "owner");
  EXPECT_FALSE(cache.session("u1", "s1", "t2"));  // per tenant
  invalidate_auth_cache();
  EXPECT_FALSE(cache.api_key("h1"));
  EXPECT_FALSE(cache.session("u1", "s1", "t1"));
}

// A session's cached admission is its owner's only: a validly signed token that names another
// user with that session id must miss the cache (and then fail the scoped query).
TEST(AuthCache, SessionEntriesAreBoundToTheirUser) {
  AuthCache& cache = AuthCache::for_this_thread();
  cache.put_session("owner-user", "s9", "t9", {"owner", "active"});
  ASSERT_TRUE(cache.session("owner-user", "s9", "t9"));
  EXPECT_FALSE(cache.session("other-user", "s9", "t9"));
  EXPECT_FALSE(cache.session("", "s9", "t9"));
  // No split of the parts spells another combination's key.
  cache.put_session("a", "b:c", "d", {"member", "active"});
  EXPECT_FALSE(cache.session("a:b", "c", "d"));
  EXPECT_FALSE(cache.session("a", "b", "c:d"));
  cache.put_session("u/s", "x", "t", {"admin", "active"});
  EXPECT_FALSE(cache.session("u", "s/x", "t"));
  EXPECT_EQ(cache.session("u/s", "x", "t")->role, "admin");
}

// The query after a miss may have read what a revocation heard of meanwhile changed: what it
// admitted is used once, not remembered.
TEST(AuthCache, AnAdmissionReadAcrossARevocationIsNotKept) {
  AuthCache& cache = AuthCache::for_this_thread();
  ASSERT_FALSE(cache.api_key("h3"));
  ASSERT_FALSE(cache.session("u3", "s3", "t3"));
  invalidate_local_auth_cache();  // another node's revocation arrives during the query
  cache.put_api_key("h3", {"t3", "k3", {}});
  cache.put_session("u3", "s3", "t3", {"owner", "active"});
  EXPECT_FALSE(cache.api_key("h3"));
  EXPECT_FALSE(cache.session("u3", "s3", "t3"));
  // Looked up again after it: remembered as usual.
  cache.put_api_key("h3", {"t3", "k3", {}});
  cache.put_session("u3", "s3", "t3", {"owner", "active"});
  EXPECT_TRUE(cache.api_key("h3"));
  EXPECT_TRUE(cache.session("u3", "s3", "t3"));
}

TEST(AuthCache, InvalidationReachesOtherThreads) {
  std::atomic<int> stage{0};
  bool seen_before = false, seen_after = true;
  std::thread other([&] {
    AuthCache& cache = AuthCache::for_this_thread();
    cache.put_api_key("h2", {"t", "k", {}});
    seen_before = cache.api_key("h2").has_value();
    stage = 1;
    while (stage != 2) std::this_thread::yield();
    seen_after = cache.api_key("h2").has_value();
  });
  while (stage != 1) std::this_thread::yield();
  invalidate_auth_cache();
  stage = 2;
  other.join();
  EXPECT_TRUE(seen_before);
  EXPECT_FALSE(seen_after);
}

}  // namespace
}  // namespace hsea::identity
