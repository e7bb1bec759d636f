# shellcheck shell=bash
# The one way HSEA's scripts start and stop services (PostgreSQL 15, Redis) and run the tests
# against them. Sourced by scripts/run, scripts/test, scripts/coverage and bench/run; it defines
# functions only and changes nothing when sourced, apart from installing the cleanup traps
# (see svc_on_exit).
#
#   free_port [COUNT]          print COUNT (default 1) distinct free TCP ports on 127.0.0.1
#   pg_start DIR PORT          start a private cluster (DIR/data, created if missing) on PORT
#   pg_stop DIR                stop it (fast shutdown)
#   pg_remove DIR              stop it and delete it (also where it was relocated to, see below)
#   pg_ensure_db PORT NAME     create database NAME if missing (as the postgres superuser)
#   redis_start DIR PORT       start a private Redis (no persistence) on PORT
#   redis_stop DIR             stop it
#   svc_on_exit CMD [ARG...]   run CMD when the script exits (also on failure, Ctrl-C, SIGTERM),
#                              in reverse order of registration
#   svc_run_ctest BUILD_DIR [CTEST_ARGS...]
#                              start PostgreSQL and Redis on free ports in a temporary directory,
#                              run CTest in BUILD_DIR against them, stop them, remove the
#                              directory; sets SVC_CTEST_STATUS to ctest's exit status
#
# Messages go to stderr, prefixed with SVC_NAME (set it to the calling script's name).
#
# Where a cluster lives: as root, PostgreSQL runs as the postgres OS user, which must be able to
# enter DIR. When a parent of DIR is not searchable for it (a clone under /root, mode 700), the
# cluster is kept instead in a directory the postgres user owns under PG_RELOCATE_ROOT (default
# /var/lib/hsea; svc_run_ctest's temporary clusters use /tmp/hsea-pg), named after DIR's path
# (e.g. /var/lib/hsea/root-src-hsea-var-pg-1a2b3c4d), and DIR becomes a symbolic link to it. The
# permissions of DIR's parents are left alone; the relocation is logged, and pg_stop and
# pg_remove follow the link.

SVC_NAME=${SVC_NAME:-services}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_OS_USER=${PG_OS_USER:-postgres}
PG_RELOCATE_ROOT=${PG_RELOCATE_ROOT:-/var/lib/hsea}

svc_log() { printf '%s: %s\n' "$SVC_NAME" "$*" >&2; }
svc_die() {
  svc_log "error: $*"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Cleanup registry: one EXIT trap runs every registered command (newest first); INT and TERM exit
# with the conventional status so the EXIT trap runs for them too. A script that needs its own
# INT/TERM handling (scripts/run forwards them to the server) may replace those two traps; the
# EXIT trap stays.
_SVC_CLEANUPS=()

_svc_run_cleanups() {
  local i
  for ((i = ${#_SVC_CLEANUPS[@]} - 1; i >= 0; i--)); do
    eval "${_SVC_CLEANUPS[i]}" || true
  done
  _SVC_CLEANUPS=()
}

svc_on_exit() {
  _SVC_CLEANUPS+=("$(printf '%q ' "$@")")
}

trap '_svc_run_cleanups' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# free_port [COUNT]: asks the kernel for COUNT distinct free ports by binding 127.0.0.1:0 (all
# sockets are held open together, so the ports differ). Without python3, picks random ports
# below the ephemeral range that no socket in /proc/net/tcp{,6} uses.
free_port() {
  local count=${1:-1}
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$count" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
    return
  fi
  local used=" " ports=() port tries=0 _sl local_addr _rest
  while read -r _sl local_addr _rest; do
    [[ $local_addr == *:* ]] && used+="$((16#${local_addr##*:})) "
  done < <(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null)
  while ((${#ports[@]} < count)); do
    ((tries++ < 1000)) || svc_die "free_port: no free port found"
    port=$((20000 + RANDOM % 12000))
    [[ $used == *" $port "* ]] && continue
    [[ " ${ports[*]} " == *" $port "* ]] && continue
    ports+=("$port")
  done
  echo "${ports[*]}"
}

# Runs a command as the PostgreSQL OS user (initdb and postgres refuse root); directly otherwise.
_pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    su "$PG_OS_USER" -s /bin/bash -c "cd / && $(printf '%q ' "$@")"
  else
    "$@"
  fi
}

_abs_path() {
  case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$(pwd -P)" "$1" ;;
  esac
}

# _pg_can_enter DIR: true when the PostgreSQL OS user can enter DIR (DIR and every parent
# searchable for it). Without root, PostgreSQL runs as the caller, who can.
_pg_can_enter() {
  [ "$(id -u)" -eq 0 ] || return 0
  # shellcheck disable=SC2016 # $1 expands in the child shell
  su "$PG_OS_USER" -s /bin/sh -c 'cd "$1"' sh "$1" >/dev/null 2>&1
}

# _pg_home DIR (absolute): sets _PG_HOME to the directory that really holds DIR's cluster: DIR,
# or the directory DIR links to (an earlier relocation), or, when the postgres user cannot enter
# DIR's parent, a new directory under PG_RELOCATE_ROOT that DIR is made a link to. Creates the
# directory (not owned by anyone in particular yet; pg_start hands it to the postgres user).
_PG_HOME=
_pg_mkroot() { # DIR: creates DIR, searchable for everyone, unless it exists
  [ -d "$1" ] && return
  mkdir -p "$1"
  chmod 755 "$1"
}
_pg_home() {
  local dir=$1 parent key hash home
  if [ -L "$dir" ]; then
    _PG_HOME=$(readlink -m "$dir")
    # Recreated when gone (e.g. /tmp cleared at boot); PostgreSQL then starts a new cluster.
    _pg_mkroot "$(dirname "$_PG_HOME")"
    mkdir -p "$_PG_HOME"
    return
  fi
  parent=$(dirname "$dir")
  mkdir -p "$parent"
  if _pg_can_enter "$parent"; then
    mkdir -p "$dir"
    _PG_HOME=$dir
    return
  fi
  if [ -e "$dir" ]; then
    # An empty directory is what an earlier, failed start left; anything else is not ours to move.
    rmdir "$dir" 2>/dev/null ||
      svc_die "the $PG_OS_USER user cannot reach $dir (a parent directory is not searchable)" \
        "and $dir is not empty; move its cluster elsewhere or make the parents searchable"
  fi
  # Named after DIR: the tail of its path, made safe, and a hash of the whole path (unique).
  key=$(printf '%s' "${dir#/}" | tr -c 'A-Za-z0-9._-' '-')
  hash=$(printf '%s' "$dir" | sha256sum | cut -c1-8)
  if ((${#key} > 48)); then key=${key: -48}; fi
  home=$PG_RELOCATE_ROOT/$key-$hash
  _pg_mkroot "$PG_RELOCATE_ROOT"
  _pg_can_enter "$PG_RELOCATE_ROOT" ||
    svc_die "the $PG_OS_USER user cannot reach $dir (a parent directory is not searchable)," \
      "nor PG_RELOCATE_ROOT=$PG_RELOCATE_ROOT; set PG_RELOCATE_ROOT to a directory it can enter"
  mkdir -p "$home"
  ln -s "$home" "$dir"
  svc_log "the $PG_OS_USER user cannot reach $dir (a parent directory is not searchable):" \
    "the cluster lives in $home instead ($dir links there)"
  _PG_HOME=$home
}

# ---------------------------------------------------------------------------------------------
# pg_start DIR PORT: DIR/data is the cluster (initdb'd on first use, reused after), DIR/postgres.log
# the server log (DIR may be relocated, see the top of this file). Trust authentication on
# 127.0.0.1 only; durable settings (fsync and synchronous_commit on). Returns once the server
# accepts connections.
pg_start() {
  local dir port data sockdir log conf
  dir=$(_abs_path "${1:?pg_start DIR PORT}")
  port=${2:?pg_start DIR PORT}
  [ -x "$PG_BIN/initdb" ] || svc_die "PostgreSQL 15 not found in $PG_BIN (run ./scripts/setup)"

  _pg_home "$dir"
  dir=$_PG_HOME
  data=$dir/data
  log=$dir/postgres.log
  if [ "$(id -u)" -eq 0 ]; then
    chown "$PG_OS_USER:" "$dir"
    chmod 700 "$dir"
    # shellcheck disable=SC2016 # $1 expands in the child shell
    su "$PG_OS_USER" -s /bin/sh -c 'test -w "$1"' sh "$dir" ||
      svc_die "the $PG_OS_USER user cannot write to $dir"
  fi
  # Unix socket beside the cluster when the path is short enough (sun_path is 108 bytes).
  sockdir=$dir
  if ((${#dir} > 80)); then sockdir=/tmp; fi

  if [ ! -s "$data/PG_VERSION" ]; then
    svc_log "creating PostgreSQL cluster in $data"
    _pg_as_owner "$PG_BIN/initdb" -D "$data" -U postgres -E UTF8 --no-locale \
      --auth-local=trust --auth-host=trust >"$dir/initdb.log" 2>&1 ||
      {
        cat "$dir/initdb.log" >&2
        svc_die "initdb failed"
      }
    echo "include_if_exists = 'hsea.conf'" >>"$data/postgresql.conf"
    cat >"$data/pg_hba.conf" <<'EOF'
# Private cluster for HSEA development, tests and benchmarks: trust, but only on loopback and
# through the unix socket (whose directory only the postgres user and root can enter).
local all all               trust
host  all all 127.0.0.1/32  trust
EOF
    chown "$PG_OS_USER:" "$data/pg_hba.conf" 2>/dev/null || true
  fi

  # Written on every start so the port and settings follow the caller.
  conf=$data/hsea.conf
  cat >"$conf" <<EOF
# Written by scripts/lib/services.sh on every start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sockdir'
unix_socket_permissions = 0700
max_connections = 200
shared_buffers = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  chown "$PG_OS_USER:" "$conf" 2>/dev/null || true

  if _pg_as_owner "$PG_BIN/pg_ctl" status -D "$data" >/dev/null 2>&1; then
    local running_port
    running_port=$(sed -n 4p "$data/postmaster.pid" 2>/dev/null || true)
    if [ "$running_port" = "$port" ]; then
      svc_log "PostgreSQL already running in $data on port $port; reusing it"
      _pg_wait_ready "$port" "$log"
      return
    fi
    svc_log "PostgreSQL in $data runs on port $running_port; restarting it on $port"
    _pg_as_owner "$PG_BIN/pg_ctl" stop -D "$data" -m fast -w -t 60 >/dev/null
  fi

  svc_log "starting PostgreSQL on 127.0.0.1:$port (data $data, log $log)"
  if ! _pg_as_owner "$PG_BIN/pg_ctl" start -D "$data" -l "$log" -w -t 60 >/dev/null; then
    tail -n 20 "$log" >&2 2>/dev/null || true
    svc_die "PostgreSQL did not start (log: $log)"
  fi
  _pg_wait_ready "$port" "$log"
}

_pg_wait_ready() {
  local port=$1 log=$2 i
  for ((i = 0; i < 60; i++)); do
    if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1; then
      return 0
    fi
    sleep 0.5
  done
  tail -n 20 "$log" >&2 2>/dev/null || true
  svc_die "PostgreSQL on port $port does not answer (log: $log)"
}

# pg_stop DIR: fast shutdown (rolls back open transactions, checkpoints); immediate if that hangs.
pg_stop() {
  local dir data
  dir=$(_abs_path "${1:?pg_stop DIR}")
  if [ -L "$dir" ]; then dir=$(readlink -m "$dir"); fi
  data=$dir/data
  [ -f "$data/postmaster.pid" ] || return 0
  if _pg_as_owner "$PG_BIN/pg_ctl" status -D "$data" >/dev/null 2>&1; then
    svc_log "stopping PostgreSQL ($data)"
    _pg_as_owner "$PG_BIN/pg_ctl" stop -D "$data" -m fast -w -t 60 >/dev/null 2>&1 ||
      _pg_as_owner "$PG_BIN/pg_ctl" stop -D "$data" -m immediate -w -t 30 >/dev/null 2>&1 ||
      svc_log "warning: PostgreSQL in $data did not stop"
  fi
}

# pg_remove DIR: stops the cluster and deletes it: DIR, and the directory it links to when the
# cluster was relocated.
pg_remove() {
  local dir
  dir=$(_abs_path "${1:?pg_remove DIR}")
  pg_stop "$dir"
  if [ -L "$dir" ]; then
    rm -rf "$(readlink -m "$dir")"
    rm -f "$dir"
  else
    rm -rf "$dir"
  fi
}

# pg_ensure_db PORT NAME: creates the database if it does not exist.
pg_ensure_db() {
  local port=${1:?pg_ensure_db PORT NAME} name=${2:?pg_ensure_db PORT NAME}
  local exists
  # psql interpolates :'name' (as a quoted literal) only in statements read from stdin.
  exists=$(printf "SELECT 1 FROM pg_database WHERE datname = :'name';\n" |
    "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -tA \
      -v ON_ERROR_STOP=1 -v name="$name") || svc_die "cannot query PostgreSQL on port $port"
  if [ "$exists" != 1 ]; then
    svc_log "creating database $name"
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres "$name"
  fi
}

# ---------------------------------------------------------------------------------------------
# redis_start DIR PORT: an in-memory Redis bound to 127.0.0.1 (no RDB, no AOF), daemonized with
# its pid file and log in DIR.
redis_start() {
  local dir port
  dir=$(_abs_path "${1:?redis_start DIR PORT}")
  port=${2:?redis_start DIR PORT}
  command -v redis-server >/dev/null 2>&1 || svc_die "redis-server not found (run ./scripts/setup)"
  mkdir -p "$dir"
  if [ -s "$dir/redis.pid" ] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then
    if [ "$(cat "$dir/redis.port" 2>/dev/null)" = "$port" ]; then
      svc_log "Redis already running in $dir on port $port; reusing it"
      _redis_wait_ready "$dir" "$port"
      return
    fi
    redis_stop "$dir"
  fi
  svc_log "starting Redis on 127.0.0.1:$port (log $dir/redis.log)"
  echo "$port" >"$dir/redis.port"
  redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes --save '' --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" ||
    svc_die "redis-server failed to start (log: $dir/redis.log)"
  _redis_wait_ready "$dir" "$port"
}

_redis_wait_ready() {
  local dir=$1 port=$2 i
  for ((i = 0; i < 50; i++)); do
    if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
      return 0
    fi
    sleep 0.2
  done
  tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
  svc_die "Redis on port $port does not answer (log: $dir/redis.log)"
}

# redis_stop DIR: SIGTERM (nothing to save), SIGKILL after 10 s.
redis_stop() {
  local dir pid i
  dir=$(_abs_path "${1:?redis_stop DIR}")
  [ -s "$dir/redis.pid" ] || return 0
  pid=$(cat "$dir/redis.pid")
  if kill -0 "$pid" 2>/dev/null; then
    svc_log "stopping Redis ($dir)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      svc_log "warning: Redis did not stop on SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$dir/redis.pid"
}

# ---------------------------------------------------------------------------------------------
# svc_run_ctest BUILD_DIR [CTEST_ARGS...]: the test run shared by scripts/test and
# scripts/coverage. Services live in a fresh temporary directory that is removed afterwards, also
# on failure or Ctrl-C. CTest's status is left in SVC_CTEST_STATUS (the function itself returns 0
# so callers keep `set -e` semantics for everything else).
SVC_CTEST_STATUS=
svc_run_ctest() {
  local build_dir=${1:?svc_run_ctest BUILD_DIR [CTEST_ARGS...]}
  shift
  local tmp pg_port redis_port
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/hsea-test.XXXXXX")
  svc_on_exit rm -rf "$tmp"
  chmod 755 "$tmp" # so that the postgres user can enter $tmp/pg when TMPDIR's parents allow
  read -r pg_port redis_port < <(free_port 2)

  svc_on_exit pg_remove "$tmp/pg"
  # When TMPDIR is private (e.g. libpam-tmpdir's /tmp/user/0), the cluster goes to /tmp/hsea-pg.
  PG_RELOCATE_ROOT=/tmp/hsea-pg pg_start "$tmp/pg" "$pg_port"
  svc_on_exit redis_stop "$tmp/redis"
  redis_start "$tmp/redis" "$redis_port"

  export HSEA_TEST_DATABASE_ADMIN_URL="postgresql://postgres@127.0.0.1:$pg_port/postgres"
  export HSEA_TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
  svc_log "HSEA_TEST_DATABASE_ADMIN_URL=$HSEA_TEST_DATABASE_ADMIN_URL"
  svc_log "HSEA_TEST_REDIS_URL=$HSEA_TEST_REDIS_URL"
  svc_log "running: ctest --test-dir $build_dir --output-on-failure --no-tests=error -j2 --timeout 300 $*"

  SVC_CTEST_STATUS=0
  ctest --test-dir "$build_dir" --output-on-failure --no-tests=error -j2 --timeout 300 "$@" || SVC_CTEST_STATUS=$?

  redis_stop "$tmp/redis"
  pg_stop "$tmp/pg"
  if [ "$SVC_CTEST_STATUS" -eq 0 ]; then
    svc_log "all tests passed"
  else
    svc_log "tests FAILED (ctest exit status $SVC_CTEST_STATUS)"
  fi
}
