// Cost of one Argon2id hash and one verification at HSEA's parameters (Google Benchmark).
// bench/run uses it to put the sign-in rate in proportion: the rate cannot exceed
// HSEA_BLOCKING_THREADS / verify time.
#include <benchmark/benchmark.h>

#include "identity/password.hpp"

static void BM_Argon2idHash(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(hsea::identity::hash_password("bench-password-1"));
}
BENCHMARK(BM_Argon2idHash)->Unit(benchmark::kMillisecond)->UseRealTime();

static void BM_Argon2idVerify(benchmark::State& state) {
  std::string hash = hsea::identity::hash_password("bench-password-1");
  for (auto _ : state) {
    benchmark::DoNotOptimize(hsea::identity::verify_password(hash, "bench-password-1"));
  }
}
BENCHMARK(BM_Argon2idVerify)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
