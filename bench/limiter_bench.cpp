// Rate-limit checks per second against a Redis server: `concurrency` coroutines on one
// io_context (one thread, one connection, commands pipelined as the server's I/O threads send
// them) each call ratelimit::check_on in a loop for `seconds`, every check on its own tenant's
// bucket at a rate that never refuses. Prints "checks_per_second=N sha=<the script's SHA1>" so
// bench/run can point redis-benchmark's EVALSHA at the same script.
//
//   hsea_bench_limiter redis://127.0.0.1:6379 [seconds=5] [concurrency=64]
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "ratelimit/gcra.hpp"
#include "ratelimit/ratelimit.hpp"
#include "ratelimit/rules.hpp"
#include "redis/client.hpp"

namespace {

using namespace hsea;
using Clock = std::chrono::steady_clock;

long long g_checks = 0;
long long g_refused = 0;
long long g_errors = 0;

boost::asio::awaitable<void> loop(redis::Client* client, int id, Clock::time_point until) {
  std::string key = ratelimit::bucket_key("bench-tenant-" + std::to_string(id), "api", "tenant",
                                          std::to_string(id));
  ratelimit::Rate rate{1'000'000'000, 1, 1'000'000'000};
  while (Clock::now() < until) {
    try {
      ratelimit::Decision d = co_await ratelimit::check_on(client, key, rate);
      ++g_checks;
      if (!d.allowed) ++g_refused;
    } catch (const std::exception&) {
      ++g_errors;
    }
  }
}

boost::asio::awaitable<void> load_sha(redis::Client* client, std::string* sha) {
  std::vector<std::string> load{"SCRIPT", "LOAD", std::string(ratelimit::kGcraScript)};
  redis::Reply r = co_await client->command(std::move(load));
  *sha = r.str;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: hsea_bench_limiter REDIS_URL [seconds] [concurrency]\n");
    return 2;
  }
  double seconds = argc > 2 ? std::stod(argv[2]) : 5;
  int concurrency = argc > 3 ? std::stoi(argv[3]) : 64;
  boost::asio::io_context io(1);
  redis::Client client(io, argv[1], std::chrono::milliseconds(2000));
  client.start();
  for (int i = 0; i < 500 && !client.connected(); ++i)
    io.run_one_for(std::chrono::milliseconds(10));
  if (!client.connected()) {
    std::fprintf(stderr, "hsea_bench_limiter: cannot connect to %s\n", argv[1]);
    return 1;
  }
  // Warm-up: loads the script (SCRIPT LOAD) on this connection.
  auto warm_until = Clock::now() + std::chrono::milliseconds(300);
  boost::asio::co_spawn(io, loop(&client, 0, warm_until), boost::asio::detached);
  while (Clock::now() < warm_until + std::chrono::milliseconds(50)) {
    io.run_one_for(std::chrono::milliseconds(10));
  }
  g_checks = g_refused = 0;
  auto start = Clock::now();
  auto until =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (int i = 0; i < concurrency; ++i) {
    boost::asio::co_spawn(io, loop(&client, i, until), boost::asio::detached);
  }
  while (Clock::now() < until + std::chrono::milliseconds(100)) {
    io.run_one_for(std::chrono::milliseconds(10));
  }
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  // The SHA1 the script loads under (Redis' own answer, asked once more).
  std::string sha;
  boost::asio::co_spawn(io, load_sha(&client, &sha), boost::asio::detached);
  for (int i = 0; i < 200 && sha.empty(); ++i) io.run_one_for(std::chrono::milliseconds(10));
  client.stop();
  for (int i = 0; i < 20; ++i) io.run_one_for(std::chrono::milliseconds(5));
  std::printf(
      "checks_per_second=%.0f checks=%lld refused=%lld errors=%lld seconds=%.2f "
      "concurrency=%d degraded=%d sha=%s\n",
      static_cast<double>(g_checks) / std::min(elapsed, seconds), g_checks, g_refused, g_errors,
      elapsed, concurrency, ratelimit::degraded() ? 1 : 0, sha.c_str());
  return g_errors == 0 && !ratelimit::degraded() ? 0 : 1;
}
