#!/usr/bin/env bash
# Private vsftpd servers for the FTP/FTPS integration tests, bound to 127.0.0.1 only, never the
# system's vsftpd service. Four processes, one per TLS flavour the tests must cover and one
# that refuses names starting with a dot:
#   2121  plain FTP and explicit FTPS (AUTH TLS), require_ssl_reuse=YES   passive 30000-30049
#   2990  implicit FTPS,                          require_ssl_reuse=YES   passive 30050-30099
#         (and SIZE refused, so clients' listing fallback and three resumed TLS data
#         connections in one session get exercised)
#   2122  explicit FTPS only,                     require_ssl_reuse=NO    passive 30100-30149
#   2123  explicit FTPS only, deny_file={.*}: no name may start with a dot (like pure-ftpd
#         -x and hardened servers), so hidden temporary names are refused   passive 30150-30199
# require_ssl_reuse=YES is vsftpd's default (and common on customer servers): a data connection
# that does not resume the control connection's TLS session is refused.
#
# Subcommands:
#   start   install vsftpd when missing, create the account, CA and configs (first time), start
#           the servers that are not running (idempotent)
#   stop    stop the servers this script started (by their recorded PIDs)
#   status  exit 0 when all four run
#   env     print KEY=VALUE lines for the tests (ports, user, password, CA file, FTP root)
#
# State lives in target/test-servers/vsftpd/ in the repository (configs, CA and certificate,
# PID and log files, the FTP user's root directory `home/`); if the FTP user cannot traverse
# the repository path, a directory under /tmp keyed by that path is used. The servers run in
# their own session with output to log files, so they never inherit the caller's stdout/stderr
# (a `cargo test | tail` would otherwise wait for them forever).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HOST=127.0.0.1
FTP_USER=ferryftp
# A throwaway password for a local test account that only these loopback servers accept.
FTP_PASSWORD='ferry-ftp-test-Pw-7c1e'
# name port pasv_min pasv_max mode reuse denied-commands denied-files
SERVERS=(
  "explicit 2121 30000 30049 explicit YES - -"
  "implicit 2990 30050 30099 implicit YES SIZE -"
  "noreuse 2122 30100 30149 explicit NO - -"
  "nodot 2123 30150 30199 explicit YES - {.*}"
)

usage() {
  echo "usage: $0 start|stop|status|env" >&2
  exit 2
}

[ $# -eq 1 ] || usage
cmd="$1"
case "$cmd" in start | stop | status | env) ;; *) usage ;; esac

# Where the state lives: in the repository if the FTP user can get there, else under /tmp.
base_dir() {
  local base="$ROOT/target/test-servers/vsftpd"
  local probe="$ROOT/target"
  [ -d "$probe" ] || probe="$ROOT"
  if [ "$(id -u)" = 0 ] && id "$FTP_USER" >/dev/null 2>&1 &&
    ! runuser -u "$FTP_USER" -- test -x "$probe"; then
    base="/tmp/ferry-test-servers-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)/vsftpd"
  fi
  echo "$base"
}
BASE="$(base_dir)"
FTP_ROOT="$BASE/home"
CA="$BASE/tls/ca.pem"

if [ "$cmd" = env ]; then
  echo "FTP_HOST=$HOST"
  echo "FTP_PORT=2121"
  echo "FTPS_IMPLICIT_PORT=2990"
  echo "FTPS_NO_REUSE_PORT=2122"
  echo "FTPS_NO_DOT_FILES_PORT=2123"
  echo "FTPS_IMPLICIT_DENIES=SIZE"
  echo "FTP_USER=$FTP_USER"
  echo "FTP_PASSWORD=$FTP_PASSWORD"
  echo "FTP_CA_CERT=$CA"
  echo "FTP_SERVER_CERT=$BASE/tls/server.pem"
  echo "FTP_ROOT=$FTP_ROOT"
  exit 0
fi

VSFTPD="$(command -v vsftpd || true)"
[ -n "$VSFTPD" ] || [ ! -x /usr/sbin/vsftpd ] || VSFTPD=/usr/sbin/vsftpd

pid_file() { echo "$BASE/$1.pid"; }

# Whether server $1 runs: its recorded PID is alive and is a vsftpd with our config.
running() {
  local pid
  pid="$(cat "$(pid_file "$1")" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "vsftpd.*$BASE/$1.conf"
}

# Whether something accepts connections on 127.0.0.1:$1.
listening() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

case "$cmd" in
status)
  rc=0
  for s in "${SERVERS[@]}"; do
    read -r name port _ <<<"$s"
    if running "$name"; then
      echo "vsftpd $name: running (pid $(cat "$(pid_file "$name")")) at $HOST:$port"
    else
      echo "vsftpd $name: not running"
      rc=1
    fi
  done
  exit $rc
  ;;
stop)
  mkdir -p "$BASE"
  exec 9>"$BASE/.lock"
  flock 9
  for s in "${SERVERS[@]}"; do
    read -r name _ <<<"$s"
    if running "$name"; then
      pid="$(cat "$(pid_file "$name")")"
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "vsftpd $name: stopped"
    else
      echo "vsftpd $name: not running"
    fi
    rm -f "$(pid_file "$name")"
  done
  exit 0
  ;;
esac

# ---- start ----------------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || { echo "vsftpd: start needs root (it creates a local account)" >&2; exit 1; }

if [ -z "$VSFTPD" ]; then
  apt_install vsftpd vsftpd
  VSFTPD="$(command -v vsftpd || echo /usr/sbin/vsftpd)"
  [ -x "$VSFTPD" ] || { echo "vsftpd: installation did not provide vsftpd" >&2; exit 1; }
fi
command -v openssl >/dev/null || { echo "vsftpd: openssl is needed for the test certificate" >&2; exit 1; }

# The login is a real local account; PAM (pam_shells) wants its shell listed in /etc/shells.
if ! id "$FTP_USER" >/dev/null 2>&1; then
  useradd --no-create-home --home-dir /nonexistent --shell /bin/sh --user-group "$FTP_USER"
fi
BASE="$(base_dir)" # the account exists now: check again that it can reach the repository
FTP_ROOT="$BASE/home"
CA="$BASE/tls/ca.pem"
mkdir -p "$BASE"

# One caller at a time (test binaries may start the servers concurrently). The servers must not
# inherit the lock's descriptor (`9>&-` below), or the lock would live as long as they do.
exec 9>"$BASE/.lock"
flock 9

if [ "$(getent passwd "$FTP_USER" | cut -d: -f6)" != "$FTP_ROOT" ]; then
  usermod --home "$FTP_ROOT" "$FTP_USER"
fi
echo "$FTP_USER:$FTP_PASSWORD" | chpasswd
mkdir -p "$FTP_ROOT"
chown "$FTP_USER:" "$FTP_ROOT"
chmod 755 "$FTP_ROOT"
# vsftpd's secure_chroot_dir: empty, root-owned, not writable by others.
mkdir -p "$BASE/empty"
chown root: "$BASE/empty"
chmod 755 "$BASE/empty"

# A private CA and a server certificate it signs (SAN IP:127.0.0.1), made once. Clients trust
# the CA file; nothing ever skips verification.
TLS="$BASE/tls"
if [ ! -s "$TLS/server.pem" ] || [ ! -s "$TLS/ca.pem" ]; then
  rm -rf "$TLS"
  mkdir -p "$TLS"
  chmod 700 "$TLS"
  (
    cd "$TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Ferry test CA" \
      -keyout ca.key -out ca.pem \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.pem
  ) >"$BASE/openssl.log" 2>&1 || { echo "vsftpd: certificate generation failed, see $BASE/openssl.log" >&2; exit 1; }
  chmod 600 "$TLS"/*.key
  chmod 644 "$TLS/ca.pem" "$TLS/server.pem"
  chmod 755 "$TLS"
fi

write_config() {
  local name="$1" port="$2" pmin="$3" pmax="$4" mode="$5" reuse="$6" denied="$7" files="$8"
  local force=NO implicit=NO
  [ "$mode" = implicit ] && implicit=YES
  [ "$name" != explicit ] && force=YES # the 2121 server also serves plain FTP
  cat >"$BASE/$name.conf" <<EOF
# Generated by scripts/test-servers/vsftpd.sh ($name): do not edit, it is rewritten on start.
listen=YES
listen_ipv6=NO
listen_address=$HOST
listen_port=$port
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
chroot_local_user=YES
allow_writeable_chroot=YES
secure_chroot_dir=$BASE/empty
pam_service_name=vsftpd
userlist_enable=NO
connect_from_port_20=NO
pasv_enable=YES
pasv_address=$HOST
pasv_min_port=$pmin
pasv_max_port=$pmax
max_per_ip=0
max_clients=0
xferlog_enable=YES
vsftpd_log_file=$BASE/$name.transfers.log
ssl_enable=YES
implicit_ssl=$implicit
rsa_cert_file=$TLS/server.pem
rsa_private_key_file=$TLS/server.key
allow_anon_ssl=NO
force_local_logins_ssl=$force
force_local_data_ssl=$force
require_ssl_reuse=$reuse
ssl_request_cert=NO
ssl_tlsv1=YES
ssl_sslv2=NO
ssl_sslv3=NO
ssl_ciphers=HIGH
debug_ssl=YES
EOF
  [ "$denied" = - ] || echo "cmds_denied=$denied" >>"$BASE/$name.conf"
  [ "$files" = - ] || echo "deny_file=$files" >>"$BASE/$name.conf"
}

started=()
for s in "${SERVERS[@]}"; do
  read -r name port pmin pmax mode reuse denied files <<<"$s"
  if running "$name"; then
    echo "vsftpd $name: already running (pid $(cat "$(pid_file "$name")")) at $HOST:$port"
    continue
  fi
  if listening "$port"; then
    # Ours from before its state was deleted (`cargo clean`)? Then it serves a deleted root:
    # stop it (only that exact command line) and start afresh.
    stale="$(pgrep -x -f "$VSFTPD $BASE/$name.conf" || true)"
    if [ -n "$stale" ]; then
      echo "vsftpd $name: restarting pid $stale, which lost its state directory" >&2
      kill $stale
      for _ in $(seq 50); do listening "$port" || break; sleep 0.1; done
    fi
    if listening "$port"; then
      echo "vsftpd $name: port $HOST:$port is taken by another process" >&2
      exit 1
    fi
  fi
  write_config "$name" "$port" "$pmin" "$pmax" "$mode" "$reuse" "$denied" "$files"
  log="$BASE/$name.log"
  # vsftpd reports start-up errors ("500 OOPS: ...") on descriptor 0: point it at the log too.
  setsid "$VSFTPD" "$BASE/$name.conf" 0>>"$log" >>"$log" 2>&1 9>&- &
  echo $! >"$(pid_file "$name")"
  started+=("$name $port")
done

for s in ${started[@]+"${started[@]}"}; do
  read -r name port <<<"$s"
  ok=0
  for _ in $(seq 100); do
    if ! running "$name"; then break; fi
    if listening "$port"; then ok=1; break; fi
    sleep 0.05
  done
  if [ "$ok" != 1 ]; then
    echo "vsftpd $name: failed to start on $HOST:$port; last lines of $BASE/$name.log:" >&2
    tail -n 20 "$BASE/$name.log" >&2 || true
    exit 1
  fi
  echo "vsftpd $name: started (pid $(cat "$(pid_file "$name")")) at $HOST:$port"
done
