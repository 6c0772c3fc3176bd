# shellcheck shell=bash disable=SC2034
# Shared by bench/scheduler.sh and bench/sftp_due.sh (sourced, not run): the two binaries,
# the work directory, GNU time, free ports, and the results table.
# Expects ROOT to be set, and `set -euo pipefail`.

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is required (generator, statistics)"

OLD_BIN=${OLD_BIN:-/work/notes/bin/ferry-739a412}
NEW_BIN=${NEW_BIN:-/work/notes/bin/ferry-new}

# ------------------------------------------------------------------ work directory
if [[ -n ${WORK:-} ]]; then
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-sched.XXXXXX")
fi
chmod 755 "$WORK"
CLEANUPS=()
cleanup() {
    local c
    for c in "${CLEANUPS[@]}"; do eval "$c" || true; done
    if [[ ${KEEP:-0} != 1 ]]; then rm -rf "$WORK"; else echo "work directory kept: $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ the binaries
# SIDES: the labels measured, in order. The old side is skipped (with a message) when OLD_BIN is
# missing. Each binary is copied into the work directory first, so a rebuild or a copy meanwhile
# cannot change it during the run.
SIDES=()
if [[ -x $OLD_BIN ]]; then
    cp "$OLD_BIN" "$WORK/ferry-old"
    SIDES+=(old)
else
    log "OLD_BIN=$OLD_BIN is missing: the old side is skipped (its columns show 'skipped')"
fi
[[ -x $NEW_BIN ]] || die "NEW_BIN=$NEW_BIN is not executable"
cp "$NEW_BIN" "$WORK/ferry-new"
SIDES+=(new)
bin_of() { echo "$WORK/ferry-$1"; }
src_of() { if [[ $1 == old ]]; then echo "$OLD_BIN"; else echo "$NEW_BIN"; fi; }

export NO_COLOR=1
unset FERRY_NOW FERRY_LOG FERRY_STATE FERRY_SECRETS_DIR FERRY_MAX_CONCURRENT_RUNS FERRY_METRICS_LISTEN FERRY_SFTP_LISTEN
export FERRY_LOG_FORMAT=text

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
[[ -n $TIME_BIN ]] || die "GNU time (/usr/bin/time -v) is required for wall time and peak RSS: apt-get install time"

# time_v OUT CMD...: runs CMD under GNU time, its stdout/stderr to OUT.out/OUT.err, the time
# report to OUT.time; returns CMD's exit code.
time_v() {
    local out=$1; shift
    local rc=0
    "$TIME_BIN" -v -o "$out.time" "$@" >"$out.out" 2>"$out.err" || rc=$?
    return $rc
}
# wall_s FILE.time / rss_mib FILE.time
wall_s() {
    awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s}' "$1"
}
rss_mib() { awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$1"; }
cpu_s() { awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {printf "%.2f", u + s}' "$1"; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

compiles() { local c; c=$(pgrep -c -x rustc 2>/dev/null) || true; echo "${c:-0}"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

host_line() {
    echo "host: $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //' || uname -m), $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), kernel $(uname -r)"
}
binaries_lines() {
    local s
    for s in old new; do
        if [[ -x $WORK/ferry-$s ]]; then
            echo "$s: $(src_of "$s") ($("$WORK/ferry-$s" --version), sha256 $(sha256sum "$WORK/ferry-$s" | cut -c1-12))"
        else
            echo "$s: skipped ($(src_of "$s") missing)"
        fi
    done
}

# ------------------------------------------------------------------ results
# record CASE OLD NEW RATIO GOAL MET: one row of the final table (tab-separated).
RESULTS=$WORK/results.tsv
: >"$RESULTS"
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }
MISSED=0
print_table() {
    python3 - "$RESULTS" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
hdr = ("case", "old", "new", "ratio old/new", "goal", "met?")
w = [max(len(r[i]) for r in [hdr] + rows) for i in range(len(hdr))]
def line(r):
    return "| " + " | ".join(c.ljust(w[i]) if i in (0, 4) else c.rjust(w[i]) for i, c in enumerate(r)) + " |"
print(line(hdr))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in rows:
    print(line(r))
EOF
}
# ratio A B: A / B with 2 decimals ("-" when either is missing or B is 0)
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}
