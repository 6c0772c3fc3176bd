#!/usr/bin/env bash
# A private SMTP capture server (aiosmtpd, scripts/test-servers/smtp_capture.py) for the email
# delivery tests: 127.0.0.1 only, one process with two listeners:
#   2525  plain SMTP offering STARTTLS (AUTH PLAIN/LOGIN only once encrypted)
#   2465  implicit TLS (SMTPS) with AUTH PLAIN/LOGIN
# Every accepted message lands in <state>/mail as <n>.eml plus <n>.json (mail_from, rcpt_tos,
# auth_user, tls, port). Recipients whose local part starts with `reject` get a 550.
#
# Subcommands:
#   start   set up (first time) and start it; if it already runs, just say so (idempotent)
#   stop    stop it (by its recorded PID) if it runs
#   status  exit 0 when it runs
#   env     print KEY=VALUE lines the tests need (ports, user, password, CA path, mail folder)
#
# The server certificate (SAN IP:127.0.0.1) is issued by a private test CA made once with
# openssl; clients trust it through the CA file, never by turning verification off. It runs on
# FERRY_TEST_PYTHON (scripts/test.sh's virtualenv, which has aiosmtpd) when set, else python3;
# aiosmtpd is installed with pip into <state>/pylib when that Python cannot import it (apt's
# python3-aiosmtpd as a fallback). State lives in target/test-servers/smtp in the repository.
# The server writes to its own log file and runs in its own session, so it never inherits the
# caller's stdout/stderr (a `cargo test | tail` would otherwise wait for it forever).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HOST=127.0.0.1
PORT=2525
TLS_PORT=2465
USER_NAME=ferry-mailer
PASSWORD='ferry-Smtp-4711'
BASE="$ROOT/target/test-servers/smtp"
CA="$BASE/ca.pem"
CERT="$BASE/server.pem"
KEY="$BASE/server.key"
MAIL_DIR="$BASE/mail"
PID_FILE="$BASE/smtp.pid"
LOG="$BASE/smtp.log"
PYLIB="$BASE/pylib"
SCRIPT="$ROOT/scripts/test-servers/smtp_capture.py"

usage() {
  echo "usage: $0 start|stop|status|env" >&2
  exit 2
}

[ $# -eq 1 ] || usage
cmd="$1"
case "$cmd" in start | stop | status | env) ;; *) usage ;; esac

if [ "$cmd" = env ]; then
  cat <<EOF
SMTP_HOST=$HOST
SMTP_PORT=$PORT
SMTP_TLS_PORT=$TLS_PORT
SMTP_USER=$USER_NAME
SMTP_PASSWORD=$PASSWORD
SMTP_CA=$CA
SMTP_MAIL_DIR=$MAIL_DIR
EOF
  exit 0
fi

mkdir -p "$BASE"
# One caller at a time (test binaries may start it concurrently). The server must not inherit
# the lock's descriptor (`9>&-` below), or the lock would live as long as the server.
exec 9>"$BASE/.lock"
flock 9

pid() {
  cat "$PID_FILE" 2>/dev/null || true
}

running() {
  local p
  p="$(pid)"
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q smtp_capture.py
}

case "$cmd" in
status)
  if running; then
    echo "smtp: running (pid $(pid)) at $HOST:$PORT (STARTTLS) and $HOST:$TLS_PORT (implicit TLS), mail in $MAIL_DIR"
  else
    echo "smtp: not running"
    exit 1
  fi
  exit 0
  ;;
stop)
  if running; then
    p="$(pid)"
    kill "$p"
    for _ in $(seq 1 50); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$p" 2>/dev/null; then
      kill -9 "$p" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    echo "smtp: stopped"
  else
    rm -f "$PID_FILE"
    echo "smtp: not running"
  fi
  exit 0
  ;;
esac

# start
if running; then
  echo "smtp: already running (pid $(pid)) at $HOST:$PORT (STARTTLS) and $HOST:$TLS_PORT (implicit TLS)"
  exit 0
fi

# aiosmtpd: importable as is, or from our private pip target, or installed now.
PYTHON="${FERRY_TEST_PYTHON:-$(command -v python3 || true)}"
[ -n "$PYTHON" ] || { echo "smtp: python3 is required" >&2; exit 1; }
export PYTHONPATH="$PYLIB${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PYTHON" -c 'import aiosmtpd' 2>/dev/null; then
  echo "smtp: aiosmtpd missing, installing with pip into $PYLIB" >&2
  if ! "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$PYLIB" aiosmtpd >&2; then
    echo "smtp: pip failed, trying apt's python3-aiosmtpd" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-aiosmtpd >&2
    PYTHON=/usr/bin/python3
  fi
  "$PYTHON" -c 'import aiosmtpd' ||
    { echo "smtp: aiosmtpd still cannot be imported by $PYTHON" >&2; exit 1; }
fi

# A private CA and a server certificate for 127.0.0.1 it issued (made once).
if [ ! -s "$CA" ] || [ ! -s "$CERT" ] || [ ! -s "$KEY" ]; then
  command -v openssl >/dev/null || { echo "smtp: openssl is required" >&2; exit 1; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Ferry test SMTP CA" \
    -keyout "$tmp/ca.key" -out "$tmp/ca.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    >"$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log" >&2; exit 1; }
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" >>"$tmp/openssl.log" 2>&1 ||
    { cat "$tmp/openssl.log" >&2; exit 1; }
  printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature,keyEncipherment' \
    'extendedKeyUsage=serverAuth' 'subjectAltName=IP:127.0.0.1' >"$tmp/server.ext"
  openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
    -CAcreateserial -days 3650 -extfile "$tmp/server.ext" -out "$tmp/server.pem" \
    >>"$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log" >&2; exit 1; }
  chmod 600 "$tmp/server.key" "$tmp/ca.key"
  mv "$tmp/ca.key" "$BASE/ca.key"
  mv "$tmp/server.key" "$KEY"
  mv "$tmp/server.pem" "$CERT"
  mv "$tmp/ca.pem" "$CA"
fi

# A fresh server starts with an empty mail folder.
rm -rf "$MAIL_DIR"
mkdir -p "$MAIL_DIR"
rm -f "$PID_FILE"
: >>"$LOG"
setsid "$PYTHON" "$SCRIPT" --host "$HOST" --port "$PORT" --tls-port "$TLS_PORT" \
  --cert "$CERT" --key "$KEY" --mail-dir "$MAIL_DIR" --user "$USER_NAME" \
  --password "$PASSWORD" --pid-file "$PID_FILE" </dev/null >>"$LOG" 2>&1 9>&- &
child=$!

# The server writes its PID file once both listeners accept connections.
for _ in $(seq 1 200); do
  if running; then
    echo "smtp: started (pid $(pid)) at $HOST:$PORT (STARTTLS) and $HOST:$TLS_PORT (implicit TLS), mail in $MAIL_DIR"
    exit 0
  fi
  # The child is python itself, or a setsid that forked it and exited 0.
  if [ -n "$child" ] && ! kill -0 "$child" 2>/dev/null; then
    rc=0
    wait "$child" || rc=$?
    [ "$rc" = 0 ] || break
    child=
  fi
  sleep 0.1
done
echo "smtp: failed to start (ports $PORT/$TLS_PORT in use?); last lines of $LOG:" >&2
tail -n 20 "$LOG" >&2
[ -n "$child" ] && kill "$child" 2>/dev/null
exit 1
