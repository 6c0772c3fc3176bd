#!/usr/bin/env bash
# A private OpenSSH sshd for the SFTP integration tests: 127.0.0.1:2222 only, its own config,
# host keys and authorized keys, never the system sshd. Subcommands:
#   start   set up (first time) and start it; if it already runs with the same config, just say
#           so (idempotent); a changed config restarts it
#   stop    stop it (by its recorded PID) if it runs
#   status  exit 0 when it runs
#   env     print KEY=VALUE lines the tests need (port, users, password, key paths, host keys)
#
# Users (local accounts created here):
#   ferrykey     key-only login (password field `*`); home <state>/home/ferrykey, with upload/
#   ferrypass    password login; home <state>/home/ferrypass
#   ferrychroot  key login, chrooted to /srv/ferry-sftp/ferrychroot (SFTP only), writable upload/
# Client keys (ed25519, rsa, ecdsa and a passphrase-protected ed25519) are authorized for
# ferrykey and ferrychroot. Authorized keys live in <state>/authorized_keys/<user>; tests may
# add keys to <state>/authorized_keys/<user>.test.
#
# State lives in target/test-servers/sshd in the repository (a directory under /tmp keyed by the
# repository path if the test users cannot traverse it), except the chroot, which must be
# root-owned on every path component and therefore lives in /srv/ferry-sftp. The server writes
# to its own log file and runs in its own session, so it never inherits the caller's
# stdout/stderr (a `cargo test | tail` would otherwise wait for it forever).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HOST=127.0.0.1
PORT=2222
KEY_USER=ferrykey
PASS_USER=ferrypass
CHROOT_USER=ferrychroot
PASSWORD='ferry-Pass-7316'
PASSPHRASE='ferry-Passphrase-2718'
CHROOT_BASE=/srv/ferry-sftp
SSHD=/usr/sbin/sshd

usage() {
  echo "usage: $0 start|stop|status|env" >&2
  exit 2
}

[ $# -eq 1 ] || usage
cmd="$1"
case "$cmd" in start | stop | status | env) ;; *) usage ;; esac

if [ "$(id -u)" != 0 ]; then
  echo "sshd: must run as root (it creates local users and a root-owned chroot)" >&2
  exit 1
fi

# Install the server and sshpass (the reference password client) with apt only when missing.
if [ ! -x "$SSHD" ] || ! command -v sshpass >/dev/null || ! command -v sftp >/dev/null; then
  if [ "$cmd" != start ]; then
    echo "sshd: not installed" >&2
    [ "$cmd" = stop ] && exit 0 || exit 1
  fi
  apt_install sshd openssh-server openssh-client sshpass
  [ -x "$SSHD" ] || { echo "sshd: installation did not provide $SSHD" >&2; exit 1; }
fi

# The test accounts (idempotent). `*` in the password field: no password login, but not
# locked (with UsePAM no, `!` would lock the account for key logins too).
ensure_user() {
  local user="$1" home="$2"
  if ! id -u "$user" >/dev/null 2>&1; then
    useradd --no-create-home --home-dir "$home" --shell /bin/sh --user-group "$user"
  else
    usermod --home "$home" "$user" >/dev/null
  fi
}

# Where the state lives: in the repository if the test users can get there, else under /tmp.
state_dir() {
  local base="$ROOT/target/test-servers/sshd"
  mkdir -p "$base"
  if ! runuser -u nobody -- test -x "$base" 2>/dev/null; then
    local key
    key="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
    base="/tmp/ferry-test-servers-$key/sshd"
    mkdir -p "$base"
    chmod 755 "$(dirname "$base")" "$base"
  fi
  echo "$base"
}
BASE="$(state_dir)"
CONF="$BASE/sshd_config"
PIDFILE="$BASE/sshd.pid"
LOG="$BASE/sshd.log"
HOSTKEYS="$BASE/hostkeys"
CLIENT="$BASE/client"
AUTH="$BASE/authorized_keys"
HOMES="$BASE/home"
CHROOT="$CHROOT_BASE/$CHROOT_USER"

# One caller at a time (test binaries may start it concurrently). The server must not inherit
# the lock's descriptor (`9>&-` below), or the lock would live as long as the server.
exec 9>"$BASE/.lock"
flock 9

pid() {
  cat "$PIDFILE" 2>/dev/null || true
}

running() {
  local p
  p="$(pid)"
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null &&
    [ "$(readlink "/proc/$p/exe" 2>/dev/null || true)" = "$SSHD" ]
}

host_key_line() {
  cut -d' ' -f1,2 "$HOSTKEYS/ssh_host_$1_key.pub"
}

print_env() {
  echo "SFTP_HOST=$HOST"
  echo "SFTP_PORT=$PORT"
  echo "SFTP_KEY_USER=$KEY_USER"
  echo "SFTP_PASSWORD_USER=$PASS_USER"
  echo "SFTP_PASSWORD=$PASSWORD"
  echo "SFTP_CHROOT_USER=$CHROOT_USER"
  echo "SFTP_KEY_ED25519=$CLIENT/id_ed25519"
  echo "SFTP_KEY_RSA=$CLIENT/id_rsa"
  echo "SFTP_KEY_ECDSA=$CLIENT/id_ecdsa"
  echo "SFTP_KEY_ED25519_ENCRYPTED=$CLIENT/id_ed25519_encrypted"
  echo "SFTP_KEY_PASSPHRASE=$PASSPHRASE"
  echo "SFTP_HOST_KEY_ED25519=$(host_key_line ed25519)"
  echo "SFTP_HOST_KEY_ECDSA=$(host_key_line ecdsa)"
  echo "SFTP_HOST_KEY_RSA=$(host_key_line rsa)"
  echo "SFTP_KNOWN_HOSTS=$BASE/known_hosts"
  echo "SFTP_AUTHORIZED_KEYS_DIR=$AUTH"
  echo "SFTP_KEY_USER_HOME=$HOMES/$KEY_USER"
  echo "SFTP_PASSWORD_USER_HOME=$HOMES/$PASS_USER"
  echo "SFTP_CHROOT_DIR=$CHROOT"
}

case "$cmd" in
status)
  if running; then
    echo "sshd: running (pid $(pid)) at $HOST:$PORT, state $BASE"
  else
    echo "sshd: not running"
    exit 1
  fi
  exit 0
  ;;
stop)
  if running; then
    p="$(pid)"
    kill "$p"
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    rm -f "$PIDFILE"
    echo "sshd: stopped"
  else
    echo "sshd: not running"
  fi
  exit 0
  ;;
env)
  [ -f "$HOSTKEYS/ssh_host_ed25519_key.pub" ] || { echo "sshd: not set up; run $0 start" >&2; exit 1; }
  print_env
  exit 0
  ;;
esac

# ---- start: set up everything (idempotent), then run the server ----------------------------

mkdir -p "$HOSTKEYS" "$CLIENT" "$AUTH" "$HOMES" /run/sshd
chmod 755 "$BASE" "$AUTH" "$HOMES"
chmod 700 "$HOSTKEYS" "$CLIENT"

for t in ed25519 ecdsa rsa; do
  f="$HOSTKEYS/ssh_host_${t}_key"
  if [ ! -f "$f" ]; then
    bits=()
    [ "$t" = rsa ] && bits=(-b 3072)
    ssh-keygen -q -t "$t" "${bits[@]}" -N '' -C "ferry-test-host-$t" -f "$f"
  fi
done

for t in ed25519 ecdsa rsa; do
  f="$CLIENT/id_$t"
  if [ ! -f "$f" ]; then
    bits=()
    [ "$t" = rsa ] && bits=(-b 3072)
    ssh-keygen -q -t "$t" "${bits[@]}" -N '' -C "ferry-test-$t" -f "$f"
  fi
done
if [ ! -f "$CLIENT/id_ed25519_encrypted" ]; then
  ssh-keygen -q -t ed25519 -N "$PASSPHRASE" -C ferry-test-encrypted -f "$CLIENT/id_ed25519_encrypted"
fi

ensure_user "$KEY_USER" "$HOMES/$KEY_USER"
ensure_user "$PASS_USER" "$HOMES/$PASS_USER"
ensure_user "$CHROOT_USER" /
usermod -p '*' "$KEY_USER"
usermod -p '*' "$CHROOT_USER"
echo "$PASS_USER:$PASSWORD" | chpasswd

# Homes with an upload/ folder, like the chrooted user's (benchmarks upload to upload/bench).
for u in "$KEY_USER" "$PASS_USER"; do
  mkdir -p "$HOMES/$u/upload"
  chown "$u:$u" "$HOMES/$u" "$HOMES/$u/upload"
  chmod 755 "$HOMES/$u" "$HOMES/$u/upload"
done

# The chroot: root-owned and not group/other writable on every component.
for d in /srv "$CHROOT_BASE" "$CHROOT"; do
  mkdir -p "$d"
  chown root:root "$d"
  chmod 755 "$d"
done
mkdir -p "$CHROOT/upload"
chown "$CHROOT_USER:$CHROOT_USER" "$CHROOT/upload"
chmod 755 "$CHROOT/upload"

# Every client key may log in as the key user and the chrooted user.
cat "$CLIENT"/id_ed25519.pub "$CLIENT"/id_ecdsa.pub "$CLIENT"/id_rsa.pub \
  "$CLIENT"/id_ed25519_encrypted.pub >"$AUTH/$KEY_USER.tmp"
mv "$AUTH/$KEY_USER.tmp" "$AUTH/$KEY_USER"
cp "$AUTH/$KEY_USER" "$AUTH/$CHROOT_USER"
: >"$AUTH/$PASS_USER"
for u in "$KEY_USER" "$PASS_USER" "$CHROOT_USER"; do
  touch "$AUTH/$u.test"
  chmod 644 "$AUTH/$u" "$AUTH/$u.test"
done

# A known_hosts file for the reference clients (OpenSSH sftp).
for t in ed25519 ecdsa rsa; do
  echo "[$HOST]:$PORT $(host_key_line "$t")"
done >"$BASE/known_hosts"

cat >"$CONF.new" <<EOF
# Generated by scripts/test-servers/sshd.sh: a private sshd for Ferry's SFTP tests.
Port $PORT
ListenAddress $HOST
HostKey $HOSTKEYS/ssh_host_ed25519_key
HostKey $HOSTKEYS/ssh_host_ecdsa_key
HostKey $HOSTKEYS/ssh_host_rsa_key
PidFile $PIDFILE
AuthorizedKeysFile $AUTH/%u $AUTH/%u.test
StrictModes no
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
# RSA keys must sign with rsa-sha2-256/512, never SHA-1 (OpenSSH 8.8+ default, made explicit).
PubkeyAcceptedAlgorithms -ssh-rsa,ssh-rsa-cert-v01@openssh.com
PermitRootLogin no
AllowUsers $KEY_USER $PASS_USER $CHROOT_USER
MaxStartups 100
MaxAuthTries 10
LoginGraceTime 30
LogLevel VERBOSE
Subsystem sftp internal-sftp

Match User $CHROOT_USER
    ChrootDirectory $CHROOT_BASE/%u
    ForceCommand internal-sftp
    AllowTcpForwarding no
    X11Forwarding no
EOF
# OpenSSH 9.8+ slows down sources that fail to log in: tests fail logins on purpose.
if "$SSHD" -t -f "$CONF.new" -o PerSourcePenalties=no 2>/dev/null; then
  sed -i "/^Subsystem/a PerSourcePenalties no" "$CONF.new"
fi
"$SSHD" -t -f "$CONF.new" || { echo "sshd: generated config is invalid: $CONF.new" >&2; exit 1; }

if running; then
  if cmp -s "$CONF.new" "$CONF"; then
    rm -f "$CONF.new"
    echo "sshd: already running (pid $(pid)) at $HOST:$PORT"
    exit 0
  fi
  echo "sshd: config changed, restarting" >&2
  p="$(pid)"
  kill "$p"
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
fi
mv "$CONF.new" "$CONF"
rm -f "$PIDFILE"

: >>"$LOG"
setsid "$SSHD" -D -e -f "$CONF" </dev/null >>"$LOG" 2>&1 9>&- &
launched=$!

# Ready when the PID file is written (after the listening socket is bound) and the port answers.
for _ in $(seq 100); do
  if [ -s "$PIDFILE" ] && (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
    echo "sshd: started (pid $(pid)) at $HOST:$PORT, state $BASE"
    exit 0
  fi
  if ! kill -0 "$launched" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
echo "sshd: failed to start (port $PORT in use?); last lines of $LOG:" >&2
tail -n 20 "$LOG" >&2
exit 1
