#pragma once
// Blocking libpq for short command-line steps (migrate, key rotation, maintenance) and for
// start-up, never for serving requests: the one other way to run SQL, kept to this class.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "db/db.hpp"

struct pg_conn;

namespace hsea::db {

class BlockingConnection {
 public:
  // Throws std::runtime_error("<what>: cannot connect: ...") when the server cannot be reached.
  BlockingConnection(const std::string& url, std::string_view what);
  ~BlockingConnection();
  BlockingConnection(const BlockingConnection&) = delete;
  BlockingConnection& operator=(const BlockingConnection&) = delete;

  // One statement with text parameters (extended protocol); throws std::runtime_error with
  // PostgreSQL's message.
  Result exec(const std::string& sql, const std::vector<std::string>& params = {});
  // The same with NULLs (nullopt): a named statement's text can run here unchanged.
  Result exec(const Query& query, const Params& params);
  // Several statements at once (simple protocol), e.g. a migration file; returns the result of
  // the last one.
  Result exec_script(std::string_view sql);

  std::string quote_identifier(const std::string& name);
  std::string quote_literal(const std::string& value);

 private:
  pg_conn* conn_;
};

}  // namespace hsea::db
