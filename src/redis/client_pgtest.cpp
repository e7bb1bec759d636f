// Tests for the Redis client against a real redis-server. When HSEA_TEST_REDIS_URL is set the
// non-destructive tests use that server; tests that kill or configure the server (reconnect,
// AUTH/SELECT) always start their own redis-server on a free port.
#include "redis/client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace hsea::redis {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// ---- A redis-server child process -----------------------------------------------------------

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error("cannot find a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Blocking PING used only while the test thread waits for the server to come up.
bool answers_ping(int port, const std::string& password) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    std::string request = password.empty() ? "PING\r\n" : "AUTH " + password + "\r\nPING\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      std::string got;
      char buf[256];
      while (got.find("PONG") == std::string::npos) {
        ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
      }
      ok = got.find("+PONG") != std::string::npos;
    }
  }
  ::close(fd);
  return ok;
}

class RedisServer {
 public:
  explicit RedisServer(std::vector<std::string> extra_args = {}, std::string password = {})
      : port_(free_port()), extra_args_(std::move(extra_args)), password_(std::move(password)) {}
  ~RedisServer() { stop(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  void start() {
    std::vector<std::string> args = {"redis-server",
                                     "--port",
                                     std::to_string(port_),
                                     "--bind",
                                     "127.0.0.1",
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "no",
                                     "--daemonize",
                                     "no",
                                     "--dir",
                                     "/tmp",
                                     "--loglevel",
                                     "warning"};
    if (!password_.empty()) {
      args.push_back("--requirepass");
      args.push_back(password_);
    }
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawnp(&pid_, "redis-server", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = -1;
      throw std::runtime_error(std::string("cannot start redis-server: ") + std::strerror(rc));
    }
    auto deadline = steady_clock::now() + 10s;
    while (!answers_ping(port_, password_)) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("redis-server exited at start");
      }
      if (steady_clock::now() > deadline) throw std::runtime_error("redis-server did not answer");
      std::this_thread::sleep_for(20ms);
    }
  }

  // Simulates a crash.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    auto deadline = steady_clock::now() + 5s;
    while (::waitpid(pid_, nullptr, WNOHANG) == 0) {
      if (steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    pid_ = -1;
  }

  int port() const { return port_; }
  std::string url(const std::string& suffix = "") const {
    std::string auth = password_.empty() ? "" : ":" + password_ + "@";
    return "redis://" + auth + "127.0.0.1:" + std::to_string(port_) + suffix;
  }

 private:
  int port_;
  std::vector<std::string> extra_args_;
  std::string password_;
  pid_t pid_ = -1;
};

// ---- Driving the io_context from the test thread --------------------------------------------

bool run_until(asio::io_context& io, const std::function<bool()>& done, milliseconds limit) {
  auto deadline = steady_clock::now() + limit;
  while (!done()) {
    if (steady_clock::now() > deadline) return false;
    if (io.stopped()) io.restart();
    io.run_one_for(5ms);
  }
  return true;
}

void run_for(asio::io_context& io, milliseconds duration) {
  auto deadline = steady_clock::now() + duration;
  run_until(
      io, [&] { return steady_clock::now() >= deadline; }, duration + 1s);
}

// Runs one coroutine to completion and returns its result or rethrows its exception.
template <typename T>
T run(asio::io_context& io, asio::awaitable<T> coroutine, milliseconds limit = 10s) {
  struct State {
    bool done = false;
    std::optional<T> value;
    std::exception_ptr error;
  };
  auto state = std::make_shared<State>();
  asio::co_spawn(io, std::move(coroutine), [state](std::exception_ptr e, T v) {
    state->done = true;
    state->error = e;
    if (!e) state->value = std::move(v);
  });
  if (!run_until(
          io, [&] { return state->done; }, limit)) {
    throw std::runtime_error("test coroutine did not finish in time");
  }
  if (state->error) std::rethrow_exception(state->error);
  return std::move(*state->value);
}

Reply cmd(asio::io_context& io, Client& client, std::vector<std::string> args) {
  return run(io, client.command(std::move(args)));
}

std::string random_hex() {
  std::random_device rd;
  std::uniform_int_distribution<unsigned> dist;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%08x%08x", dist(rd), dist(rd));
  return buf;
}

void expect_string(const Reply& r, const std::string& value) {
  EXPECT_EQ(r.type, Reply::Type::kString) << "reply text: " << r.str;
  EXPECT_EQ(r.str, value);
}

// What happened to one command issued by a test coroutine.
struct Outcome {
  enum class State { kRunning, kReply, kCancelled, kUnavailable, kOtherError };
  State state = State::kRunning;
  Reply reply;
  std::string error;
};

// Issues one command; when cancel_after is non-zero, races it against a timer of that length.
asio::awaitable<void> issue(Client* client, std::vector<std::string> args,
                            milliseconds cancel_after, Outcome* out) {
  using namespace asio::experimental::awaitable_operators;
  try {
    if (cancel_after.count() > 0) {
      asio::steady_timer timer(co_await asio::this_coro::executor, cancel_after);
      auto result =
          co_await (client->command(std::move(args)) || timer.async_wait(asio::use_awaitable));
      if (result.index() == 0) {
        out->reply = std::get<0>(std::move(result));
        out->state = Outcome::State::kReply;
      } else {
        out->state = Outcome::State::kCancelled;
      }
    } else {
      out->reply = co_await client->command(std::move(args));
      out->state = Outcome::State::kReply;
    }
  } catch (const Unavailable& e) {
    out->state = Outcome::State::kUnavailable;
    out->error = e.what();
  } catch (const std::exception& e) {
    out->state = Outcome::State::kOtherError;
    out->error = e.what();
  }
}

void spawn_issue(asio::io_context& io, Client& client, std::vector<std::string> args,
                 milliseconds cancel_after, Outcome* out) {
  asio::co_spawn(io, issue(&client, std::move(args), cancel_after, out), [](std::exception_ptr e) {
    if (e) ADD_FAILURE() << "issue coroutine threw";
  });
}

// ---- Fixture --------------------------------------------------------------------------------

class RedisClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* env = std::getenv("HSEA_TEST_REDIS_URL"); env != nullptr && *env != '\0') {
      url_ = env;
    } else {
      server_ = std::make_unique<RedisServer>();
      server_->start();
      url_ = server_->url();
    }
    prefix_ = "hsea_test:" + random_hex() + ":";
  }

  void TearDown() override { server_.reset(); }

  std::unique_ptr<Client> connect(milliseconds timeout = 5s, const std::string& url = {}) {
    auto client = std::make_unique<Client>(io_, url.empty() ? url_ : url, timeout);
    client->start();
    EXPECT_TRUE(run_until(
        io_, [&] { return client->connected(); }, 5s))
        << "never connected";
    return client;
  }

  asio::io_context io_;
  std::unique_ptr<RedisServer> server_;
  std::string url_;
  std::string prefix_;
};

// ---- parse_url ------------------------------------------------------------------------------

TEST(RedisParseUrl, AcceptsWellFormedUrls) {
  Url a = parse_url("redis://localhost");
  EXPECT_EQ(a.host, "localhost");
  EXPECT_EQ(a.port, 6379);
  EXPECT_EQ(a.password, "");
  EXPECT_EQ(a.db, 0);

  Url b = parse_url("redis://127.0.0.1:6380");
  EXPECT_EQ(b.host, "127.0.0.1");
  EXPECT_EQ(b.port, 6380);

  Url c = parse_url("redis://:s%40cret@redis.internal:7000/3");
  EXPECT_EQ(c.host, "redis.internal");
  EXPECT_EQ(c.port, 7000);
  EXPECT_EQ(c.password, "s@cret");
  EXPECT_EQ(c.db, 3);

  Url d = parse_url("redis://[::1]:6390/1");
  EXPECT_EQ(d.host, "::1");
  EXPECT_EQ(d.port, 6390);
  EXPECT_EQ(d.db, 1);

  Url e = parse_url("redis://default:pw@cache/");
  EXPECT_EQ(e.host, "cache");
  EXPECT_EQ(e.password, "pw");
  EXPECT_EQ(e.db, 0);
}

TEST(RedisParseUrl, RejectsMalformedUrls) {
  const char* bad[] = {
      "",
      "http://localhost",
      "redis:/localhost",
      "redis://",
      "redis://:6379",
      "redis://host:",
      "redis://host:0",
      "redis://host:65536",
      "redis://host:63a9",
      "redis://host/x",
      "redis://host/-1",
      "redis://host/1/2",
      "redis://alice:pw@host",
      "redis://pw@host",
      "redis://:@host",
      "redis://:%zz@host",
      "redis://host?db=1",
      "redis://[::1",
      "redis://ho st",
      "redis://ho$t",
  };
  for (const char* url : bad) {
    EXPECT_THROW(parse_url(url), std::invalid_argument) << url;
  }
  asio::io_context io;
  EXPECT_THROW(Client(io, "redis://host:notaport", 1s), std::invalid_argument);
}

// ---- Round trips ----------------------------------------------------------------------------

TEST_F(RedisClientTest, RoundTripsEveryReplyType) {
  auto client = connect();
  const std::string key = prefix_ + "k";
  const std::string binary("a\r\nb\0c$3\r\n", 10);

  Reply set = cmd(io_, *client, {"SET", key, binary});
  EXPECT_EQ(set.type, Reply::Type::kStatus);
  EXPECT_EQ(set.str, "OK");
  expect_string(cmd(io_, *client, {"GET", key}), binary);

  Reply empty = cmd(io_, *client, {"ECHO", ""});
  expect_string(empty, "");

  const std::string counter = prefix_ + "counter";
  EXPECT_EQ(cmd(io_, *client, {"INCR", counter}).integer, 1);
  Reply incr = cmd(io_, *client, {"INCR", counter});
  EXPECT_EQ(incr.type, Reply::Type::kInteger);
  EXPECT_EQ(incr.integer, 2);

  // An error reply is returned, not thrown, and the connection stays usable.
  Reply err = cmd(io_, *client, {"INCR", key});
  EXPECT_TRUE(err.is_error());
  EXPECT_EQ(err.str.rfind("ERR", 0), 0u) << err.str;
  Reply unknown = cmd(io_, *client, {"NOSUCHCOMMAND", "x"});
  EXPECT_TRUE(unknown.is_error());

  Reply nil = cmd(io_, *client, {"GET", prefix_ + "missing"});
  EXPECT_EQ(nil.type, Reply::Type::kNil);
  EXPECT_FALSE(nil.is_error());

  const std::string list = prefix_ + "list";
  EXPECT_EQ(cmd(io_, *client, {"RPUSH", list, "one", "two", "three"}).integer, 3);
  Reply range = cmd(io_, *client, {"LRANGE", list, "0", "-1"});
  ASSERT_EQ(range.type, Reply::Type::kArray);
  ASSERT_EQ(range.elements.size(), 3u);
  expect_string(range.elements[0], "one");
  expect_string(range.elements[1], "two");
  expect_string(range.elements[2], "three");
  Reply none = cmd(io_, *client, {"LRANGE", prefix_ + "nolist", "0", "-1"});
  EXPECT_EQ(none.type, Reply::Type::kArray);
  EXPECT_TRUE(none.elements.empty());

  // Nested array with mixed element types.
  Reply multi = cmd(io_, *client, {"EVAL", "return {1, 'x', {2, 'y'}}", "0"});
  ASSERT_EQ(multi.type, Reply::Type::kArray);
  ASSERT_EQ(multi.elements.size(), 3u);
  EXPECT_EQ(multi.elements[0].integer, 1);
  expect_string(multi.elements[1], "x");
  ASSERT_EQ(multi.elements[2].elements.size(), 2u);
  expect_string(multi.elements[2].elements[1], "y");

  cmd(io_, *client, {"DEL", key, counter, list});
}

TEST_F(RedisClientTest, ConcurrentPipelinedCommandsEachGetTheirOwnReply) {
  auto client = connect();
  constexpr int kCallers = 8;
  constexpr int kPerCaller = 25;
  std::vector<Outcome> outcomes(kCallers * kPerCaller);
  std::vector<std::string> values(outcomes.size());
  // All 200 commands are queued before the io_context runs, so they share the pipeline.
  for (int caller = 0; caller < kCallers; ++caller) {
    for (int i = 0; i < kPerCaller; ++i) {
      std::size_t n = static_cast<std::size_t>(caller * kPerCaller + i);
      values[n] = prefix_ + "caller" + std::to_string(caller) + ":" + std::to_string(i);
      spawn_issue(io_, *client, {"ECHO", values[n]}, 0ms, &outcomes[n]);
    }
  }
  ASSERT_TRUE(run_until(
      io_,
      [&] {
        for (auto& o : outcomes)
          if (o.state == Outcome::State::kRunning) return false;
        return true;
      },
      10s));
  for (std::size_t n = 0; n < outcomes.size(); ++n) {
    ASSERT_EQ(outcomes[n].state, Outcome::State::kReply) << n << ": " << outcomes[n].error;
    expect_string(outcomes[n].reply, values[n]);
  }
}

// ---- Cancellation and deadlines -------------------------------------------------------------

TEST_F(RedisClientTest, CancelledCommandsNeverReceiveSomeoneElsesReply) {
  auto client = connect(10s);
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> cancel_ms(1, 400);
  constexpr int kCommands = 200;
  std::vector<Outcome> outcomes(kCommands);
  std::vector<std::vector<std::string>> commands(kCommands);
  int chosen = 0;
  for (int i = 0; i < kCommands; ++i) {
    if (i % 10 == 5) {
      // Blocks this connection's pipeline for 50 ms, then answers nil.
      commands[i] = {"BLPOP", prefix_ + "never" + std::to_string(i), "0.05"};
    } else {
      commands[i] = {"ECHO", prefix_ + "v" + std::to_string(i)};
    }
    milliseconds cancel_after{0};
    if (rng() % 2 == 0) {
      cancel_after = milliseconds(cancel_ms(rng));
      ++chosen;
    }
    spawn_issue(io_, *client, commands[i], cancel_after, &outcomes[i]);
  }
  ASSERT_TRUE(run_until(
      io_,
      [&] {
        for (auto& o : outcomes)
          if (o.state == Outcome::State::kRunning) return false;
        return true;
      },
      10s));

  int cancelled = 0;
  int replied = 0;
  for (int i = 0; i < kCommands; ++i) {
    const Outcome& o = outcomes[i];
    ASSERT_NE(o.state, Outcome::State::kUnavailable) << i << ": " << o.error;
    ASSERT_NE(o.state, Outcome::State::kOtherError) << i << ": " << o.error;
    if (o.state == Outcome::State::kCancelled) {
      ++cancelled;
      continue;
    }
    ++replied;
    if (commands[i][0] == "BLPOP") {
      EXPECT_EQ(o.reply.type, Reply::Type::kNil) << i;
    } else {
      expect_string(o.reply, commands[i][1]);
    }
  }
  // The test only means something if cancellations really happened mid-flight.
  EXPECT_GE(cancelled, 10) << "chosen for cancellation: " << chosen;
  // Randomly chosen, about half are never cancelled: plenty must have answered.
  EXPECT_GE(replied, kCommands / 5);

  // The same connection keeps answering each caller with its own reply.
  std::vector<Outcome> after(50);
  for (std::size_t i = 0; i < after.size(); ++i) {
    spawn_issue(io_, *client, {"ECHO", prefix_ + "after" + std::to_string(i)}, 0ms, &after[i]);
  }
  ASSERT_TRUE(run_until(
      io_,
      [&] {
        for (auto& o : after)
          if (o.state == Outcome::State::kRunning) return false;
        return true;
      },
      10s));
  for (std::size_t i = 0; i < after.size(); ++i) {
    ASSERT_EQ(after[i].state, Outcome::State::kReply) << after[i].error;
    expect_string(after[i].reply, prefix_ + "after" + std::to_string(i));
  }
  EXPECT_TRUE(client->connected());
}

TEST_F(RedisClientTest, CancellationSignalThrowsOperationAborted) {
  auto client = connect();
  asio::cancellation_signal signal;
  std::exception_ptr error;
  bool done = false;
  asio::co_spawn(io_, client->command({"BLPOP", prefix_ + "never", "0.3"}),
                 asio::bind_cancellation_slot(signal.slot(), [&](std::exception_ptr e, Reply) {
                   error = e;
                   done = true;
                 }));
  run_for(io_, 50ms);
  ASSERT_FALSE(done);
  auto started = steady_clock::now();
  signal.emit(asio::cancellation_type::terminal);
  ASSERT_TRUE(run_until(
      io_, [&] { return done; }, 2s));
  EXPECT_LT(steady_clock::now() - started, 200ms);
  ASSERT_TRUE(error);
  try {
    std::rethrow_exception(error);
  } catch (const boost::system::system_error& e) {
    EXPECT_EQ(e.code(), asio::error::operation_aborted);
  } catch (...) {
    ADD_FAILURE() << "expected system_error(operation_aborted)";
  }
  // The abandoned BLPOP's nil reply must be dropped, not handed to the next caller.
  expect_string(cmd(io_, *client, {"ECHO", "next"}), "next");
}

TEST_F(RedisClientTest, DeadlineThrowsUnavailableAndLaterRepliesStayAligned) {
  auto slow = connect(100ms);
  auto helper = connect(5s);
  const std::string key = prefix_ + "queue";

  auto started = steady_clock::now();
  EXPECT_THROW(cmd(io_, *slow, {"BLPOP", key, "2"}), Unavailable);
  auto elapsed = steady_clock::now() - started;
  EXPECT_GE(elapsed, 90ms);
  EXPECT_LT(elapsed, 1s);

  // Unblock the abandoned BLPOP: its reply is now an array, which must be dropped.
  EXPECT_EQ(cmd(io_, *helper, {"LPUSH", key, "payload"}).integer, 1);
  expect_string(cmd(io_, *slow, {"ECHO", "mine"}), "mine");
  EXPECT_EQ(cmd(io_, *helper, {"LLEN", key}).integer, 0);  // the BLPOP did take it
  EXPECT_TRUE(slow->connected());
}

TEST_F(RedisClientTest, StopFailsWaitingCommands) {
  auto client = connect();
  Outcome blocked;
  spawn_issue(io_, *client, {"BLPOP", prefix_ + "never", "2"}, 0ms, &blocked);
  run_for(io_, 30ms);
  auto started = steady_clock::now();
  client->stop();
  ASSERT_TRUE(run_until(
      io_, [&] { return blocked.state != Outcome::State::kRunning; }, 1s));
  EXPECT_EQ(blocked.state, Outcome::State::kUnavailable);
  EXPECT_LT(steady_clock::now() - started, 200ms);
  EXPECT_FALSE(client->connected());
  EXPECT_THROW(cmd(io_, *client, {"PING"}), Unavailable);
  // It stays stopped.
  run_for(io_, 300ms);
  EXPECT_FALSE(client->connected());
}

TEST_F(RedisClientTest, DestroyingTheClientFailsWaitingCommands) {
  auto client = connect();
  Outcome blocked;
  spawn_issue(io_, *client, {"BLPOP", prefix_ + "never", "2"}, 0ms, &blocked);
  run_for(io_, 30ms);
  client.reset();
  ASSERT_TRUE(run_until(
      io_, [&] { return blocked.state != Outcome::State::kRunning; }, 1s));
  EXPECT_EQ(blocked.state, Outcome::State::kUnavailable);
  run_for(io_, 200ms);  // background coroutines wind down without touching freed state
}

// ---- Own servers: AUTH/SELECT and reconnect -------------------------------------------------

TEST(RedisClientOwnServer, AuthenticatesAndSelectsDatabase) {
  RedisServer server({}, "s3cret");
  server.start();
  asio::io_context io;
  const std::string key = "hsea_test:auth:" + random_hex();

  Client db2(io, server.url("/2"), 5s);
  Client db0(io, server.url(), 5s);
  Client wrong(io, "redis://:wrong@127.0.0.1:" + std::to_string(server.port()), 5s);
  db2.start();
  db0.start();
  wrong.start();
  ASSERT_TRUE(run_until(
      io, [&] { return db2.connected() && db0.connected(); }, 5s));

  EXPECT_EQ(cmd(io, db2, {"SET", key, "v"}).str, "OK");
  expect_string(cmd(io, db2, {"GET", key}), "v");
  EXPECT_EQ(cmd(io, db0, {"GET", key}).type, Reply::Type::kNil);
  EXPECT_EQ(cmd(io, db0, {"SELECT", "2"}).str, "OK");
  expect_string(cmd(io, db0, {"GET", key}), "v");

  // A wrong password never counts as connected, and commands fail fast.
  EXPECT_FALSE(wrong.connected());
  EXPECT_THROW(cmd(io, wrong, {"PING"}), Unavailable);
}

TEST(RedisClientOwnServer, ReconnectsAfterServerRestart) {
  RedisServer server;
  server.start();
  asio::io_context io;
  Client client(io, server.url(), 5s);
  client.start();
  ASSERT_TRUE(run_until(
      io, [&] { return client.connected(); }, 5s));
  expect_string(cmd(io, client, {"ECHO", "before"}), "before");

  // A command waiting when the server dies fails with Unavailable, long before its deadline.
  Outcome waiting;
  spawn_issue(io, client, {"BLPOP", "hsea_test:never", "4"}, 0ms, &waiting);
  run_for(io, 50ms);
  auto killed = steady_clock::now();
  server.kill();
  ASSERT_TRUE(run_until(
      io, [&] { return waiting.state != Outcome::State::kRunning; }, 3s));
  EXPECT_EQ(waiting.state, Outcome::State::kUnavailable) << waiting.error;
  EXPECT_LT(steady_clock::now() - killed, 1s);

  ASSERT_TRUE(run_until(
      io, [&] { return !client.connected(); }, 2s));
  auto started = steady_clock::now();
  EXPECT_THROW(cmd(io, client, {"ECHO", "down"}), Unavailable);
  EXPECT_LT(steady_clock::now() - started, 50ms);  // fails at once, no waiting for a deadline

  // Let a few reconnect attempts fail, then bring the server back on the same port.
  run_for(io, 700ms);
  EXPECT_FALSE(client.connected());
  server.start();
  ASSERT_TRUE(run_until(
      io, [&] { return client.connected(); }, 5s))
      << "did not reconnect";
  expect_string(cmd(io, client, {"ECHO", "after"}), "after");
  EXPECT_EQ(cmd(io, client, {"INCR", "hsea_test:reconnect"}).integer, 1);
}

}  // namespace
}  // namespace hsea::redis
