// The database module on a real runtime: per-thread pools and errors that name their
// statement.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <atomic>
#include <thread>

#include "core/config.hpp"
#include "db/db.hpp"
#include "runtime/registrar.hpp"
#include "testkit/testkit.hpp"

namespace hsea::db {
namespace {

using namespace std::chrono_literals;

constexpr Query kBroken{"test_broken_statement", "SELECT * FROM no_such_table"};

core::EnvLookup env_for(const testkit::TestDatabase& db) {
  return [url = db.app_url()](std::string_view name) -> std::optional<std::string> {
    if (name == "HSEA_DATABASE_URL") return url;
    if (name == "HSEA_THREADS") return std::string("2");
    return std::nullopt;
  };
}

// One node: its own registrar (so its own node id), runtime and database module.
struct Node {
  Node(const core::Config& c, const core::EnvLookup& env) : config(c) {
    runtime::Registrar registrar(config, env);
    Register(registrar);
    app.emplace(std::move(registrar).finish());
    rt.emplace(runtime::RuntimeOptions{.threads = 2}, app->thread_services);
    rt->start();
  }
  ~Node() { rt->stop(); }

  // Runs the awaitable on I/O thread 0 and waits for it.
  template <typename T>
  T run(boost::asio::awaitable<T> work) {
    auto& io = *rt->io_contexts()[0];
    return boost::asio::co_spawn(io, std::move(work), boost::asio::use_future).get();
  }

  const core::Config& config;
  std::optional<runtime::Application> app;
  std::optional<runtime::Runtime> rt;
};

boost::asio::awaitable<std::string> failing_statement() {
  try {
    co_await pool().query(kBroken);
  } catch (const Error& e) {
    co_return e.query() + " " + e.sqlstate();
  }
  co_return "no error";
}

class DbModule : public ::testing::Test {
 protected:
  testkit::TestDatabase db_;
  core::EnvLookup env_ = env_for(db_);
  core::Config config_ = core::load_config(env_, false).value();
};

TEST_F(DbModule, DatabaseErrorsNameTheirStatement) {
  Node a(config_, env_);
  EXPECT_EQ(a.run(failing_statement()), "test_broken_statement 42P01");
}

TEST(QueryNames, ACollisionNamesBothStatements) {
  const Query queries[] = {
      {"same_name", "SELECT 1"}, {"other", "SELECT 2"}, {"same_name", "SELECT 3"}};
  try {
    check_query_names(queries);
    FAIL() << "the collision was not noticed";
  } catch (const std::logic_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("same_name"), std::string::npos) << what;
    EXPECT_NE(what.find("SELECT 1"), std::string::npos) << what;
    EXPECT_NE(what.find("SELECT 3"), std::string::npos) << what;
  }
  EXPECT_NO_THROW(check_query_names());  // every statement of this binary has its own name
}

}  // namespace
}  // namespace hsea::db
