#!/usr/bin/env bash
# Ferry's hosted SFTP server against OpenSSH's sshd with internal-sftp (chrooted), side by side
# in one run over loopback, both driven by the OpenSSH `sftp` client with its default cipher:
#   download   `sftp get` of a SIZE_MIB file      (goal: Ferry >= 0.8 x OpenSSH)
#   upload     `sftp put` of the same file         (goal: Ferry >= 0.8 x OpenSSH)
#   clients    CLIENTS concurrent `sftp get` of a CLIENT_MIB file each (goal: all succeed on
#              Ferry; OpenSSH's figure is shown for reference, its default MaxStartups 10:30:100
#              drops some concurrent logins)
# Ratio = OpenSSH time / Ferry time: 1.0 means as fast as OpenSSH, above is faster.
#
#   bench/hosted_sftp.sh                         # 1 GiB, 3 timed runs each (median), 50 x 10 MiB
#   SIZE_MIB=256 REPS=1 bench/hosted_sftp.sh     # a quick smoke run
#
# Environment (all optional): SIZE_MIB=1024, REPS=3, CLIENTS=50, CLIENT_MIB=10, KEEP=1 keeps the
# work dir, STRICT=1 exits 1 when a goal is missed.
#
# Ferry's server runs in a small program built here against the library (`ferry::hosted_sftp`),
# in release mode, sharing target/ with the main build. OpenSSH's server is the one of
# scripts/test-servers/sshd.sh (root; installed with apt when missing), user ferrychroot.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE_MIB=${SIZE_MIB:-1024}
REPS=${REPS:-3}
CLIENTS=${CLIENTS:-50}
CLIENT_MIB=${CLIENT_MIB:-10}
log() { printf '==> %s\n' "$*" >&2; }

WORK=$(mktemp -d /tmp/ferry-bench-hosted-sftp.XXXXXX)
SERVER_PID=
OPENSSH_DIR=
cleanup() {
  if [[ -n $SERVER_PID ]]; then
    exec 7>&- 2>/dev/null || true
    kill "$SERVER_PID" 2>/dev/null || true
  fi
  [[ -n $OPENSSH_DIR ]] && rm -rf "$OPENSSH_DIR"
  [[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT

# ------------------------------------------------------------------ the two servers
log "building the hosted SFTP runner (release)"
mkdir -p "$WORK/runner/src"
cp "$ROOT/Cargo.lock" "$WORK/runner/Cargo.lock"
cat >"$WORK/runner/Cargo.toml" <<EOF
[package]
name = "ferry-hosted-sftp-bench"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
ferry = { path = "$ROOT" }
tokio = { version = "1", features = ["rt-multi-thread", "macros"] }

[profile.release]
debug = "line-tables-only"
EOF
cat >"$WORK/runner/src/main.rs" <<'EOF'
//! Serves Ferry's hosted SFTP server for bench/hosted_sftp.sh until standard input closes:
//! user `bench` (the given public key), connection directory `data/`, read-write.
use std::collections::BTreeMap;
use std::io::Read;

use ferry::api::HostedAccess;
use ferry::hosted_sftp::{Connection, HostedSftpConfig, Users, start};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, data_dir, public_key_file] = &args[..] else {
        eprintln!("usage: DATA_DIR PUBLIC_KEY_FILE");
        std::process::exit(2);
    };
    let key = std::fs::read_to_string(public_key_file).expect("public key");
    let connection = Connection {
        namespace: "bench".into(),
        target_name: "bench".into(),
        connection_name: "bench".into(),
        display_name: None,
        user: "bench".into(),
        public_keys: vec![key.trim().to_string()],
        directory: "data".into(),
        access: HostedAccess::ReadWrite,
    };
    let users = Users::new(&[connection], &BTreeMap::new()).expect("users");
    let mut config = HostedSftpConfig::new(([127, 0, 0, 1], 0).into(), data_dir);
    config.max_sessions = 1024;
    let server = start(config, users).await.expect("start the server");
    println!("{} {}", server.local_addr().port(), server.host_key_line());
    tokio::task::spawn_blocking(|| {
        let mut rest = String::new();
        let _ = std::io::stdin().read_to_string(&mut rest);
    })
    .await
    .expect("stdin");
    server.shutdown().await;
}
EOF
(cd "$WORK/runner" && CARGO_TARGET_DIR="$ROOT/target" cargo build --release -q)
RUNNER="$WORK/ferry-hosted-sftp-bench"
cp "$ROOT/target/release/ferry-hosted-sftp-bench" "$RUNNER"

bash "$ROOT/scripts/test-servers/sshd.sh" start >&2
declare -A SSH
while IFS='=' read -r k v; do SSH[$k]=$v; done < <(bash "$ROOT/scripts/test-servers/sshd.sh" env)

mkdir -p "$WORK/client" "$WORK/data"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$WORK/client/key"
mkfifo "$WORK/stdin"
setsid "$RUNNER" "$WORK/data" "$WORK/client/key.pub" <"$WORK/stdin" >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
exec 7>"$WORK/stdin" # the server runs until this closes
for _ in $(seq 100); do [[ -s $WORK/server.out ]] && break; sleep 0.1; done
read -r PORT HOST_KEY <"$WORK/server.out" || { cat "$WORK/server.log" >&2; exit 1; }
echo "[127.0.0.1]:$PORT $HOST_KEY" >"$WORK/client/known_hosts"
FERRY_DIR="$WORK/data/users/bench/data"

# OpenSSH: a directory of its own inside the chroot user's writable upload/.
OPENSSH_DIR="${SSH[SFTP_CHROOT_DIR]}/upload/bench-$$"
mkdir -p "$OPENSSH_DIR"
chown "${SSH[SFTP_CHROOT_USER]}:" "$OPENSSH_DIR"
OPENSSH_REMOTE="upload/bench-$$"

ferry_sftp() {
  sftp -F /dev/null -P "$PORT" -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$WORK/client/known_hosts" -o IdentitiesOnly=yes -o IdentityAgent=none \
    -i "$WORK/client/key" -b "$1" bench@127.0.0.1
}
openssh_sftp() {
  sftp -F /dev/null -P "${SSH[SFTP_PORT]}" -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="${SSH[SFTP_KNOWN_HOSTS]}" -o IdentitiesOnly=yes -o IdentityAgent=none \
    -i "${SSH[SFTP_KEY_ED25519]}" -b "$1" "${SSH[SFTP_CHROOT_USER]}@127.0.0.1"
}

log "writing a ${SIZE_MIB} MiB file of random bytes"
PAYLOAD="$WORK/payload.bin"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$PAYLOAD"
cp "$PAYLOAD" "$FERRY_DIR/payload.bin"
cp "$PAYLOAD" "$OPENSSH_DIR/payload.bin"
chown "${SSH[SFTP_CHROOT_USER]}:" "$OPENSSH_DIR/payload.bin"
cat "$FERRY_DIR/payload.bin" "$OPENSSH_DIR/payload.bin" "$PAYLOAD" >/dev/null # page cache

now() { date +%s%N; }
# Runs batch file $2 with client function $1; prints the seconds it took.
timed() {
  local start end
  start=$(now)
  "$1" "$2" >/dev/null
  end=$(now)
  echo "scale=3; ($end - $start) / 1000000000" | bc
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

command -v bc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bc >/dev/null

printf 'get data/payload.bin %s\n' "$WORK/down-ferry.bin" >"$WORK/get-ferry"
printf 'get %s/payload.bin %s\n' "$OPENSSH_REMOTE" "$WORK/down-openssh.bin" >"$WORK/get-openssh"
printf 'put %s data/up.bin\n' "$PAYLOAD" >"$WORK/put-ferry"
printf 'put %s %s/up.bin\n' "$PAYLOAD" "$OPENSSH_REMOTE" >"$WORK/put-openssh"

declare -A T
for case in download upload; do
  for server in ferry openssh; do : >"$WORK/times-$case-$server"; done
  for rep in $(seq "$REPS"); do
    for server in ferry openssh; do
      batch="$WORK/get-$server"
      [[ $case == upload ]] && batch="$WORK/put-$server"
      log "$case $rep/$REPS: $server"
      timed "${server}_sftp" "$batch" >>"$WORK/times-$case-$server"
    done
  done
  for server in ferry openssh; do T[$case-$server]=$(median <"$WORK/times-$case-$server"); done
done
cmp -s "$PAYLOAD" "$WORK/down-ferry.bin" || { echo "Ferry's download differs" >&2; exit 1; }
cmp -s "$PAYLOAD" "$FERRY_DIR/up.bin" || { echo "Ferry's upload differs" >&2; exit 1; }
cmp -s "$PAYLOAD" "$WORK/down-openssh.bin" || { echo "OpenSSH's download differs" >&2; exit 1; }

# ------------------------------------------------------------------ concurrent clients
head -c $((CLIENT_MIB << 20)) /dev/urandom >"$WORK/small.bin"
cp "$WORK/small.bin" "$FERRY_DIR/small.bin"
cp "$WORK/small.bin" "$OPENSSH_DIR/small.bin"
chown "${SSH[SFTP_CHROOT_USER]}:" "$OPENSSH_DIR/small.bin"
declare -A OK SECS
for server in ferry openssh; do
  mkdir -p "$WORK/many-$server"
  remote="data/small.bin"
  [[ $server == openssh ]] && remote="$OPENSSH_REMOTE/small.bin"
  log "$CLIENTS concurrent clients, ${CLIENT_MIB} MiB each: $server"
  start=$(now)
  pids=()
  for i in $(seq "$CLIENTS"); do
    printf 'get %s %s/%s.bin\n' "$remote" "$WORK/many-$server" "$i" >"$WORK/many-$server/batch-$i"
    "${server}_sftp" "$WORK/many-$server/batch-$i" >/dev/null 2>"$WORK/many-$server/err-$i" &
    pids+=($!)
  done
  ok=0
  for i in "${!pids[@]}"; do
    if wait "${pids[$i]}" && cmp -s "$WORK/small.bin" "$WORK/many-$server/$((i + 1)).bin"; then
      ok=$((ok + 1))
    fi
  done
  end=$(now)
  OK[$server]=$ok
  SECS[$server]=$(echo "scale=3; ($end - $start) / 1000000000" | bc)
done

# ------------------------------------------------------------------ report
mibs() { echo "scale=1; $SIZE_MIB / $1" | bc; }
ratio() { echo "scale=2; $1 / $2" | bc; }
missed=0
printf '\nHosted SFTP vs OpenSSH sshd internal-sftp, %s MiB, median of %s, OpenSSH sftp client (default cipher)\n\n' "$SIZE_MIB" "$REPS"
printf '| %-8s | %-22s | %-22s | %-5s | %-6s |\n' case "Ferry" "OpenSSH" ratio goal
printf '|%s|%s|%s|%s|%s|\n' ---------- ------------------------ ------------------------ ------- --------
for case in download upload; do
  f=${T[$case-ferry]} o=${T[$case-openssh]}
  r=$(ratio "$o" "$f")
  printf '| %-8s | %6.2f s %7.1f MiB/s | %6.2f s %7.1f MiB/s | %5.2f | >= 0.8 |\n' \
    "$case" "$f" "$(mibs "$f")" "$o" "$(mibs "$o")" "$r"
  (($(echo "$r < 0.8" | bc))) && missed=1
done
printf '\n%s concurrent clients x %s MiB: Ferry %s/%s succeeded in %s s (%s MiB/s in total); OpenSSH %s/%s in %s s\n' \
  "$CLIENTS" "$CLIENT_MIB" "${OK[ferry]}" "$CLIENTS" "${SECS[ferry]}" \
  "$(echo "scale=0; $CLIENTS * $CLIENT_MIB / ${SECS[ferry]}" | bc)" \
  "${OK[openssh]}" "$CLIENTS" "${SECS[openssh]}"
[[ ${OK[ferry]} == "$CLIENTS" ]] || missed=1
if [[ $missed == 1 ]]; then
  echo "a goal was missed" >&2
  [[ ${STRICT:-0} == 1 ]] && exit 1
fi
exit 0
