#!/usr/bin/env bash
# A private MariaDB for the integration tests: 127.0.0.1:53306 only, its own data directory,
# socket and PID file, never the system service. Subcommands:
#   start   install mariadb-server when missing, initialise (first time) and start it; if it
#           already runs, just say so (idempotent)
#   stop    stop it if it runs
#   status  exit 0 when it runs
#   url     print the connection URL of the test database
#   env     print KEY=VALUE lines for the tests (URL, port, user, password, database, socket)
#
# The data directory is target/test-servers/mariadb/data in the repository; if the mysql user
# cannot traverse the repository path, a directory under /tmp keyed by that path is used. The
# server writes to its own log file and runs in its own session, so it never inherits the
# caller's stdout/stderr (a `cargo test | tail` would otherwise wait for it forever).
#
# Logins: the test user `ferry` with a password over TCP (mysql_native_password, as most shop
# databases have it); root only through the unix socket of the data directory, for the setup.
# The grant tables are always on (never --skip-grant-tables): a wrong password must fail.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PORT=53306
DB=ferry_test
USER_NAME=ferry
PASSWORD=ferry
URL="mysql://${USER_NAME}:${PASSWORD}@127.0.0.1:${PORT}/${DB}"

usage() {
  echo "usage: $0 start|stop|status|url|env" >&2
  exit 2
}

[ $# -eq 1 ] || usage
cmd="$1"
if [ "$cmd" = url ]; then
  echo "$URL"
  exit 0
fi
case "$cmd" in start | stop | status | env) ;; *) usage ;; esac

if [ -z "$(command -v mariadbd || true)" ] && [ ! -x /usr/sbin/mariadbd ]; then
  [ "$cmd" = start ] || { echo "mariadb: not installed" >&2; [ "$cmd" = stop ] && exit 0 || exit 1; }
  apt_install mariadb mariadb-server mariadb-client
fi
MARIADBD=/usr/sbin/mariadbd
[ -x "$MARIADBD" ] || MARIADBD="$(command -v mariadbd)"

# Run a command as the mysql user (mariadbd refuses to run as root without --user).
if [ "$(id -u)" = 0 ]; then
  as_mysql() { runuser -u mysql -- "$@"; }
else
  as_mysql() { "$@"; }
fi

# Where the data lives: in the repository if the mysql user can get there, else under /tmp.
BASE="$ROOT/target/test-servers/mariadb"
mkdir -p "$BASE"
if [ "$(id -u)" = 0 ] && ! runuser -u mysql -- test -x "$BASE"; then
  key="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
  BASE="/tmp/ferry-test-servers-$key/mariadb"
  mkdir -p "$BASE"
fi
DATA="$BASE/data"
SOCKET="$BASE/mariadb.sock"
PIDFILE="$BASE/mariadb.pid"
LOG="$BASE/mariadb.log"
[ "$(id -u)" = 0 ] && chown mysql: "$BASE"

if [ "$cmd" = env ]; then
  printf 'MARIADB_URL=%s\nMARIADB_PORT=%s\nMARIADB_USER=%s\nMARIADB_PASSWORD=%s\nMARIADB_DATABASE=%s\nMARIADB_SOCKET=%s\n' \
    "$URL" "$PORT" "$USER_NAME" "$PASSWORD" "$DB" "$SOCKET"
  exit 0
fi

# One caller at a time (test binaries may start it concurrently). The server must not inherit
# the lock's descriptor (`9>&-` below), or the lock would live as long as the server.
exec 9>"$BASE/.lock"
flock 9

pid() {
  head -n 1 "$PIDFILE" 2>/dev/null || echo "?"
}

running() {
  local p
  p="$(pid)"
  [ "$p" != "?" ] && kill -0 "$p" 2>/dev/null
}

admin() {
  mariadb --no-defaults -S "$SOCKET" -u root "$@"
}

case "$cmd" in
status)
  if running; then
    echo "mariadb: running (pid $(pid)) at 127.0.0.1:$PORT, data $DATA"
  else
    echo "mariadb: not running"
    exit 1
  fi
  ;;
stop)
  if running; then
    p="$(pid)"
    kill "$p"
    for _ in $(seq 1 100); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    echo "mariadb: stopped"
  else
    echo "mariadb: not running"
  fi
  ;;
start)
  if running; then
    echo "mariadb: already running (pid $(pid)) at 127.0.0.1:$PORT: $URL"
    exit 0
  fi
  if [ ! -d "$DATA/mysql" ]; then
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown mysql: "$DATA"
    chmod 700 "$DATA"
    # root logs in through the socket only (unix_socket authentication), for the setup below.
    mariadb-install-db --no-defaults --user=mysql --datadir="$DATA" \
      --auth-root-authentication-method=socket --skip-test-db >"$BASE/install-db.log" 2>&1 ||
      { echo "mariadb: mariadb-install-db failed, see $BASE/install-db.log" >&2; exit 1; }
  fi
  : >>"$LOG"
  [ "$(id -u)" = 0 ] && chown mysql: "$LOG"
  rm -f "$SOCKET" "$PIDFILE"
  # utf8mb4 by default; durability off (a test database), no binary log.
  setsid "$MARIADBD" --no-defaults --user=mysql --datadir="$DATA" \
    --bind-address=127.0.0.1 --port="$PORT" --socket="$SOCKET" --pid-file="$PIDFILE" \
    --log-error="$LOG" --skip-log-bin --innodb-flush-log-at-trx-commit=0 \
    --innodb-buffer-pool-size=64M --character-set-server=utf8mb4 \
    --collation-server=utf8mb4_unicode_ci </dev/null >>"$LOG" 2>&1 9>&- &
  for _ in $(seq 1 300); do
    if [ -S "$SOCKET" ] && admin -e 'SELECT 1' >/dev/null 2>&1; then
      break
    fi
    sleep 0.1
  done
  if ! admin -e 'SELECT 1' >/dev/null 2>&1; then
    echo "mariadb: failed to start (port $PORT in use?); last lines of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
  fi
  # The test user and database (idempotent).
  admin -e "CREATE DATABASE IF NOT EXISTS $DB CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
    CREATE USER IF NOT EXISTS '$USER_NAME'@'127.0.0.1' IDENTIFIED BY '$PASSWORD';
    CREATE USER IF NOT EXISTS '$USER_NAME'@'localhost' IDENTIFIED BY '$PASSWORD';
    GRANT ALL ON $DB.* TO '$USER_NAME'@'127.0.0.1';
    GRANT ALL ON $DB.* TO '$USER_NAME'@'localhost';
    GRANT FILE ON *.* TO '$USER_NAME'@'127.0.0.1';
    GRANT FILE ON *.* TO '$USER_NAME'@'localhost';"
  echo "mariadb: started (pid $(pid)) at 127.0.0.1:$PORT: $URL"
  ;;
esac
