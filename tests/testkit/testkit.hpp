#pragma once
// The one way tests get real services. scripts/test starts one PostgreSQL and one Redis and
// exports HSEA_TEST_DATABASE_ADMIN_URL and HSEA_TEST_REDIS_URL; each test makes its own
// migrated database from that server and, for black-box tests, starts the real `hsea serve`.
#include <boost/json/object.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace hsea::testkit {

// The value of a required environment variable; fails the test run clearly when unset.
std::string required_env(const char* name);

// A fresh database with its own application role, migrated by the real migration runner, and
// dropped when the object goes away.
class TestDatabase {
 public:
  explicit TestDatabase(bool run_migrations = true);
  ~TestDatabase();
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  const std::string& name() const { return name_; }
  const std::string& admin_url() const { return admin_url_; }  // owner (superuser) role
  const std::string& app_url() const { return app_url_; }      // the server's role

 private:
  std::string server_admin_url_;
  std::string name_;
  std::string role_;
  std::string admin_url_;
  std::string app_url_;
};

// Runs a blocking SQL statement (for test setup and checks), returning rows of text values.
std::vector<std::vector<std::string>> sql(const std::string& url, const std::string& statement,
                                          const std::vector<std::string>& params = {});

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};
// Runs the hsea binary with the given arguments and extra environment, to completion.
RunResult run_hsea(const std::vector<std::string>& args,
                   const std::map<std::string, std::string>& env);

// `hsea serve` on a free port against a database, started and stopped by the test.
class TestServer {
 public:
  // `command` "worker" starts `hsea worker` (no HTTP: port() stays 0) and returns once it runs.
  TestServer(const TestDatabase& db, std::map<std::string, std::string> env = {},
             std::string command = "serve");
  ~TestServer();
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& path) const;
  // Sends the signal and waits for the exit; returns the exit code (or -signal).
  int stop(int signal = 15, std::chrono::seconds timeout = std::chrono::seconds(20));
  std::string output() const;  // everything the server printed so far
  int pid() const { return pid_; }

 private:
  int pid_ = -1;
  int port_ = 0;
  std::string log_path_;
  std::string command_;
};

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names; the last value of each
  std::vector<std::string> set_cookies;        // every Set-Cookie value, in order
  std::string body;
  std::string header(const std::string& name) const;
  // The Set-Cookie value for `name` ("name=value; Path=/; ..."), or "".
  std::string cookie(std::string_view name) const;
};

// The body as a JSON object; records a test failure (and returns {}) when it is not one.
boost::json::object json_of(const HttpResponse& response);
// A string member of a JSON object ("" when absent or not a string).
std::string str(const boost::json::object& object, std::string_view key);

HttpResponse http(const std::string& method, const std::string& url, const std::string& body = "",
                  const std::vector<std::string>& headers = {}, long timeout_ms = 10000);
// The header line "Authorization: Bearer <credential>".
std::string bearer(const std::string& credential);
// The `code` of a problem+json answer; "" for any other answer.
std::string code_of(const HttpResponse& response);
// `path` on `server` with `token` as the bearer credential; a body is sent as JSON.
HttpResponse call(const TestServer& server, const std::string& method, const std::string& path,
                  const std::string& token, const std::string& body = "");

// Sends raw bytes on a new TCP connection (optionally a second part after a pause) and returns
// whatever comes back until the server closes or `timeout` passes.
std::string raw_exchange(int port, const std::string& bytes,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
                         const std::string& second_part = "",
                         std::chrono::milliseconds pause = std::chrono::milliseconds(0));

// users.email_index of an address as the test servers (HSEA_SECRET_KEY of TestServer) compute
// it: users' addresses are sealed, so tests find a user's row by this.
std::string email_index(const std::string& email);

// A message of the e-mail outbox with its sealed parts opened as the server opens them (the
// table holds recipient and content sealed: HSEA-047).
struct StoredMail {
  std::string id;
  std::string tenant_id;  // "" for a platform message
  std::string user_id;    // a platform message's recipient account
  std::string template_name;
  std::string status;
  std::string to_address;
  std::string to_name;
  std::string subject;
  std::string html;
  std::string text;
};
// Every message in mail_messages, oldest first, opened with the test servers' HSEA_SECRET_KEY
// (a part whose key is gone reads as "").
std::vector<StoredMail> stored_mail(const TestDatabase& db);
// Those of them sent to `address` (any case), with `template_name` when it is not empty.
std::vector<StoredMail> stored_mail_to(const TestDatabase& db, const std::string& address,
                                       const std::string& template_name = "");

// Multi-tenant fixtures, through the public API: a new user who owns a new tenant.
struct Account {
  std::string email;
  std::string password;
  std::string user_id;
  std::string tenant_id;  // the tenant made at sign-up
  std::string slug;
  std::string tenant_name;
  std::string access_token;  // bound to tenant_id
  std::string refresh_token;
};
// Signs up a fresh user (unique e-mail) owning a fresh tenant named after `organization`;
// records a test failure when the server refuses.
Account sign_up(const TestServer& server, const std::string& organization,
                const std::vector<std::string>& headers = {});
// Test setup, not the API (there is no invitation flow yet): makes `user_id` a member.
void add_member(const TestDatabase& db, const std::string& tenant_id, const std::string& user_id,
                const std::string& role);
// Test setup: puts the tenant's subscription on `plan` (as Stripe's events would), in the
// database; every node's entitlement cache is emptied by the change.
void set_plan(const TestDatabase& db, const std::string& tenant_id, const std::string& plan);

// Asks `done` every 100 ms until it holds or `timeout` passes; its last answer.
bool eventually(const std::function<bool()>& done,
                std::chrono::seconds timeout = std::chrono::seconds(30));

}  // namespace hsea::testkit
