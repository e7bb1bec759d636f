// `hsea keys rotate-data`: re-wrap data keys, retire them, seal every value again under new keys.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <set>
#include <thread>

#include "db/blocking.hpp"
#include "db/db.hpp"
#include "security/pii.hpp"
#include "security/pii_internal.hpp"

namespace hsea::security::pii {

namespace {
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::vector<SealedColumn>& registry() {
  static std::vector<SealedColumn> columns;
  return columns;
}

// Re-seals one column's values that are plaintext or under a retired key, in id order.
long reseal_column(db::BlockingConnection& conn, const SealedColumn& c) {
  const std::string table = conn.quote_identifier(c.table), id = conn.quote_identifier(c.id_column),
                    col = conn.quote_identifier(c.column),
                    owner = conn.quote_identifier(c.owner_column);
  // Without a user_owner_column, "NULL": rows without an owner are left alone.
  const std::string user_col =
      c.user_owner_column.empty() ? "NULL" : conn.quote_identifier(c.user_owner_column);
  const std::string select = fmt::format(
      "SELECT {id}::text AS id, {owner}::text AS owner, {user_owner}::text AS user_owner, "
      "{col} AS value FROM {table} "
      "WHERE {id}::text > $1 AND {col} IS NOT NULL AND {col} <> '' AND "
      "coalesce({owner}::text, {user_owner}::text) IS NOT NULL AND "
      "(left({col}, 5) <> 'pii1.' OR substr({col}, 6, 36) IN "
      "(SELECT id::text FROM data_keys WHERE retired_at IS NOT NULL)) "
      "ORDER BY {id}::text LIMIT 500",
      fmt::arg("id", id), fmt::arg("owner", owner), fmt::arg("user_owner", user_col),
      fmt::arg("col", col), fmt::arg("table", table));
  const std::string update =
      c.index_column.empty()
          ? fmt::format("UPDATE {table} SET {col} = $3 WHERE {id}::text = $1 AND {col} = $2",
                        fmt::arg("id", id), fmt::arg("col", col), fmt::arg("table", table))
          : fmt::format(
                "UPDATE {table} SET {col} = $3, {index} = $4 WHERE {id}::text = $1 AND {col} = $2",
                fmt::arg("id", id), fmt::arg("col", col), fmt::arg("table", table),
                fmt::arg("index", conn.quote_identifier(c.index_column)));
  long resealed = 0;
  std::string after;
  while (true) {
    db::Result rows = conn.exec(select, {after});
    if (rows.empty()) break;
    std::vector<std::string> values;
    for (int i = 0; i < rows.rows(); ++i) values.push_back(rows.text(i, "value"));
    load_keys_blocking(conn, values);
    for (int i = 0; i < rows.rows(); ++i) {
      after = rows.text(i, "id");
      std::optional<std::string> plain = open(c.purpose, values[static_cast<std::size_t>(i)]);
      if (!plain) continue;  // its key is gone: nothing can open it, nothing to re-seal
      Owner o = rows.is_null(i, rows.column("owner")) ? user_owner(rows.text(i, "user_owner"))
                : c.owner_is_tenant                   ? tenant_owner(rows.text(i, "owner"))
                                                      : user_owner(rows.text(i, "owner"));
      // Only if unchanged meanwhile: a server that wrote it since used a current key.
      std::vector<std::string> params{after, values[static_cast<std::size_t>(i)],
                                      seal_blocking(conn, o, c.purpose, *plain)};
      if (!c.index_column.empty()) {
        std::string lower = *plain;
        std::ranges::transform(lower, lower.begin(), [](unsigned char ch) {
          return static_cast<char>(std::tolower(ch));
        });
        params.push_back(blind_index(c.purpose, lower));
      }
      db::Result u = conn.exec(update, params);
      resealed += u.affected();
    }
  }
  return resealed;
}
}  // namespace

void register_sealed_column(SealedColumn column) {
  std::lock_guard lock(registry_mutex());
  for (const auto& c : registry()) {
    if (c.table == column.table && c.column == column.column) return;
  }
  registry().push_back(std::move(column));
}

const std::vector<SealedColumn>& sealed_columns() { return registry(); }

RotationReport rotate_data(const std::string& admin_url, std::string_view previous_secret,
                           std::chrono::seconds cache_wait) {
  RotationReport report;
  db::BlockingConnection conn(admin_url, "keys rotate-data");
  forget_cached_keys();
  db::Result keys = conn.exec("SELECT id::text AS id, wrapped FROM data_keys ORDER BY id");
  for (int i = 0; i < keys.rows(); ++i) {
    if (detail::rewrap_if_needed(conn, keys.get(i, "id"), keys.get(i, "wrapped"),
                                 previous_secret)) {
      ++report.keys_rewrapped;
    }
  }
  report.keys_retired =
      conn.exec("UPDATE data_keys SET retired_at = now() WHERE retired_at IS NULL").affected();
  forget_cached_keys();
  // Servers seal with a current key they cached up to HSEA_PII_KEY_CACHE_SECONDS ago: wait until
  // none can still be using a retired one.
  std::this_thread::sleep_for(cache_wait);
  for (const SealedColumn& c : sealed_columns()) report.values_resealed += reseal_column(conn, c);

  std::set<std::string> referenced;
  for (const SealedColumn& c : sealed_columns()) {
    db::Result used = conn.exec(fmt::format(
        "SELECT DISTINCT substr({col}, 6, 36) AS id FROM {table} WHERE left({col}, 5) = 'pii1.'",
        fmt::arg("col", conn.quote_identifier(c.column)),
        fmt::arg("table", conn.quote_identifier(c.table))));
    for (int i = 0; i < used.rows(); ++i) referenced.insert(used.text(i, "id"));
  }
  std::string keep = "{";
  for (const auto& id : referenced) keep += (keep.size() > 1 ? "," : "") + id;
  keep += "}";
  report.keys_deleted =
      conn.exec("DELETE FROM data_keys WHERE retired_at IS NOT NULL AND id <> ALL($1::uuid[])",
                {keep})
          .affected();
  forget_cached_keys();
  return report;
}

}  // namespace hsea::security::pii
