#pragma once
#include <string>

namespace hsea::core {

struct RedisUrl {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string password;
  int db = 0;
};
// "redis://[:password@]host[:port][/db]"; throws std::invalid_argument on a bad URL.
RedisUrl parse_redis_url(const std::string& url);

}  // namespace hsea::core
