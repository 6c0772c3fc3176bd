#!/usr/bin/env bash
# Ferry's uploads against the usual clients, side by side in one run, over loopback:
#   sftp   `ferry deliver` to OpenSSH sshd   vs OpenSSH `sftp` put (its default cipher, and
#          aes128-gcm@openssh.com shown for reference)
#   ftp    `ferry deliver` to vsftpd         vs `curl -T`
#   ftps   `ferry deliver` (explicit FTPS)   vs `curl -T --ssl-reqd`
# Ratio = reference time / Ferry time: 1.0 means as fast as the reference, above is faster.
#
#   bench/deliver.sh                          # 1 GiB, 3 timed runs each (median)
#   SIZE_MIB=256 REPS=1 bench/deliver.sh      # a quick smoke run
#   CASES="sftp" bench/deliver.sh
#
# Environment (all optional): SIZE_MIB=1024, REPS=3, CASES="sftp ftp ftps",
# FERRY_BIN=PATH (default: target/release/ferry, built when missing), KEEP=1 keeps the work dir.
# Goals (issue 4): sftp >= 1.0, ftp >= 0.9, ftps >= 0.9.
# Starts the test servers of scripts/test-servers/{sshd,vsftpd}.sh (root; installs them with
# apt when missing). Each upload's file is deleted on the server before the next run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE_MIB=${SIZE_MIB:-1024}
REPS=${REPS:-3}
CASES=${CASES:-"sftp ftp ftps"}
log() { printf '==> %s\n' "$*" >&2; }
want() { [[ " $CASES " == *" $1 "* ]]; }

command -v curl >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null; }

FERRY=${FERRY_BIN:-$ROOT/target/release/ferry}
if [[ -z ${FERRY_BIN:-} && ! -x $FERRY ]]; then
  log "building target/release/ferry"
  (cd "$ROOT" && cargo build --release --locked -q)
fi

WORK=$(mktemp -d /tmp/ferry-bench-deliver.XXXXXX)
[[ ${KEEP:-0} == 1 ]] || trap 'rm -rf "$WORK"' EXIT

declare -A SSH FTP
if want sftp; then
  bash "$ROOT/scripts/test-servers/sshd.sh" start >&2
  while IFS='=' read -r k v; do SSH[$k]=$v; done < <(bash "$ROOT/scripts/test-servers/sshd.sh" env)
fi
if want ftp || want ftps; then
  bash "$ROOT/scripts/test-servers/vsftpd.sh" start >&2
  while IFS='=' read -r k v; do FTP[$k]=$v; done < <(bash "$ROOT/scripts/test-servers/vsftpd.sh" env)
fi

log "writing a ${SIZE_MIB} MiB file of random bytes"
FILE=$WORK/payload.bin
head -c $((SIZE_MIB << 20)) /dev/urandom >"$FILE"

# ------------------------------------------------------------------ Ferry's targets
mkdir -p "$WORK/secrets/default"/{sftp-key,ftp-login,ftp-ca} "$WORK/files"
RES=$WORK/files/targets.yaml
: >"$RES"
if want sftp; then
  cp "${SSH[SFTP_KEY_ED25519]}" "$WORK/secrets/default/sftp-key/id_ed25519"
  cat >>"$RES" <<EOF
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: bench-sftp}
spec:
  sftp:
    host: ${SSH[SFTP_HOST]}
    port: ${SSH[SFTP_PORT]}
    directory: upload/bench
    username: ${SSH[SFTP_KEY_USER]}
    privateKeySecretRef: {name: sftp-key, key: id_ed25519}
    hostKeys: ["${SSH[SFTP_HOST_KEY_ED25519]}"]
---
EOF
fi
if want ftp || want ftps; then
  printf '%s' "${FTP[FTP_PASSWORD]}" >"$WORK/secrets/default/ftp-login/password"
  cp "${FTP[FTP_CA_CERT]}" "$WORK/secrets/default/ftp-ca/ca.pem"
  for tls in none explicit; do
    cat >>"$RES" <<EOF
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: bench-ftp-$tls}
spec:
  ftp:
    host: ${FTP[FTP_HOST]}
    port: ${FTP[FTP_PORT]}
    tls: $tls
    directory: bench
    username: ${FTP[FTP_USER]}
    passwordSecretRef: {name: ftp-login, key: password}
    caSecretRef: {name: ftp-ca, key: ca.pem}
---
EOF
  done
fi
export FERRY_STATE=$WORK/state.db FERRY_SECRETS_DIR=$WORK/secrets
"$FERRY" apply -f "$WORK/files" --auto-approve >/dev/null

# ------------------------------------------------------------------ timing
now() { date +%s.%N; }
# time_cmd CMD...: seconds taken (the command's output is discarded; failure aborts).
time_cmd() {
  local t0 t1
  t0=$(now)
  "$@" >"$WORK/last.log" 2>&1 || { cat "$WORK/last.log" >&2; log "failed: $*"; exit 1; }
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}'
}
div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.4f", a / b}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

sftp_put() { # sftp_put CIPHER NAME
  local cipher=()
  [[ -n $1 ]] && cipher=(-c "$1")
  printf 'put %s upload/bench/%s\n' "$FILE" "$2" | sftp -q -b - "${cipher[@]}" \
    -i "${SSH[SFTP_KEY_ED25519]}" -o UserKnownHostsFile="${SSH[SFTP_KNOWN_HOSTS]}" \
    -o StrictHostKeyChecking=yes -o BatchMode=yes -P "${SSH[SFTP_PORT]}" \
    "${SSH[SFTP_KEY_USER]}@${SSH[SFTP_HOST]}"
}
sftp_mkdir() {
  printf -- '-mkdir upload/bench\n' | sftp -q -b - -i "${SSH[SFTP_KEY_ED25519]}" \
    -o UserKnownHostsFile="${SSH[SFTP_KNOWN_HOSTS]}" -o BatchMode=yes -P "${SSH[SFTP_PORT]}" \
    "${SSH[SFTP_KEY_USER]}@${SSH[SFTP_HOST]}" >/dev/null 2>&1 || true
}
ftp_url() { echo "ftp://${FTP[FTP_USER]}:${FTP[FTP_PASSWORD]}@${FTP[FTP_HOST]}:${FTP[FTP_PORT]}/bench/$1"; }
clean_sftp() { rm -f "${SSH[SFTP_KEY_USER_HOME]}"/upload/bench/*.bin; }
clean_ftp() { rm -f "${FTP[FTP_ROOT]}"/bench/*.bin 2>/dev/null || true; }

RESULTS=()
# run_case NAME GOAL CLEAN REF_LABEL REF_CMD... -- FERRY_TARGET
run_case() {
  local name=$1 goal=$2 clean=$3 label=$4
  shift 4
  local ref=() target
  while [[ $1 != -- ]]; do ref+=("$1"); shift; done
  target=$2
  local rt=() ft=()
  log "$name: warm-up"
  $clean; time_cmd "${ref[@]}" >/dev/null
  $clean; time_cmd "$FERRY" deliver "deliverytarget/$target" "$FILE" --as ferry.bin >/dev/null
  for ((i = 1; i <= REPS; i++)); do
    $clean; rt+=("$(time_cmd "${ref[@]}")")
    $clean; ft+=("$(time_cmd "$FERRY" deliver "deliverytarget/$target" "$FILE" --as ferry.bin)")
    log "$name run $i: $label ${rt[-1]}s, ferry ${ft[-1]}s"
  done
  $clean
  local r f
  r=$(median "${rt[@]}"); f=$(median "${ft[@]}")
  RESULTS+=("$(printf '%-6s %-34s %8.2f %8.0f %8.2f %8.0f %6.2f %5s' "$name" "$label" "$r" \
    "$(div "$SIZE_MIB" "$r")" "$f" "$(div "$SIZE_MIB" "$f")" \
    "$(div "$r" "$f")" "$goal")")
}

if want sftp; then
  sftp_mkdir
  # Reference at OpenSSH's default cipher (what `sftp` users get), then at AES-GCM.
  run_case sftp 1.0 clean_sftp "OpenSSH sftp (default cipher)" sftp_put "" ref.bin -- bench-sftp
  run_case sftp 1.0 clean_sftp "OpenSSH sftp -c aes128-gcm" sftp_put aes128-gcm@openssh.com ref.bin -- bench-sftp
fi
if want ftp; then
  run_case ftp 0.9 clean_ftp "curl -T" curl -sS --ftp-create-dirs -T "$FILE" "$(ftp_url ref.bin)" -- bench-ftp-none
fi
if want ftps; then
  run_case ftps 0.9 clean_ftp "curl -T --ssl-reqd" curl -sS --ssl-reqd --cacert "${FTP[FTP_CA_CERT]}" \
    --ftp-create-dirs -T "$FILE" "$(ftp_url ref.bin)" -- bench-ftp-explicit
fi

echo
echo "Upload of ${SIZE_MIB} MiB over loopback, median of $REPS ($(nproc) cores)"
printf '%-6s %-34s %8s %8s %8s %8s %6s %5s\n' case reference "ref s" "MiB/s" "ferry s" "MiB/s" ratio goal
for line in "${RESULTS[@]}"; do echo "$line"; done
