#!/usr/bin/env bash
# A clone in a directory only root can enter (mode 700 under a mode-700 parent, like a clone under
# /root) must still run scripts/run and scripts/test: the postgres OS user cannot reach the clone,
# so the private cluster has to live elsewhere, and the directory's permissions must stay as they
# are. Copies the source tree's scripts/ (as they are on disk) into such a directory and runs from
# there:
#   1. scripts/lib/services.sh directly: pg_start, pg_ensure_db, a restart that keeps the data,
#      redis_start, pg_stop, pg_remove;
#   2. scripts/test's service start (svc_run_ctest) with TMPDIR private too, running a tiny CTest
#      directory whose one test queries the PostgreSQL and Redis it was given;
#   3. the real scripts/run --check with HSEA_BINARY (no build): setup, cluster, migrate, serve
#      until /health/live answers, stop.
# Every cluster, wherever it was put, is stopped and removed at the end (also on failure).
#
#   tests/scripts/clone_in_private_dir_test.sh SOURCE_DIR HSEA_BINARY
#
# Exit status 77 (skipped) when not run as root: without root, PostgreSQL runs as the caller and
# there is nothing to test.
set -euo pipefail
src=$(cd "${1:?usage: $0 SOURCE_DIR HSEA_BINARY}" && pwd -P)
binary=${2:?usage: $0 SOURCE_DIR HSEA_BINARY}
binary=$(cd "$(dirname "$binary")" && pwd -P)/$(basename "$binary")
pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
# shellcheck disable=SC2034 # read by scripts/lib/services.sh, sourced below
SVC_NAME='private-dir-test'

if [ "$(id -u)" -ne 0 ]; then
  echo "skipped: needs root (PostgreSQL then runs as the postgres user, which the test is about)"
  exit 77
fi
if ! getent passwd postgres >/dev/null; then
  echo "skipped: no postgres OS user"
  exit 77
fi

log() { printf 'clone_in_private_dir_test: %s\n' "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}

private=$(mktemp -d "${TMPDIR:-/tmp}/hsea-private.XXXXXX")
chmod 700 "$private"
clone=$private/clone
mkdir -m 700 "$clone" "$private/tmp"
homes_file=$private/homes # clusters put outside $private, one directory a line

# Stops and removes every cluster the scripts created, wherever they put it, without relying on
# the scripts under test (they may be the broken ones).
cleanup() {
  local link home pid
  for link in "$clone/var/pg" "$private"/tmp/hsea-test.*/pg; do
    [ -L "$link" ] && readlink -m "$link" >>"$homes_file"
  done
  echo "$clone/var/pg" >>"$homes_file"
  while read -r home; do
    [ -L "$home" ] && continue
    if [ -f "$home/data/postmaster.pid" ]; then
      su postgres -s /bin/sh -c "cd / && $pg_bin/pg_ctl stop -D '$home/data' -m immediate -w" \
        >/dev/null 2>&1 || true
    fi
    case $home in "$private"/*) ;; *) rm -rf "$home" ;; esac
  done <"$homes_file"
  for pid in "$clone/var/redis/redis.pid" "$private"/tmp/hsea-test.*/redis/redis.pid; do
    [ -s "$pid" ] && kill -TERM "$(cat "$pid")" 2>/dev/null
  done
  rm -rf "$private"
  # The relocation roots, when nothing else is left in them.
  rmdir /var/lib/hsea /tmp/hsea-pg 2>/dev/null || true
}
trap cleanup EXIT

# shellcheck disable=SC2016 # $1 expands in the child shell
if su postgres -s /bin/sh -c 'cd "$1"' sh "$clone" 2>/dev/null; then
  fail "precondition: the postgres user can enter $clone"
fi
cp -a "$src/scripts" "$clone/"
modes_before=$(stat -c '%a %U' "$private" "$clone")

# Outside the clone, and owned by the postgres user, or the test proves nothing.
check_home() { # LINK
  local home
  [ -L "$1" ] || fail "$1 is not a link to the cluster's real place"
  home=$(readlink -m "$1")
  echo "$home" >>"$homes_file"
  case $home in "$private"/*) fail "$1 links inside the private directory ($home)" ;; esac
  [ "$(stat -c %U "$home/data")" = postgres ] || fail "$home/data is not owned by postgres"
  log "ok: $1 -> $home"
}

# 1. The services library, from the clone.
log "1. scripts/lib/services.sh in $clone"
(
  cd "$clone"
  # shellcheck source=scripts/lib/services.sh
  source scripts/lib/services.sh
  read -r pg_port redis_port < <(free_port 2)
  svc_on_exit pg_stop var/pg
  pg_start var/pg "$pg_port"
  pg_ensure_db "$pg_port" hsea
  check_home var/pg
  psql=("$pg_bin/psql" -X -q -tA -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres -d hsea)
  "${psql[@]}" -c 'CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)'
  pg_stop var/pg
  pg_start var/pg "$pg_port"
  [ "$("${psql[@]}" -c 'SELECT x FROM kept')" = 42 ] || fail "the cluster lost its data on restart"
  log "ok: restart reuses the cluster"
  svc_on_exit redis_stop var/redis
  redis_start var/redis "$redis_port"
  [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping)" = PONG ] || fail "Redis does not answer"
  redis_stop var/redis
  home=$(readlink -m var/pg)
  pg_remove var/pg
  if [ -e var/pg ] || [ -e "$home" ]; then fail "pg_remove left $home or var/pg behind"; fi
  log "ok: pg_remove deletes the cluster and the link"
)

# 2. scripts/test's service start, with the temporary directory private as well.
log "2. svc_run_ctest with TMPDIR=$private/tmp"
mkdir "$private/ctest"
cat >"$private/ctest/services_answer.sh" <<EOF
set -eu
[ "\$("$pg_bin/psql" -X -tA "\$HSEA_TEST_DATABASE_ADMIN_URL" -c 'SELECT 41 + 1')" = 42 ]
[ "\$(redis-cli -u "\$HSEA_TEST_REDIS_URL" ping)" = PONG ]
link=\$(echo "$private"/tmp/hsea-test.*/pg)
[ -L "\$link" ]
readlink -m "\$link" >>"$homes_file"
EOF
cat >"$private/ctest/CTestTestfile.cmake" <<EOF
add_test(services_answer "/bin/bash" "$private/ctest/services_answer.sh")
EOF
(
  cd "$clone"
  # shellcheck source=scripts/lib/services.sh
  source scripts/lib/services.sh
  TMPDIR=$private/tmp svc_run_ctest "$private/ctest"
  exit "$SVC_CTEST_STATUS"
) || fail "svc_run_ctest failed from a private TMPDIR"
test_home=$(tail -n 1 "$homes_file")
case $test_home in "$private"/*) fail "the test cluster stayed in the private TMPDIR" ;; esac
[ ! -e "$test_home" ] || fail "svc_run_ctest left its cluster in $test_home"
if compgen -G "$private/tmp/hsea-test.*" >/dev/null; then
  fail "svc_run_ctest left its temporary directory"
fi
log "ok: svc_run_ctest's cluster lived in $test_home and is gone"

# 3. scripts/run itself, with the prebuilt binary.
log "3. scripts/run --check in $clone"
read -r http_port pg_port < <(
  # shellcheck source=scripts/lib/services.sh
  source "$clone/scripts/lib/services.sh"
  free_port 2
)
run_log=$private/run.log
if ! env -u HSEA_DATABASE_URL -u HSEA_DATABASE_ADMIN_URL -u HSEA_REDIS_URL -u HSEA_SECRET_KEY \
  HSEA_BINARY="$binary" HSEA_PG_PORT="$pg_port" HSEA_HTTP_PORT="$http_port" HSEA_THREADS=1 \
  HSEA_ACCESS_LOG=false "$clone/scripts/run" --check >"$run_log" 2>&1; then
  cat "$run_log" >&2
  fail "scripts/run --check failed"
fi
grep -q 'the cluster lives in' "$run_log" || fail "scripts/run did not say where the cluster is"
grep -q '/health/live answered' "$run_log" || fail "scripts/run --check did not reach the server"
check_home "$clone/var/pg"
if "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port"; then
  fail "scripts/run left PostgreSQL running"
fi

[ "$(stat -c '%a %U' "$private" "$clone")" = "$modes_before" ] ||
  fail "the private directories' permissions changed"
log "ok: the private directories are still mode 700"
log "passed"
