#!/usr/bin/env bash
# Ferry's hosted SFTP server against OpenSSH's sshd with internal-sftp (chrooted), side by side
# in one run over loopback, both driven by the OpenSSH `sftp` client with its default cipher:
#   download   `sftp get` of a SIZE_MIB file      (goal: Ferry >= 0.8 x OpenSSH)
#   upload     `sftp put` of the same file         (goal: Ferry >= 0.8 x OpenSSH)
#   clients    CLIENTS concurrent `sftp get` of a CLIENT_MIB file each, all from 127.0.0.1 as one
#              user (goal: all succeed on Ferry, started with its per-address and per-user limits
#              raised for such a burst; OpenSSH's figure is shown for reference, at its default
#              MaxStartups 10:30:100, which drops some concurrent logins). The server's peak RSS
#              (VmHWM) is printed at the end.
# Ratio = OpenSSH time / Ferry time: 1.0 means as fast as OpenSSH, above is faster.
#
#   bench/hosted_sftp.sh                         # 1 GiB, 3 timed runs each (median), 50 x 10 MiB
#   SIZE_MIB=256 REPS=1 bench/hosted_sftp.sh     # a quick smoke run
#
# Environment (all optional): SIZE_MIB=1024, REPS=3, CLIENTS=50, CLIENT_MIB=10, KEEP=1 keeps the
# work dir, STRICT=1 exits 1 when a goal is missed.
#
# Ferry's server is `ferry run --sftp-listen` (target/release/ferry, built when missing;
# FERRY_BIN to use another) with the connection declared in YAML. OpenSSH's server is the one
# of scripts/test-servers/sshd.sh (root; installed with apt when missing), user ferrychroot.
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
    kill "$SERVER_PID" 2>/dev/null || true
  fi
  [[ -n $OPENSSH_DIR ]] && rm -rf "$OPENSSH_DIR"
  [[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT

# ------------------------------------------------------------------ the two servers
FERRY=${FERRY_BIN:-$ROOT/target/release/ferry}
if [[ -z ${FERRY_BIN:-} && ! -x $FERRY ]]; then
  log "building target/release/ferry"
  (cd "$ROOT" && cargo build --release --locked -q)
fi

bash "$ROOT/scripts/test-servers/sshd.sh" start >&2
declare -A SSH
while IFS='=' read -r k v; do SSH[$k]=$v; done < <(bash "$ROOT/scripts/test-servers/sshd.sh" env)

mkdir -p "$WORK/client" "$WORK/data"
ssh-keygen -q -t ed25519 -N '' -C bench -f "$WORK/client/key"
# Ferry's server as users run it: `ferry run --sftp-listen` with the connection declared in YAML.
mkdir -p "$WORK/files"
cat >"$WORK/files/bench.yaml" <<YAML
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: bench}
spec:
  hostedSftp:
    connectionName: bench
    user: bench
    publicKeys: ["$(cat "$WORK/client/key.pub")"]
    directory: data
    access: readWrite
YAML
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
FERRY_HOSTED_SFTP_DATA="$WORK/data" setsid "$FERRY" --state "$WORK/state.db" --secrets-dir "$WORK/secrets" \
  run -f "$WORK/files" --sftp-listen "127.0.0.1:$PORT" --sftp-max-sessions 1024 \
  --sftp-max-sessions-per-user 1024 --sftp-max-startups 1024 --sftp-max-startups-per-source 1024 \
  </dev/null >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "^Hosted SFTP on" "$WORK/server.log" && break; sleep 0.1; done
HOST_KEY=$(sed -n 's/^Hosted SFTP on [^ ]* (host key \([^ ]* [^ ]*\) .*/\1/p' "$WORK/server.log")
[[ -n $HOST_KEY ]] || { cat "$WORK/server.log" >&2; exit 1; }
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
printf 'Ferry server peak RSS: %s\n' "$(awk '/^VmHWM/ {print $2, $3}' "/proc/$SERVER_PID/status")"
[[ ${OK[ferry]} == "$CLIENTS" ]] || missed=1
if [[ $missed == 1 ]]; then
  echo "a goal was missed" >&2
  [[ ${STRICT:-0} == 1 ]] && exit 1
fi
exit 0
