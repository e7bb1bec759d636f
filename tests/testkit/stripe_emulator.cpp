#include "testkit/stripe_emulator.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "testkit/testkit.hpp"

namespace hsea::testkit {

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string json_string(const std::string& s) {
  return boost::json::serialize(boost::json::value(s));
}

}  // namespace

StripeEmulator::StripeEmulator(std::string webhook_url, std::string webhook_secret)
    : webhook_secret_(std::move(webhook_secret)) {
  static int counter = 0;
  log_path_ = "/tmp/hsea-stripe-emulator-" + std::to_string(getpid()) + "-" +
              std::to_string(++counter) + ".log";
  std::string script = std::string(HSEA_SOURCE_DIR) + "/tests/stripe-emulator/dist/src/main.js";
  if (access(script.c_str(), R_OK) != 0) {
    throw std::runtime_error("the Stripe emulator is not built (" + script +
                             "): run ./scripts/setup");
  }
  std::vector<std::string> args{"node", script, "--port", "0"};
  if (!webhook_url.empty()) {
    args.insert(args.end(), {"--webhook-url", webhook_url, "--webhook-secret", webhook_secret_});
  }
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp("node", argv.data());
    _exit(127);
  }
  static const std::regex kListening(R"(listening (\d+))");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    std::smatch m;
    std::string out = slurp(log_path_);
    if (std::regex_search(out, m, kListening)) {
      port_ = std::stoi(m[1]);
      return;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("the Stripe emulator exited at start:\n" + out);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("the Stripe emulator did not start:\n" + slurp(log_path_));
}

StripeEmulator::~StripeEmulator() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  unlink(log_path_.c_str());
}

std::string StripeEmulator::api_base() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::map<std::string, std::string> StripeEmulator::hsea_env() const {
  return {{"HSEA_STRIPE_API_BASE", api_base()},
          {"HSEA_STRIPE_SECRET_KEY", secret_key_},
          {"HSEA_STRIPE_WEBHOOK_SECRET", webhook_secret_}};
}

std::string StripeEmulator::log() const { return slurp(log_path_); }

boost::json::value StripeEmulator::control(const std::string& method, const std::string& path,
                                           const std::string& json_body) const {
  auto r =
      http(method, api_base() + "/_emulator" + path, json_body, {"Content-Type: application/json"});
  if (r.status < 200 || r.status >= 300) {
    ADD_FAILURE() << "Stripe emulator " << method << " /_emulator" << path << " -> " << r.status
                  << ": " << r.body;
  }
  boost::system::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  return ec ? boost::json::value() : v;
}

boost::json::value StripeEmulator::api(const std::string& method, const std::string& path,
                                       const std::string& form) const {
  bool query = method == "GET" || method == "DELETE";
  std::string url = api_base() + path + (query && !form.empty() ? "?" + form : "");
  auto r = http(
      method, url, query ? "" : form,
      {"Authorization: Bearer " + secret_key_, "Content-Type: application/x-www-form-urlencoded"});
  boost::system::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  return ec ? boost::json::value() : v;
}

void StripeEmulator::set_webhook_url(const std::string& url) const {
  control("POST", "/webhook_endpoint",
          "{\"url\":" + json_string(url) + ",\"secret\":" + json_string(webhook_secret_) + "}");
}

void StripeEmulator::set_dunning(const std::vector<int>& retry_days,
                                 const std::string& final_status) const {
  std::string days;
  for (int d : retry_days) days += (days.empty() ? "" : ",") + std::to_string(d);
  control("POST", "/dunning",
          "{\"retry_days\":[" + days + "],\"final_status\":" + json_string(final_status) + "}");
}

void StripeEmulator::reset() const { control("POST", "/reset"); }

boost::json::value StripeEmulator::complete_checkout(const std::string& session_id_or_url,
                                                     const std::string& card) const {
  std::string id = session_id_or_url;
  if (auto slash = id.rfind('/'); slash != std::string::npos) id = id.substr(slash + 1);
  if (auto q = id.find('?'); q != std::string::npos) id = id.substr(0, q);
  return control("POST", "/checkout/" + id + "/complete", "{\"card\":" + json_string(card) + "}");
}

void StripeEmulator::fail_next_charges(const std::string& customer, int count) const {
  control("POST", "/customers/" + customer + "/charges",
          "{\"outcome\":\"fail\",\"count\":" + std::to_string(count) + "}");
}

void StripeEmulator::succeed_charges(const std::string& customer) const {
  control("POST", "/customers/" + customer + "/charges", "{\"outcome\":\"succeed\"}");
}

void StripeEmulator::advance_seconds(long long seconds) const {
  control("POST", "/time/advance", "{\"seconds\":" + std::to_string(seconds) + "}");
}

void StripeEmulator::hold_webhooks() const { control("POST", "/webhooks/hold"); }

void StripeEmulator::release_webhooks(const std::string& order, bool duplicate,
                                      int delay_ms) const {
  control("POST", "/webhooks/release",
          "{\"order\":" + json_string(order) + ",\"duplicate\":" + (duplicate ? "true" : "false") +
              ",\"delay_ms\":" + std::to_string(delay_ms) + "}");
}

void StripeEmulator::resend_event(const std::string& event_id, const std::string& secret,
                                  long long timestamp_offset) const {
  std::string body = "{\"timestamp_offset\":" + std::to_string(timestamp_offset);
  if (!secret.empty()) body += ",\"secret\":" + json_string(secret);
  control("POST", "/events/" + event_id + "/resend", body + "}");
}

std::string StripeEmulator::last_event_id(const std::string& type) const {
  auto v = api("GET", "/v1/events", "limit=1&type=" + type);
  if (!v.is_object() || !v.as_object().contains("data")) return "";
  auto& data = v.as_object().at("data").as_array();
  if (data.empty()) return "";
  return std::string(data.front().as_object().at("id").as_string());
}

bool StripeEmulator::wait_webhooks_idle(std::chrono::seconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto v = control("GET", "/webhooks/deliveries");
    if (v.is_object() && v.as_object().at("idle").as_bool()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

boost::json::array StripeEmulator::requests() const {
  auto v = control("GET", "/requests");
  return v.is_object() ? v.as_object().at("data").as_array() : boost::json::array();
}

boost::json::array StripeEmulator::deliveries() const {
  auto v = control("GET", "/webhooks/deliveries");
  return v.is_object() ? v.as_object().at("data").as_array() : boost::json::array();
}

RunResult StripeEmulator::sync_plans(const TestDatabase& db,
                                     std::map<std::string, std::string> env) const {
  for (auto& [k, v] : hsea_env()) env.emplace(k, v);
  env["HSEA_DATABASE_URL"] = db.app_url();
  env["HSEA_DATABASE_ADMIN_URL"] = db.admin_url();
  return run_hsea({"billing", "sync-plans"}, env);
}

void StripeEmulator::subscribe(const TestServer& server, const Account& account,
                               const std::string& plan, const std::string& interval) const {
  // Redirects back to TestServer's HSEA_PUBLIC_URL (allowed by HSEA's checkout).
  const std::string back = "http://127.0.0.1:8080/account/billing";
  HttpResponse r =
      http("POST", server.url("/api/subscriptions/checkout"),
           R"({"plan_id":")" + plan + R"(","interval":")" + interval + R"(","success_url":")" +
               back + R"(","cancel_url":")" + back + R"("})",
           {"Authorization: Bearer " + account.access_token, "Content-Type: application/json"});
  EXPECT_EQ(r.status, 201) << r.body;
  if (r.status != 201) return;
  complete_checkout(str(json_of(r), "checkout_url"));
  EXPECT_TRUE(wait_webhooks_idle());
}

}  // namespace hsea::testkit
