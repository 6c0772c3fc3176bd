#!/usr/bin/env bash
# A private PostgreSQL for the integration tests: 127.0.0.1:55432 only, its own data directory,
# never the system cluster. Subcommands:
#   start   initialise (first time) and start it; if it already runs, just say so (idempotent)
#   stop    stop it (fast shutdown) if it runs
#   status  exit 0 when it runs
#   url     print the connection URL of the test database
#
# The data directory is target/test-servers/postgres/data in the repository; if the postgres
# user cannot traverse the repository path, a directory under /tmp keyed by that path is used.
# The server writes to its own log file and runs in its own session, so it never inherits the
# caller's stdout/stderr (a `cargo test | tail` would otherwise wait for it forever).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PORT=55432
DB=ferry_test
ROLE=ferry
PASSWORD=ferry
URL="postgres://${ROLE}:${PASSWORD}@127.0.0.1:${PORT}/${DB}"

usage() {
  echo "usage: $0 start|stop|status|url" >&2
  exit 2
}

[ $# -eq 1 ] || usage
cmd="$1"
if [ "$cmd" = url ]; then
  echo "$URL"
  exit 0
fi
case "$cmd" in start | stop | status) ;; *) usage ;; esac

# Run a command as the postgres user (PostgreSQL refuses to run as root).
if [ "$(id -u)" = 0 ]; then
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

# The newest installed server binaries; install them with apt only when missing.
find_bin() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
    echo "$d"
  fi
}
BIN="$(find_bin)"
if [ -z "$BIN" ]; then
  [ "$cmd" = start ] || { echo "postgres: not installed" >&2; [ "$cmd" = stop ] && exit 0 || exit 1; }
  apt_install postgres postgresql
  BIN="$(find_bin)"
  [ -n "$BIN" ] || { echo "postgres: installation did not provide initdb" >&2; exit 1; }
fi

# Where the data lives: in the repository if the postgres user can get there, else under /tmp.
BASE="$ROOT/target/test-servers/postgres"
mkdir -p "$BASE"
if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$BASE"; then
  key="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
  BASE="/tmp/ferry-test-servers-$key/postgres"
  mkdir -p "$BASE"
fi
DATA="$BASE/data"
LOG="$BASE/postgres.log"
[ "$(id -u)" = 0 ] && chown postgres: "$BASE"

# One caller at a time (test binaries may start it concurrently). The server must not inherit
# the lock's descriptor (`9>&-` below), or the lock would live as long as the server.
exec 9>"$BASE/.lock"
flock 9

running() {
  [ -f "$DATA/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

pid() {
  head -n 1 "$DATA/postmaster.pid" 2>/dev/null || echo "?"
}

psql_admin() {
  as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$DATA" -p "$PORT" -U postgres -d postgres "$@"
}

case "$cmd" in
status)
  if running; then
    echo "postgres: running (pid $(pid)) at 127.0.0.1:$PORT, data $DATA"
  else
    echo "postgres: not running"
    exit 1
  fi
  ;;
stop)
  if running; then
    as_pg "$BIN/pg_ctl" -D "$DATA" stop -m fast -w >/dev/null
    echo "postgres: stopped"
  else
    echo "postgres: not running"
  fi
  ;;
start)
  if running; then
    echo "postgres: already running (pid $(pid)) at 127.0.0.1:$PORT: $URL"
    exit 0
  fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres: "$DATA"
    chmod 700 "$DATA"
    # Host (TCP) logins need a SCRAM password; the unix socket in the data directory, only
    # reachable by the postgres user, is trusted for the setup below.
    as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-host=scram-sha-256 --auth-local=trust \
      --encoding=UTF8 --locale=C.UTF-8 >"$BASE/initdb.log" 2>&1 ||
      { echo "postgres: initdb failed, see $BASE/initdb.log" >&2; exit 1; }
  fi
  : >>"$LOG"
  [ "$(id -u)" = 0 ] && chown postgres: "$LOG"
  if ! as_pg setsid "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$DATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start </dev/null >>"$LOG" 2>&1 9>&-; then
    echo "postgres: failed to start (port $PORT in use?); last lines of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
  fi
  # The test role and database (idempotent).
  if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    psql_admin -c "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'"
  fi
  if [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    psql_admin -c "CREATE DATABASE $DB OWNER $ROLE"
  fi
  echo "postgres: started (pid $(pid)) at 127.0.0.1:$PORT: $URL"
  ;;
esac
