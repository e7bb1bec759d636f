#include "db/blocking.hpp"

#include <libpq-fe.h>

#include <stdexcept>

namespace hsea::db {
namespace {

void check(PGresult* res) {
  auto status = PQresultStatus(res);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY) {
    std::string message = PQresultErrorMessage(res);
    PQclear(res);
    throw std::runtime_error(message);
  }
}

}  // namespace

BlockingConnection::BlockingConnection(const std::string& url, std::string_view what)
    : conn_(PQconnectdb(url.c_str())) {
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string message = std::string(what) + ": cannot connect: " + PQerrorMessage(conn_);
    PQfinish(conn_);
    throw std::runtime_error(message);
  }
}

BlockingConnection::~BlockingConnection() { PQfinish(conn_); }

Result BlockingConnection::exec(const std::string& sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.c_str());
  PGresult* res = PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                               values.data(), nullptr, nullptr, 0);
  check(res);
  return Result(res);
}

Result BlockingConnection::exec(const Query& query, const Params& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  PGresult* res = PQexecParams(conn_, query.sql, static_cast<int>(values.size()), nullptr,
                               values.data(), nullptr, nullptr, 0);
  check(res);
  return Result(res);
}

Result BlockingConnection::exec_script(std::string_view sql) {
  PGresult* res = PQexec(conn_, std::string(sql).c_str());
  check(res);
  return Result(res);
}

std::string BlockingConnection::quote_identifier(const std::string& name) {
  char* q = PQescapeIdentifier(conn_, name.c_str(), name.size());
  std::string out(q);
  PQfreemem(q);
  return out;
}

std::string BlockingConnection::quote_literal(const std::string& value) {
  char* q = PQescapeLiteral(conn_, value.c_str(), value.size());
  std::string out(q);
  PQfreemem(q);
  return out;
}

}  // namespace hsea::db
