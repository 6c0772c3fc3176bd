#!/usr/bin/env bash
# The two state backends side by side: the same 10,000 generated resources applied to a SQLite
# file and to PostgreSQL (the test server of scripts/test-servers/postgres.sh, a fresh schema),
# then planned again (no changes; no PSA refresh: the generated PSA hosts do not exist), then 200 runs recorded in each ledger. Prints medians and the
# PostgreSQL/SQLite ratio.
#
#   bench/state_backends.sh               # from the repository root (or anywhere)
#   REPS=5 SCALE=0.2 bench/state_backends.sh
#
# Environment (all optional): REPS=3 (timed repetitions), SCALE=1.0 (10,000 resources),
# FERRY_BIN=PATH (default target/release/ferry, built when missing), RUNS=200.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=${REPS:-3}
SCALE=${SCALE:-1.0}
RUNS=${RUNS:-200}
BIN_SRC=${FERRY_BIN:-$ROOT/target/release/ferry}
if [[ ! -x $BIN_SRC ]]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-state-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
BIN=$WORK/ferry
cp "$BIN_SRC" "$BIN"

bash "$ROOT/scripts/test-servers/postgres.sh" start >/dev/null
PG=$(bash "$ROOT/scripts/test-servers/postgres.sh" url)
fresh_pg() {
    psql "$PG" -q -v ON_ERROR_STOP=1 -c "DROP SCHEMA IF EXISTS bench_state CASCADE; CREATE SCHEMA bench_state" >/dev/null 2>&1
}
PG_STATE="$PG?options=-c%20search_path%3Dbench_state"

export FERRY_NOW=2026-03-01T09:00:00Z NO_COLOR=1 FERRY_WORK_DIR=$WORK/pg-work
unset FERRY_LOG FERRY_STATE FERRY_SECRETS_DIR

RES=$WORK/resources
SECRETS=$WORK/secrets
python3 "$ROOT/bench/gen_resources.py" --out "$RES" --secrets-dir "$SECRETS" --scale "$SCALE" >/dev/null
F=(-f "$RES" --secrets-dir "$SECRETS")

now_ns() { date +%s%N; }
# time_it EXPECTED_EXIT CMD... -> nanoseconds
time_it() {
    local expected=$1; shift
    local t0 rc=0
    t0=$(now_ns)
    "$@" >"$WORK/out.txt" 2>"$WORK/err.txt" || rc=$?
    if [[ $rc != "$expected" ]]; then
        echo "error: \`$*\` exited $rc (expected $expected)" >&2
        head -20 "$WORK/err.txt" >&2
        exit 1
    fi
    echo $(($(now_ns) - t0))
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m/1e9}'; }

# A small schedule for the ledger part: run-now records a run and a delivery each time.
LEDGER=$WORK/ledger
mkdir -p "$LEDGER"
cat >"$LEDGER/r.yaml" <<EOF
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {name: out}
spec:
  localDir: {path: $WORK/delivered}
---
apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata: {name: tiny}
spec:
  schedule: {daily: {at: "00:30"}}
  source:
    sql: {url: "sqlite://$WORK/tiny.db", query: "SELECT 1 AS n"}
  format: {csv: {}}
  fileName: "tiny_{yyyyMMddHHmmss}.csv"
  deliverTo: [{target: out}]
EOF
python3 -c "import sqlite3,sys; sqlite3.connect(sys.argv[1]).close()" "$WORK/tiny.db"

declare -A RESULT
for backend in sqlite postgres; do
    apply=() plan=() ledger=()
    for _ in $(seq "$REPS"); do
        if [[ $backend == sqlite ]]; then
            rm -rf "$WORK/sqlite"
            state=$WORK/sqlite/state.db
        else
            fresh_pg
            state=$PG_STATE
        fi
        apply+=("$(time_it 0 "$BIN" --state "$state" apply --auto-approve "${F[@]}")")
        plan+=("$(time_it 0 "$BIN" --state "$state" plan --refresh=false --detailed-exitcode "${F[@]}")")
        "$BIN" --state "$state" apply --auto-approve -f "$RES" "$LEDGER" --secrets-dir "$SECRETS" >/dev/null
        t0=$(now_ns)
        for i in $(seq "$RUNS"); do
            slot=$(date -u -d "2025-01-01 00:30 UTC + $i days" +%Y-%m-%dT%H:%M:%S+00:00)
            "$BIN" --state "$state" run-now reportschedule/tiny --slot "$slot" >/dev/null
        done
        ledger+=("$(($(now_ns) - t0))")
    done
    RESULT[$backend,apply]=$(median "${apply[@]}")
    RESULT[$backend,plan]=$(median "${plan[@]}")
    RESULT[$backend,ledger]=$(median "${ledger[@]}")
done

n=$(find "$RES" -name '*.yaml' -exec grep -c '^kind:' {} + | awk -F: '{s+=$NF} END {print s}')
printf '\n%s resources, %s recorded runs, median of %s (release build, %s cores)\n\n' "$n" "$RUNS" "$REPS" "$(nproc)"
printf '| Operation | SQLite | PostgreSQL | PostgreSQL / SQLite |\n|---|---|---|---|\n'
for op in apply plan ledger; do
    case $op in
        apply) label="\`apply\` (all creates, one transaction)" ;;
        plan) label="\`plan\` against the applied state" ;;
        ledger) label="$RUNS \`run-now\` processes (run + delivery in the ledger)" ;;
    esac
    s=${RESULT[sqlite,$op]} p=${RESULT[postgres,$op]}
    printf '| %s | %s s | %s s | %s |\n' "$label" "$s" "$p" "$(awk -v a="$p" -v b="$s" 'BEGIN {printf "%.2f", a/b}')"
done
psql "$PG" -q -c "DROP SCHEMA IF EXISTS bench_state CASCADE" >/dev/null 2>&1 || true
