#include "testkit/testkit.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "core/ids.hpp"
#include "db/blocking.hpp"
#include "db/migrations.hpp"
#include "security/pii.hpp"

namespace hsea::testkit {

namespace {
constexpr const char* kTestSecretKey = "test-secret-key-0123456789abcdef0123456789";
}  // namespace

std::string email_index(const std::string& email) {
  security::pii::configure(kTestSecretKey);
  std::string lower = email;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return security::pii::blind_index("users.email", lower);
}

std::vector<StoredMail> stored_mail(const TestDatabase& db) {
  security::pii::configure(kTestSecretKey);
  db::BlockingConnection conn(db.admin_url(), "testkit stored_mail");
  db::Result r = conn.exec(
      "SELECT id::text AS id, coalesce(tenant_id::text, '') AS tenant_id, "
      "coalesce(user_id::text, '') AS user_id, template, status, to_address, to_name, subject, "
      "html, text FROM mail_messages ORDER BY created_at, id");
  static const char* const kSealed[] = {"to_address", "to_name", "subject", "html", "text"};
  std::vector<std::string> values;
  for (int i = 0; i < r.rows(); ++i) {
    for (const char* c : kSealed) values.push_back(r.text(i, c));
  }
  security::pii::load_keys_blocking(conn, values);
  std::vector<StoredMail> out;
  for (int i = 0; i < r.rows(); ++i) {
    auto open = [&](const char* column) {
      return security::pii::open(std::string("mail_messages.") + column, r.get(i, column))
          .value_or("");
    };
    out.push_back(StoredMail{r.text(i, "id"), r.text(i, "tenant_id"), r.text(i, "user_id"),
                             r.text(i, "template"), r.text(i, "status"), open("to_address"),
                             open("to_name"), open("subject"), open("html"), open("text")});
  }
  return out;
}

std::vector<StoredMail> stored_mail_to(const TestDatabase& db, const std::string& address,
                                       const std::string& template_name) {
  auto lower = [](std::string v) {
    for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return v;
  };
  std::vector<StoredMail> out;
  for (StoredMail& m : stored_mail(db)) {
    if (lower(m.to_address) != lower(address)) continue;
    if (!template_name.empty() && m.template_name != template_name) continue;
    out.push_back(std::move(m));
  }
  return out;
}

std::string required_env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    throw std::runtime_error(fmt::format(
        "{} is not set: run the tests through ./scripts/test, which starts the services", name));
  }
  return v;
}

std::vector<std::vector<std::string>> sql(const std::string& url, const std::string& statement,
                                          const std::vector<std::string>& params) {
  db::BlockingConnection conn(url, "testkit::sql");
  // Without parameters the simple protocol runs scripts of several statements.
  db::Result res = params.empty() ? conn.exec_script(statement) : conn.exec(statement, params);
  std::vector<std::vector<std::string>> rows;
  for (int r = 0; r < res.rows(); ++r) {
    std::vector<std::string> row;
    for (int c = 0; c < res.columns(); ++c) row.emplace_back(res.get(r, c));
    rows.push_back(std::move(row));
  }
  return rows;
}

namespace {
std::string with_database(const std::string& url, const std::string& db, const std::string& user,
                          const std::string& password) {
  boost::urls::url u = boost::urls::parse_uri(url).value();
  u.set_path("/" + db);
  if (!user.empty()) {
    u.set_user(user);
    u.set_password(password);
  }
  return std::string(u.buffer());
}
}  // namespace

TestDatabase::TestDatabase(bool run_migrations) {
  server_admin_url_ = required_env("HSEA_TEST_DATABASE_ADMIN_URL");
  std::string suffix = core::random_hex(6);
  name_ = "hsea_test_" + suffix;
  role_ = "hsea_app_" + suffix;
  sql(server_admin_url_, "CREATE DATABASE " + name_);
  admin_url_ = with_database(server_admin_url_, name_, "", "");
  std::string password = core::random_hex(12);
  app_url_ = with_database(server_admin_url_, name_, role_, password);
  if (run_migrations) db::migrate(admin_url_, app_url_, db::embedded_migrations());
}

TestDatabase::~TestDatabase() {
  try {
    sql(server_admin_url_, "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    sql(server_admin_url_, "DROP ROLE IF EXISTS " + role_);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "testkit: cleanup failed: %s\n", e.what());
  }
}

namespace {
pid_t spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
            const std::string& output_path) {
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int fd = open(output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 1);
    dup2(fd, 2);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    std::string binary = HSEA_BINARY;
    argv.push_back(binary.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (true) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1000;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return -WTERMSIG(status);
}

std::string temp_path(const char* what) {
  return fmt::format("/tmp/hsea-test-{}-{}-{}.log", what, getpid(), core::random_hex(4));
}
}  // namespace

RunResult run_hsea(const std::vector<std::string>& args,
                   const std::map<std::string, std::string>& env) {
  std::string path = temp_path("run");
  pid_t pid = spawn(args, env, path);
  RunResult result;
  result.exit_code = wait_exit(pid, std::chrono::seconds(60));
  result.output = read_file(path);
  unlink(path.c_str());
  return result;
}

TestServer::TestServer(const TestDatabase& db, std::map<std::string, std::string> env,
                       std::string command) {
  std::map<std::string, std::string> full{
      {"HSEA_ENV", "test"},
      {"HSEA_HTTP_HOST", "127.0.0.1"},
      {"HSEA_HTTP_PORT", "0"},
      {"HSEA_THREADS", "2"},
      {"HSEA_DB_POOL_SIZE", "4"},
      {"HSEA_SECRET_KEY", kTestSecretKey},
      {"HSEA_DATABASE_URL", db.app_url()},
      {"HSEA_DATABASE_ADMIN_URL", db.admin_url()},
      {"HSEA_SHUTDOWN_GRACE_SECONDS", "5"},
      // Test suites sign up many accounts from 127.0.0.1; the sign-up limit has its own test.
      {"HSEA_SIGNUPS_PER_IP_PER_HOUR", "0"},
      // Nor would they stay within their plans' request rates (the free plan: 5 a second, 20 at
      // once); rate limits have their own tests (tests/ratelimit_httptest.cpp).
      {"HSEA_RATE_LIMIT_ENABLED", "false"},
  };
  for (auto& [k, v] : env) full[k] = v;
  command_ = command;
  log_path_ = temp_path("server");
  pid_ = spawn({command}, full, log_path_);
  static const std::regex kListening(R"(listening on http://[0-9.]+:(\d+))");
  static const std::regex kWorking(R"(worker running)");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    std::smatch m;
    std::string out = read_file(log_path_);
    if (command == "serve" && std::regex_search(out, m, kListening)) {
      port_ = std::stoi(m[1]);
      return;
    }
    if (command != "serve" && std::regex_search(out, kWorking)) return;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("hsea " + command + " exited at start:\n" + out);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw std::runtime_error("hsea " + command + " did not start:\n" + read_file(log_path_));
}

TestServer::~TestServer() {
  // A graceful stop (SIGKILL after 10 s) also lets a coverage build write its counters.
  if (pid_ > 0) stop(SIGTERM, std::chrono::seconds(10));
  // After a failure, the server's errors and warnings go to the test's output: a flake in CI
  // is then diagnosable from its log alone (ctest runs one test per process).
  if (::testing::UnitTest::GetInstance()->Failed()) {
    std::istringstream lines(read_file(log_path_));
    std::vector<std::string> kept;
    for (std::string line; std::getline(lines, line);) {
      if (line.find("\"level\":\"error\"") != std::string::npos ||
          line.find("\"level\":\"warn") != std::string::npos) {
        kept.push_back(std::move(line));
      }
    }
    std::size_t from = kept.size() > 40 ? kept.size() - 40 : 0;
    std::fprintf(stderr, "--- hsea %s: its last %zu errors and warnings\n", command_.c_str(),
                 kept.size() - from);
    for (std::size_t i = from; i < kept.size(); ++i) std::fprintf(stderr, "%s\n", kept[i].c_str());
  }
  unlink(log_path_.c_str());
}

std::string TestServer::url(const std::string& path) const {
  return fmt::format("http://127.0.0.1:{}{}", port_, path);
}

int TestServer::stop(int signal, std::chrono::seconds timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, signal);
  int code = wait_exit(pid_, timeout);
  pid_ = -1;
  return code;
}

std::string TestServer::output() const { return read_file(log_path_); }

std::string HttpResponse::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

std::string HttpResponse::cookie(std::string_view name) const {
  for (const auto& c : set_cookies) {
    if (c.starts_with(std::string(name) + "=")) return c;
  }
  return {};
}

boost::json::object json_of(const HttpResponse& r) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(r.body, ec);
  if (ec || !v.is_object()) {
    ADD_FAILURE() << "not a JSON object (status " << r.status << "): " << r.body;
    return {};
  }
  return std::move(v.as_object());
}

std::string str(const boost::json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_string()) return {};
  return std::string(it->value().as_string());
}

namespace {
size_t on_body(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}
size_t on_header(char* data, size_t size, size_t n, void* out) {
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
    auto* response = static_cast<HttpResponse*>(out);
    if (name == "set-cookie") response->set_cookies.push_back(value);
    response->headers[name] = value;
  }
  return size * n;
}
}  // namespace

std::string bearer(const std::string& credential) { return "Authorization: Bearer " + credential; }

std::string code_of(const HttpResponse& response) {
  if (response.header("content-type") != "application/problem+json") return "";
  return str(json_of(response), "code");
}

HttpResponse call(const TestServer& server, const std::string& method, const std::string& path,
                  const std::string& token, const std::string& body) {
  std::vector<std::string> headers{bearer(token)};
  if (!body.empty()) headers.emplace_back("Content-Type: application/json");
  return http(method, server.url(path), body, headers);
}

HttpResponse http(const std::string& method, const std::string& url, const std::string& body,
                  const std::vector<std::string>& headers, long timeout_ms) {
  static const bool kInit = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
  (void)kInit;
  HttpResponse out;
  CURL* curl = curl_easy_init();
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  if (!body.empty()) {
    bool has_type = false;
    for (const auto& h : headers) has_type |= h.rfind("Content-Type:", 0) == 0;
    if (!has_type) list = curl_slist_append(list, "Content-Type: application/json");
  }
  list = curl_slist_append(list, "Expect:");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "HEAD") curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &out);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  CURLcode rc = curl_easy_perform(curl);
  if (rc == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    out.status = static_cast<int>(status);
  }
  curl_slist_free_all(list);
  curl_easy_cleanup(curl);
  return out;
}

namespace {
void send_all(int fd, const std::string& bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and close before reading everything
    sent += static_cast<std::size_t>(n);
  }
}
}  // namespace

std::string raw_exchange(int port, const std::string& bytes, std::chrono::milliseconds timeout,
                         const std::string& second_part, std::chrono::milliseconds pause) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    throw std::runtime_error("connect failed");
  }
  send_all(fd, bytes);
  if (!second_part.empty()) {
    std::this_thread::sleep_for(pause);
    send_all(fd, second_part);
  }
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  return out;
}

Account sign_up(const TestServer& server, const std::string& organization,
                const std::vector<std::string>& headers) {
  Account a;
  std::string suffix = core::random_hex(5);
  a.email = "user-" + suffix + "@example.com";
  a.password = "correct horse battery staple 42";
  a.tenant_name = organization + " " + suffix;
  boost::json::object body{{"email", a.email},
                           {"password", a.password},
                           {"name", "User of " + organization},
                           {"organization_name", a.tenant_name}};
  HttpResponse r =
      http("POST", server.url("/api/auth/signup"), boost::json::serialize(body), headers);
  EXPECT_EQ(r.status, 201) << r.body;
  if (r.status != 201) return a;
  boost::json::object out = json_of(r);
  a.user_id = str(out.at("user").as_object(), "id");
  a.tenant_id = str(out.at("tenant").as_object(), "id");
  a.slug = str(out.at("tenant").as_object(), "slug");
  a.access_token = str(out, "access_token");
  a.refresh_token = str(out, "refresh_token");
  return a;
}

void add_member(const TestDatabase& db, const std::string& tenant_id, const std::string& user_id,
                const std::string& role) {
  sql(db.admin_url(), "INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, $3)",
      {tenant_id, user_id, role});
}

void set_plan(const TestDatabase& db, const std::string& tenant_id, const std::string& plan) {
  sql(db.admin_url(), "UPDATE subscriptions SET plan_id = $2 WHERE tenant_id = $1",
      {tenant_id, plan});
}

bool eventually(const std::function<bool()>& done, std::chrono::seconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

}  // namespace hsea::testkit
