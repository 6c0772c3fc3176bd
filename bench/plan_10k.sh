#!/usr/bin/env bash
# Ferry at scale: validate / plan / apply / re-plan over 10,000 generated resources.
#
#   bench/plan_10k.sh                 # from the repository root (or anywhere)
#   REPS=10 bench/plan_10k.sh         # more repetitions
#   SCALE=0.2 bench/plan_10k.sh       # 2,000 resources
#
# Environment (all optional):
#   REPS=5          timed repetitions of validate and of each plan (after one untimed warm-up)
#   APPLY_REPS=1    timed applies, each against a fresh state
#   SCALE=1.0       1.0 = 10,000 resources (1,000 DT, 7,000 RS, 2,000 CM); see gen_resources.py
#   GOAL=1.0        target in seconds; an operation meets it when its median is below
#   REBUILD=1       run `cargo build --release` even when target/release/ferry exists
#   FERRY_BIN=PATH  benchmark this binary instead (no build)
#   WORK=DIR        work directory (default: a new mktemp -d, deleted at the end unless KEEP=1)
#   KEEP=1          keep the work directory (resources, secrets, states, outputs)
#   STRICT=1        exit 1 when an operation misses the goal (for CI)
#
# Nothing in the repository is written except target/ (by cargo).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=${REPS:-5}
APPLY_REPS=${APPLY_REPS:-1}
SCALE=${SCALE:-1.0}
GOAL=${GOAL:-1.0}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is required (resource generator and statistics)"

# ------------------------------------------------------------------ the binary
if [[ -n ${FERRY_BIN:-} ]]; then
    BIN_SRC=$FERRY_BIN
    [[ -x $BIN_SRC ]] || die "FERRY_BIN=$BIN_SRC is not executable"
else
    BIN_SRC=$ROOT/target/release/ferry
    if [[ ! -x $BIN_SRC || ${REBUILD:-0} == 1 ]]; then
        log "cargo build --release (first build takes several minutes)"
        (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
    else
        stale=$(cd "$ROOT" && find src Cargo.toml Cargo.lock -newer "$BIN_SRC" -print -quit 2>/dev/null || true)
        if [[ -n $stale ]]; then
            log "warning: $BIN_SRC is older than $stale; rerun with REBUILD=1 to measure the current sources"
        fi
        log "reusing $BIN_SRC"
    fi
fi

# ------------------------------------------------------------------ work directory
if [[ -n ${WORK:-} ]]; then
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench.XXXXXX")
fi
if [[ ${KEEP:-0} != 1 ]]; then
    trap 'rm -rf "$WORK"' EXIT
fi
# Pin the binary: other work in the repository may rebuild target/release/ferry meanwhile.
BIN=$WORK/ferry
cp "$BIN_SRC" "$BIN"
RES=$WORK/resources
SECRETS=$WORK/secrets
OUT=$WORK/out
mkdir -p "$OUT"

# Reproducible plans (next-run previews) and plain output.
export FERRY_NOW=2026-03-01T09:00:00Z
export NO_COLOR=1
unset FERRY_LOG FERRY_STATE FERRY_SECRETS_DIR

log "generating resources in $RES (scale $SCALE)"
python3 "$ROOT/bench/gen_resources.py" --out "$RES" --secrets-dir "$SECRETS" --scale "$SCALE"
N_FILES=$(find "$RES" -name '*.yaml' | wc -l)
RES_MIB=$(du -sm "$RES" | cut -f1)

# ------------------------------------------------------------------ peak RSS via GNU time
TIME_BIN=""
if [[ -x /usr/bin/time ]] && /usr/bin/time -v true 2>/dev/null; then
    TIME_BIN=/usr/bin/time
elif [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing GNU time (apt-get install -y time) for peak RSS"
    if apt-get install -y -qq time >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq time >/dev/null 2>&1; }; then
        TIME_BIN=/usr/bin/time
    fi
fi
[[ -n $TIME_BIN ]] || log "GNU time unavailable and not root: peak RSS is skipped"

now_ns() { date +%s%N; }

# run_timed EXPECTED_RC OUTFILE CMD... : runs CMD once with stdout to OUTFILE, prints elapsed ns.
run_timed() {
    local expected=$1 outfile=$2; shift 2
    local t0 t1 rc=0
    t0=$(now_ns)
    "$@" >"$outfile" 2>"$outfile.err" || rc=$?
    t1=$(now_ns)
    if [[ $rc != "$expected" ]]; then
        printf 'error: `%s` exited %s (expected %s); stderr:\n' "$*" "$rc" "$expected" >&2
        head -20 "$outfile.err" >&2
        exit 1
    fi
    echo $((t1 - t0))
}

# peak_rss_mib CMD... : max resident set size of one run, in MiB ("-" without GNU time).
peak_rss_mib() {
    if [[ -z $TIME_BIN ]]; then echo "-"; return; fi
    local f=$WORK/rss.txt
    "$TIME_BIN" -v -o "$f" "$@" >/dev/null 2>&1 || true
    awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$f"
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"
# record LABEL RSS NS... : one line per operation: label, rss, samples (ns).
record() { local label=$1 rss=$2; shift 2; printf '%s\t%s\t%s\n' "$label" "$rss" "$*" >>"$RESULTS"; }

F=(-f "$RES" --secrets-dir "$SECRETS")
# Plans run with --refresh=false: the generated PSA hosts do not exist, and a refresh would
# measure DNS failures (the PSA side has its own benchmark, bench/psa_load.py).

# ------------------------------------------------------------------ (a) validate
log "(a) validate x$REPS"
run_timed 0 "$OUT/validate.txt" "$BIN" validate "${F[@]}" >/dev/null   # warm-up (page cache)
grep -q "^Valid: " "$OUT/validate.txt" || die "validate did not report success: $(cat "$OUT/validate.txt")"
samples=()
for ((i = 0; i < REPS; i++)); do samples+=("$(run_timed 0 "$OUT/validate.txt" "$BIN" validate "${F[@]}")"); done
record "validate" "$(peak_rss_mib "$BIN" validate "${F[@]}")" "${samples[@]}"
VALID_LINE=$(cat "$OUT/validate.txt")

# ------------------------------------------------------------------ (b) plan, empty state
log "(b) plan against an empty state x$REPS"
EMPTY=$WORK/empty-state/state.db
fresh_empty() { rm -rf "$WORK/empty-state"; }
fresh_empty
run_timed 2 "$OUT/plan-empty.txt" "$BIN" --state "$EMPTY" plan --refresh=false --detailed-exitcode "${F[@]}" >/dev/null
samples=()
for ((i = 0; i < REPS; i++)); do
    fresh_empty
    samples+=("$(run_timed 2 "$OUT/plan-empty.txt" "$BIN" --state "$EMPTY" plan --refresh=false --detailed-exitcode "${F[@]}")")
done
fresh_empty
record "plan (empty state)" "$(peak_rss_mib "$BIN" --state "$EMPTY" plan --refresh=false "${F[@]}")" "${samples[@]}"

# ------------------------------------------------------------------ (c) apply
log "(c) apply --auto-approve x$APPLY_REPS (fresh state each)"
STATE=$WORK/state/state.db
samples=()
for ((i = 0; i < APPLY_REPS; i++)); do
    rm -rf "$WORK/state"
    samples+=("$(run_timed 0 "$OUT/apply.txt" "$BIN" --state "$STATE" apply --auto-approve "${F[@]}")")
done
grep -q "^Apply complete: " "$OUT/apply.txt" || die "apply did not complete: $(tail -3 "$OUT/apply.txt")"
APPLY_LINE=$(grep "^Apply complete: " "$OUT/apply.txt")
rm -rf "$WORK/rss-state"
record "apply --auto-approve" "$(peak_rss_mib "$BIN" --state "$WORK/rss-state/state.db" apply --auto-approve "${F[@]}")" "${samples[@]}"
rm -rf "$WORK/rss-state"
STATE_MIB=$(du -sm "$WORK/state" | cut -f1)

# ------------------------------------------------------------------ (d) plan, applied state
log "(d) plan against the applied state (no changes) x$REPS"
run_timed 0 "$OUT/plan-noop.txt" "$BIN" --state "$STATE" plan --refresh=false --detailed-exitcode "${F[@]}" >/dev/null
samples=()
for ((i = 0; i < REPS; i++)); do
    samples+=("$(run_timed 0 "$OUT/plan-noop.txt" "$BIN" --state "$STATE" plan --refresh=false --detailed-exitcode "${F[@]}")")
done
record "plan (applied, no changes)" "$(peak_rss_mib "$BIN" --state "$STATE" plan --refresh=false "${F[@]}")" "${samples[@]}"

# ------------------------------------------------------------------ (e) plan -o json, applied state
log "(e) plan -o json against the applied state x$REPS"
run_timed 0 "$OUT/plan-noop.json" "$BIN" --state "$STATE" plan --refresh=false -o json --detailed-exitcode "${F[@]}" >/dev/null
samples=()
for ((i = 0; i < REPS; i++)); do
    samples+=("$(run_timed 0 "$OUT/plan-noop.json" "$BIN" --state "$STATE" plan --refresh=false -o json --detailed-exitcode "${F[@]}")")
done
record "plan -o json (applied)" "$(peak_rss_mib "$BIN" --state "$STATE" plan --refresh=false -o json "${F[@]}")" "${samples[@]}"
JSON_CHECK=$(python3 - "$OUT/plan-noop.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
s = p["summary"]
bad = s["create"] + s["update"] + s["delete"]
print(f"summary {s}, {len(p['changes'])} changes listed, {len(p.get('warnings', []))} warnings"
      + ("" if bad == 0 else "  <-- UNEXPECTED CHANGES"))
EOF
)

# ------------------------------------------------------------------ report
size() { du -h "$1" | cut -f1; }
echo
echo "Ferry benchmark: $VALID_LINE"
echo "  $N_FILES files, ${RES_MIB} MiB of YAML; state after apply ${STATE_MIB} MiB; $APPLY_LINE"
echo "  binary: $("$BIN" --version) ($BIN_SRC), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "  host: $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //' || uname -m)"
echo "  outputs: plan text $(size "$OUT/plan-empty.txt") (empty state) / $(size "$OUT/plan-noop.txt") (no changes), plan json $(size "$OUT/plan-noop.json")"
echo "  no-change plan JSON: $JSON_CHECK"
echo "  $REPS timed repetitions after one warm-up (apply: $APPLY_REPS on a fresh state); peak RSS from one extra run"
echo
python3 - "$RESULTS" "$GOAL" "$WORK/missed" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
goal = float(sys.argv[2])
hdr = ("operation", "median s", "min s", "max s", "runs", "peak RSS MiB", f"under {goal:g} s")
table, missed = [], 0
for label, rss, samples in rows:
    s = [int(x) / 1e9 for x in samples.split()]
    med = statistics.median(s)
    ok = med < goal
    missed += not ok
    table.append((label, f"{med:.3f}", f"{min(s):.3f}", f"{max(s):.3f}", str(len(s)), rss,
                  "yes" if ok else "NO"))
w = [max(len(r[i]) for r in [hdr] + table) for i in range(len(hdr))]
def line(r):
    return "| " + " | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) + " |"
print(line(hdr))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in table:
    print(line(r))
open(sys.argv[3], "w").write(str(missed))
EOF
MISSED=$(cat "$WORK/missed")
echo
if [[ ${KEEP:-0} == 1 ]]; then echo "work directory kept: $WORK"; fi
if [[ $MISSED != 0 ]]; then
    echo "$MISSED operation(s) miss the ${GOAL} s goal."
    [[ ${STRICT:-0} == 1 ]] && exit 1
fi
exit 0
