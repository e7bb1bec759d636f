#include "core/ids.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>

namespace hsea::core {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void fill_random(unsigned char* out, std::size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) != 1) throw std::runtime_error("RAND_bytes failed");
}

bool is_hex(std::string_view s) {
  return std::ranges::all_of(
      s, [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Identifiers need uniqueness, not secrecy: a per-thread generator seeded from the CSPRNG
// avoids a locked RAND_bytes call (and its getpid) on every request. Tokens and keys use
// random_hex, which always reads the CSPRNG.
std::mt19937_64& id_generator() {
  thread_local std::mt19937_64 generator = [] {
    std::uint64_t seed[4];
    fill_random(reinterpret_cast<unsigned char*>(seed), sizeof seed);
    std::seed_seq seq{seed[0], seed[1], seed[2], seed[3]};
    return std::mt19937_64(seq);
  }();
  return generator;
}

}  // namespace

std::string uuid_v7() {
  std::array<unsigned char, 16> b{};
  auto& gen = id_generator();
  std::uint64_t r1 = gen(), r2 = gen();
  std::memcpy(b.data(), &r1, 8);
  std::memcpy(b.data() + 8, &r2, 8);
  auto ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count());
  // RFC 9562 method 1: within one millisecond the 12-bit rand_a field counts up, so ids made
  // by one thread sort in creation order; it starts low and random each millisecond.
  thread_local std::uint64_t last_ms = 0;
  thread_local std::uint16_t counter = 0;
  if (ms <= last_ms) {
    ms = last_ms;
    if (++counter > 0x0fff) {
      ++ms;
      counter = static_cast<std::uint16_t>(r1 & 0x03ff);
    }
  } else {
    counter = static_cast<std::uint16_t>(r1 & 0x03ff);
  }
  last_ms = ms;
  b[6] = static_cast<unsigned char>(counter >> 8);
  b[7] = static_cast<unsigned char>(counter & 0xff);
  for (int i = 0; i < 6; ++i) b[i] = static_cast<unsigned char>(ms >> (40 - 8 * i));
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x70);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[b[i] >> 4]);
    out.push_back(kHex[b[i] & 0x0f]);
  }
  return out;
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

std::string random_hex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  fill_random(reinterpret_cast<unsigned char*>(raw.data()), bytes);
  std::string out;
  out.reserve(bytes * 2);
  for (unsigned char c : raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0x0f]);
  }
  return out;
}

bool is_safe_request_id(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  return std::ranges::all_of(s, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
  });
}

std::string_view trace_id_from_traceparent(std::string_view h) {
  if (h.size() != 55 || h[2] != '-' || h[35] != '-' || h[52] != '-') return {};
  std::string_view version = h.substr(0, 2), trace = h.substr(3, 32), parent = h.substr(36, 16),
                   flags = h.substr(53, 2);
  if (!is_hex(version) || version == "ff" || !is_hex(trace) || !is_hex(parent) || !is_hex(flags)) {
    return {};
  }
  if (trace.find_first_not_of('0') == std::string_view::npos) return {};
  if (parent.find_first_not_of('0') == std::string_view::npos) return {};
  return trace;
}

}  // namespace hsea::core
