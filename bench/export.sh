#!/usr/bin/env bash
# Ferry's exports against the usual tools, side by side in one run:
#   csv-sqlite  SQLite -> CSV, 1M x 10       vs sqlite3 -csv -header
#   csv-pg      PostgreSQL -> CSV, 1M x 10   vs psql \copy (...) to stdout csv header; then the
#               same export split (`partition: {column: id, parts: N}`) for each N of PG_PARTS
#   pg-10m      PostgreSQL -> CSV, 10M x 5   vs psql \copy, serial and split the same way
#   csv-mariadb MariaDB -> CSV, 1M x 10      vs `mariadb -B -e` (tab-separated batch output, the
#               usual shell export), then vs `SELECT ... INTO OUTFILE` (the server writes the
#               file on its own disk, no client in between: the fastest MariaDB export, though
#               one a report's reader rarely may use; needs root's socket login, else skipped)
#   xlsx        SQLite -> XLSX, 1M x 10      vs Python XlsxWriter (constant_memory), typed cells
#   pdf         SQLite -> PDF, 100k x 10     embedded IPAGothic, and the built-in Helvetica (Latin
#                                            text); no reference tool: with PDF_OLD_BIN, another
#                                            ferry build (the one before a change) side by side
#   rss-10m     SQLite -> CSV, 10M x 5       peak RSS of ferry (and sqlite3 -csv for scale)
#
#   bench/export.sh                        # from anywhere; everything runs under a temp dir
#   CASES="csv-sqlite xlsx" bench/export.sh
#   ROWS=100000 BIG_ROWS=1000000 REPS=1 bench/export.sh    # a quick smoke run
#
# Environment (all optional):
#   REPS=3            timed runs per tool and case, after one untimed warm-up each; the table
#                     shows the median (the reference and Ferry alternate, run by run)
#   BIG_REPS=1        timed runs of the 10M-row case (after its warm-up)
#   ROWS=1000000      rows of the 1M cases;  PDF_ROWS=100000;  BIG_ROWS=10000000
#   PDF_MORE_ROWS=    also run the pdf cases at these row counts (e.g. "200000"; at most ROWS)
#   PDF_OLD_BIN=PATH  a ferry binary to compare with: each pdf case alternates it with Ferry as
#                     its reference (its own state; time, peak RSS, file and pages of both)
#   CASES="csv-sqlite csv-pg xlsx pdf rss-10m"   (pg-10m only when asked: it loads 10M rows
#                     into PostgreSQL, about a minute and 1 GiB of disk; csv-mariadb only when
#                     asked: it starts the test MariaDB)
#   PG_PARTS="2 4"    sessions of the split PostgreSQL exports (empty: serial only)
#   PG_GOAL=1.5       split PostgreSQL exports meet their goal when psql/ferry >= this
#   PG_BIG_ROWS=10000000  rows of pg-10m
#   CSV_GOAL=1.0      csv-* meet their goal when reference/ferry >= this
#   XLSX_GOAL=3.0     xlsx meets its goal when reference/ferry >= this
#   RSS_GOAL=100      rss-10m meets its goal when Ferry's peak RSS is under this (MiB)
#   REBUILD=1         run `cargo build --release` even when target/release/ferry exists
#   FERRY_BIN=PATH    benchmark this binary instead (no build)
#   WORK=DIR          work directory (default: a new mktemp -d under /tmp, deleted at the end
#                     unless KEEP=1)
#   KEEP=1            keep the work directory (databases, state, secrets, results.tsv) and the
#                     PostgreSQL and MariaDB tables ferry_bench_items (otherwise dropped at the end)
#   STRICT=1          exit 1 when a case misses its goal or an output has the wrong row count
#
# Needs python3, sqlite3, GNU time, XlsxWriter, a Japanese TrueType font (IPAGothic) and
# PostgreSQL; when running as root it installs what is missing (apt: sqlite3 time
# fonts-ipafont-gothic poppler-utils; pip: xlsxwriter) and starts the test PostgreSQL of
# scripts/test-servers/postgres.sh (stopping it at the end only if it started it here).
# Nothing in the repository is written except target/ (by cargo) and the test server's data.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPS=${REPS:-3}
BIG_REPS=${BIG_REPS:-1}
ROWS=${ROWS:-1000000}
PDF_ROWS=${PDF_ROWS:-100000}
BIG_ROWS=${BIG_ROWS:-10000000}
CASES=${CASES:-"csv-sqlite csv-pg xlsx pdf rss-10m"}
PG_PARTS=${PG_PARTS-"2 4"}
PG_GOAL=${PG_GOAL:-1.5}
PG_BIG_ROWS=${PG_BIG_ROWS:-10000000}
CSV_GOAL=${CSV_GOAL:-1.0}
XLSX_GOAL=${XLSX_GOAL:-3.0}
RSS_GOAL=${RSS_GOAL:-100}
PG_SCRIPT=$ROOT/scripts/test-servers/postgres.sh
MARIADB_SCRIPT=$ROOT/scripts/test-servers/mariadb.sh
JP_FONT=/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
want() { [[ " $CASES " == *" $1 "* ]]; }

command -v python3 >/dev/null || die "python3 is required"
(( PDF_ROWS <= ROWS )) || PDF_ROWS=$ROWS   # the PDF reads the first PDF_ROWS rows of the table
PDF_SIZES=$PDF_ROWS
for n in ${PDF_MORE_ROWS:-}; do (( n <= ROWS )) && PDF_SIZES+=" $n" || log "pdf: $n rows skipped (ROWS=$ROWS)"; done
if [[ -n ${PDF_OLD_BIN:-} ]]; then [[ -x $PDF_OLD_BIN ]] || die "PDF_OLD_BIN=$PDF_OLD_BIN is not executable"; fi

# ------------------------------------------------------------------ tools
IS_ROOT=0; [[ $(id -u) == 0 ]] && IS_ROOT=1
APT_UPDATED=0
apt_install() {
    [[ $IS_ROOT == 1 ]] && command -v apt-get >/dev/null || return 1
    log "installing $* (apt-get)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; then
        if [[ $APT_UPDATED == 0 ]]; then apt-get update -qq >/dev/null 2>&1 || true; APT_UPDATED=1; fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || return 1
    fi
}
command -v sqlite3 >/dev/null || apt_install sqlite3 || die "sqlite3 is required (apt-get install sqlite3)"
if ! { [[ -x /usr/bin/time ]] && /usr/bin/time -v true >/dev/null 2>&1; }; then
    apt_install time || die "GNU time is required for peak RSS (apt-get install time)"
fi
TIME_BIN=/usr/bin/time
if want xlsx && ! python3 -c 'import xlsxwriter' 2>/dev/null; then
    log "installing XlsxWriter (pip)"
    python3 -m pip install -q xlsxwriter >/dev/null 2>&1 || die "pip install xlsxwriter failed"
fi
if want pdf; then
    [[ -f $JP_FONT ]] || apt_install fonts-ipafont-gothic || true
    command -v pdfinfo >/dev/null || apt_install poppler-utils || true
fi

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
    WORK=$(cd "$WORK" && pwd)
else
    WORK=$(mktemp -d /tmp/ferry-export-bench.XXXXXX)
fi
PG_STARTED=0
MARIADB_STARTED=0
PG_TABLE=ferry_bench_items
PG_BIG_TABLE=ferry_bench_events
cleanup() {
    if [[ $PG_STARTED == 1 ]]; then "$PG_SCRIPT" stop >/dev/null 2>&1 || true; fi
    if [[ $MARIADB_STARTED == 1 ]]; then "$MARIADB_SCRIPT" stop >/dev/null 2>&1 || true; fi
    if [[ ${KEEP:-0} != 1 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
# Pin the binary: other work in the repository may rebuild target/release/ferry meanwhile.
BIN=$WORK/ferry
cp "$BIN_SRC" "$BIN"
DATA=$WORK/data           # databases
REF=$WORK/ref             # reference tools' outputs
DELIVERED=$WORK/delivered # Ferry's localDir target
RES=$WORK/resources
SECRETS=$WORK/secrets
STATE=$WORK/state/state.db
LOGS=$WORK/logs
mkdir -p "$DATA" "$REF" "$DELIVERED" "$RES" "$SECRETS" "$LOGS"
RESULTS=$WORK/results.tsv
: >"$RESULTS"

export FERRY_NOW=2026-03-01T09:00:00Z
export NO_COLOR=1
export PGTZ=Asia/Tokyo    # psql prints timestamptz in the zone Ferry's reports use
unset FERRY_LOG FERRY_STATE FERRY_SECRETS_DIR
F=(--state "$STATE" --secrets-dir "$SECRETS")

free_gib=$(df -Pk "$WORK" | awk 'NR==2 {printf "%.0f", $4/1048576}')
log "work directory $WORK (${free_gib} GiB free)"

# ------------------------------------------------------------------ measuring
now_ns() { date +%s%N; }
LAST_NS=0
LAST_RSS=0
# run_measured LABEL OUTFILE CMD... : runs CMD under GNU time with stdout to OUTFILE; sets
# LAST_NS (wall clock around the whole process) and LAST_RSS (peak RSS, KiB). The command line
# is never printed (it may hold a database URL).
run_measured() {
    local label=$1 outfile=$2; shift 2
    local t0 t1 rc=0
    t0=$(now_ns)
    "$TIME_BIN" -v -o "$LOGS/time.txt" "$@" >"$outfile" 2>"$LOGS/stderr.txt" || rc=$?
    t1=$(now_ns)
    if [[ $rc != 0 ]]; then
        printf 'error: %s exited %s; stderr:\n' "$label" "$rc" >&2
        head -20 "$LOGS/stderr.txt" >&2
        exit 1
    fi
    LAST_NS=$((t1 - t0))
    LAST_RSS=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$LOGS/time.txt")
}

# Slots: each Ferry run gets a slot of its own (a distinct file name; the ledger never skips it).
SLOT_N=0
next_slot() {
    SLOT=$(date -u -d "@$((1767225600 + SLOT_N * 3600))" +%Y-%m-%dT%H:%M:%SZ)   # from 2026-01-01, hourly
    SLOT_N=$((SLOT_N + 1))
}

# ferry_run NAME : one `ferry run-now rs/NAME --slot ...`; sets LAST_NS, LAST_RSS, FERRY_FILE
# (the delivered file) and FERRY_ROWS (the rows Ferry reports).
ferry_run() {
    local name=$1
    next_slot
    run_measured "ferry run-now rs/$name" "$LOGS/run-now.txt" "$BIN" "${F[@]}" run-now "rs/$name" --slot "$SLOT"
    local line
    line=$(head -1 "$LOGS/run-now.txt")
    [[ $line == *": succeeded, "* ]] || die "ferry run-now rs/$name: $line"
    FERRY_ROWS=$(sed -E 's/.*succeeded, ([0-9]+) rows.*/\1/' <<<"$line")
    FERRY_FILE=$DELIVERED/$(sed -E 's/.* file (.*)$/\1/' <<<"$line")
    [[ -f $FERRY_FILE ]] || die "ferry run-now rs/$name: $FERRY_FILE was not delivered"
}

# bench_case CASE REF_LABEL REPS REF_FN SCHEDULE : warm-up of both, then REPS alternating timed
# runs. REF_FN OUTFILE runs the reference (through run_measured). Leaves the last outputs in
# REF_OUT and FERRY_FILE; sets REF_SAMPLES, FERRY_SAMPLES, REF_RSS_MAX, FERRY_RSS_MAX (KiB).
bench_case() {
    local case=$1 label=$2 reps=$3 ref_fn=$4 schedule=$5 i
    REF_SAMPLES=""; FERRY_SAMPLES=""; REF_RSS_MAX=0; FERRY_RSS_MAX=0
    for ((i = 0; i <= reps; i++)); do
        if [[ -n $ref_fn ]]; then
            rm -f "$REF_OUT"
            "$ref_fn" "$REF_OUT"
            if ((i > 0)); then
                REF_SAMPLES+="$LAST_NS "
                ((LAST_RSS > REF_RSS_MAX)) && REF_RSS_MAX=$LAST_RSS
            fi
            log "  $case: $label $( ((i == 0)) && echo "warm-up" || echo "run $i") $(awk -v n="$LAST_NS" 'BEGIN {printf "%.2f s", n/1e9}')"
        fi
        [[ -n ${FERRY_FILE:-} ]] && rm -f "$FERRY_FILE"
        ferry_run "$schedule"
        if ((i > 0)); then
            FERRY_SAMPLES+="$LAST_NS "
            ((LAST_RSS > FERRY_RSS_MAX)) && FERRY_RSS_MAX=$LAST_RSS
        fi
        log "  $case: ferry $( ((i == 0)) && echo "warm-up" || echo "run $i") $(awk -v n="$LAST_NS" 'BEGIN {printf "%.2f s", n/1e9}'), $(awk -v k="$LAST_RSS" 'BEGIN {printf "%.0f MiB", k/1024}')"
    done
    REF_SAMPLES=${REF_SAMPLES% }; FERRY_SAMPLES=${FERRY_SAMPLES% }
}

# record FIELDS... : one line of results.tsv (see bench/export_tools.py for the fields).
record() { (IFS=$'\t'; echo "$*") >>"$RESULTS"; }
lines() { wc -l <"$1" | tr -d ' '; }
bytes() { stat -c %s "$1"; }

# ------------------------------------------------------------------ data
DB=$DATA/items.db
BIG_DB=$DATA/events.db
ITEM_COLUMNS="id, customer, quantity, price, weight, ship_date, updated_at, active, note, status"
Q_ITEMS="SELECT $ITEM_COLUMNS FROM items ORDER BY id"
# Helvetica shows Latin-1 only: other text (Japanese customers and notes) is replaced.
LATIN1="GLOB '*[^ -ÿ]*'"
Q_PDF_LATIN="SELECT id, CASE WHEN customer $LATIN1 THEN 'Sample Trading Co. ' || id ELSE customer END AS customer, quantity, price, weight, ship_date, updated_at, active, CASE WHEN note $LATIN1 THEN 'gift wrap, thank-you note' ELSE note END AS note, status FROM items ORDER BY id"
Q_PG="SELECT $ITEM_COLUMNS FROM $PG_TABLE ORDER BY id"
Q_EVENTS="SELECT id, code, qty, amount, day FROM events ORDER BY id"
Q_PG_BIG="SELECT id, code, qty, amount, day FROM $PG_BIG_TABLE ORDER BY id"

if want csv-sqlite || want csv-pg || want csv-mariadb || want xlsx || want pdf; then
    log "generating $ROWS rows x 10 columns (SQLite)"
    python3 "$ROOT/bench/gen_export_data.py" --db "$DB" --rows "$ROWS"
fi
if want rss-10m; then
    need_mib=$((BIG_ROWS / 1000000 * 150))
    (( free_gib * 1024 > need_mib )) || die "rss-10m needs about $need_mib MiB free in $WORK"
    log "generating $BIG_ROWS rows x 5 columns (SQLite)"
    python3 "$ROOT/bench/gen_export_data.py" --db "$BIG_DB" --rows "$BIG_ROWS" --shape narrow
fi

PG_OK=0
PG_BIG_OK=0
PG_NOTE=""
if want csv-pg || want pg-10m; then
    if ! "$PG_SCRIPT" status >/dev/null 2>&1; then
        log "starting the test PostgreSQL (scripts/test-servers/postgres.sh start)"
        if "$PG_SCRIPT" start >"$LOGS/pg-start.txt" 2>&1; then PG_STARTED=1; else
            PG_NOTE="PostgreSQL did not start: $(tail -1 "$LOGS/pg-start.txt")"
        fi
    fi
    if [[ -z $PG_NOTE ]]; then
        PG_URL=$("$PG_SCRIPT" url)
        mkdir -p "$SECRETS/default/bench-pg"
        (umask 077; printf '%s\n' "$PG_URL" >"$SECRETS/default/bench-pg/url")
    fi
    if [[ -z $PG_NOTE ]] && want pg-10m; then
        log "generating $PG_BIG_ROWS rows x 5 columns in PostgreSQL table $PG_BIG_TABLE"
        if psql "$PG_URL" -X -q -v ON_ERROR_STOP=1 >"$LOGS/pg-big-load.txt" 2>&1 <<EOF
DROP TABLE IF EXISTS $PG_BIG_TABLE;
CREATE TABLE $PG_BIG_TABLE (
    id     bigint PRIMARY KEY,
    code   text NOT NULL,
    qty    integer NOT NULL,
    amount double precision NOT NULL,
    day    date NOT NULL
);
INSERT INTO $PG_BIG_TABLE
SELECT i, 'EV-' || lpad((i * 7919 % 100000)::text, 5, '0'), i * 31 % 500 + 1,
       (i * 7907 % 1000000) / 100.0, date '2024-01-01' + (i % 730)::int
FROM generate_series(1::bigint, $PG_BIG_ROWS) AS i;
VACUUM ANALYZE $PG_BIG_TABLE;
EOF
        then PG_BIG_OK=1; else
            log "pg-10m skipped: $(grep -m1 -i error "$LOGS/pg-big-load.txt" || tail -1 "$LOGS/pg-big-load.txt")"
        fi
    fi
    if [[ -z $PG_NOTE ]] && want csv-pg; then
        log "loading $ROWS rows into PostgreSQL table $PG_TABLE"
        sqlite3 -csv -header "$DB" "$Q_ITEMS" >"$DATA/pg-load.csv"
        if psql "$PG_URL" -X -q -v ON_ERROR_STOP=1 >"$LOGS/pg-load.txt" 2>&1 <<EOF
DROP TABLE IF EXISTS $PG_TABLE;
CREATE TABLE $PG_TABLE (
    id         bigint PRIMARY KEY,
    customer   text NOT NULL,
    quantity   integer NOT NULL,
    price      numeric(12,2) NOT NULL,
    weight     double precision NOT NULL,
    ship_date  date NOT NULL,
    updated_at timestamptz NOT NULL,
    active     boolean NOT NULL,
    note       text,
    status     text NOT NULL
);
\copy $PG_TABLE FROM '$DATA/pg-load.csv' WITH (FORMAT csv, HEADER true)
VACUUM ANALYZE $PG_TABLE;
EOF
        then
            PG_OK=1
        else
            PG_NOTE="loading PostgreSQL failed: $(grep -m1 -i error "$LOGS/pg-load.txt" || tail -1 "$LOGS/pg-load.txt")"
        fi
        rm -f "$DATA/pg-load.csv"
    fi
    [[ -n $PG_NOTE ]] && log "csv-pg skipped: $PG_NOTE"
fi

MARIADB_OK=0
MARIADB_NOTE=""
if want csv-mariadb; then
    if ! "$MARIADB_SCRIPT" status >/dev/null 2>&1; then
        log "starting the test MariaDB (scripts/test-servers/mariadb.sh start)"
        if "$MARIADB_SCRIPT" start >"$LOGS/mariadb-start.txt" 2>&1; then MARIADB_STARTED=1; else
            MARIADB_NOTE="MariaDB did not start: $(tail -1 "$LOGS/mariadb-start.txt")"
        fi
    fi
    if [[ -z $MARIADB_NOTE ]]; then
        eval "$("$MARIADB_SCRIPT" env)"
        mkdir -p "$SECRETS/default/bench-mariadb"
        (umask 077; printf '%s\n' "$MARIADB_URL" >"$SECRETS/default/bench-mariadb/url")
        # The client reads the password from a file of its own, never from the command line.
        MY_CNF=$WORK/my.cnf
        (umask 077; printf '[client]\nuser=%s\npassword=%s\nhost=127.0.0.1\nport=%s\n' \
            "$MARIADB_USER" "$MARIADB_PASSWORD" "$MARIADB_PORT" >"$MY_CNF")
        MY=(mariadb --defaults-file="$MY_CNF" --local-infile=1 "$MARIADB_DATABASE")
        log "loading $ROWS rows into MariaDB table $PG_TABLE"
        sqlite3 -csv "$DB" "$Q_ITEMS" >"$DATA/mariadb-load.csv"
        # updated_at arrives as `YYYY-MM-DDTHH:MM:SS+09:00`: stored as the TIMESTAMP it names.
        if "${MY[@]}" >"$LOGS/mariadb-load.txt" 2>&1 <<EOF
SET time_zone = '+09:00';
DROP TABLE IF EXISTS $PG_TABLE;
CREATE TABLE $PG_TABLE (
    id         BIGINT PRIMARY KEY,
    customer   VARCHAR(200) NOT NULL,
    quantity   INT NOT NULL,
    price      DECIMAL(12,2) NOT NULL,
    weight     DOUBLE NOT NULL,
    ship_date  DATE NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    active     BOOLEAN NOT NULL,
    note       TEXT,
    status     VARCHAR(20) NOT NULL
) CHARACTER SET utf8mb4;
LOAD DATA LOCAL INFILE '$DATA/mariadb-load.csv' INTO TABLE $PG_TABLE
  CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"' ESCAPED BY ''
  LINES TERMINATED BY '\n'
  (id, customer, quantity, price, weight, ship_date, @updated, active, @note, @status)
  SET updated_at = STR_TO_DATE(LEFT(@updated, 19), '%Y-%m-%dT%H:%i:%s'),
      note = NULLIF(@note, ''), status = TRIM(TRAILING '\r' FROM @status);
ANALYZE TABLE $PG_TABLE;
EOF
        then MARIADB_OK=1; else
            MARIADB_NOTE="loading MariaDB failed: $(grep -m1 -i error "$LOGS/mariadb-load.txt" || tail -1 "$LOGS/mariadb-load.txt")"
        fi
        rm -f "$DATA/mariadb-load.csv"
    fi
    [[ -n $MARIADB_NOTE ]] && log "csv-mariadb skipped: $MARIADB_NOTE"
fi

# ------------------------------------------------------------------ resources
HAVE_FONT=0; [[ -f $JP_FONT ]] && HAVE_FONT=1
schedule() { # NAME SOURCE_YAML FORMAT_YAML EXT
    cat <<EOF
---
apiVersion: ferry.dev/v1alpha1
kind: ReportSchedule
metadata:
  name: $1
spec:
  schedule:
    daily:
      at: "00:30"
  timeZone: Asia/Tokyo
  suspend: true
  source:
    sql:
$2
    window: all
  format:
$3
  fileName: "{schedule}_{yyyyMMddHHmmss}.$4"
  deliverTo:
    - target: bench-out
EOF
}
indent_query() { printf '      query: |\n        %s\n' "$1"; }
{
    cat <<EOF
apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata:
  name: bench-out
spec:
  localDir:
    path: "$DELIVERED"
EOF
    # sqlite3 -csv ends lines with LF (checked below), so Ferry writes LF too.
    CSV_FMT=$'    csv:\n      header: true\n      lineEnding: lf'
    SQLITE_SRC="      url: \"sqlite://$DB\""$'\n'"$(indent_query "$Q_ITEMS")"
    schedule csv-sqlite "$SQLITE_SRC" "$CSV_FMT" csv
    schedule xlsx "$SQLITE_SRC" $'    xlsx:\n      sheetName: Report' xlsx
    # pdf-N (IPAGothic) and pdf-latin-N (built-in Helvetica: text outside Latin-1 replaced)
    PDF_FMT=$'    pdf:\n      title: Export benchmark\n      orientation: landscape\n      pageSize: A4'
    for n in $PDF_SIZES; do
        ((HAVE_FONT)) && schedule "pdf-$n" "      url: \"sqlite://$DB\""$'\n'"$(indent_query "$Q_ITEMS LIMIT $n")" \
            "$PDF_FMT"$'\n'"      fontFile: \"$JP_FONT\"" pdf
        schedule "pdf-latin-$n" "      url: \"sqlite://$DB\""$'\n'"$(indent_query "$Q_PDF_LATIN LIMIT $n")" "$PDF_FMT" pdf
    done
    PG_SRC=$'      connectionSecretRef:\n        name: bench-pg\n        key: url\n'
    schedule csv-pg "$PG_SRC$(indent_query "$Q_PG")" "$CSV_FMT" csv
    schedule pg-10m "$PG_SRC$(indent_query "$Q_PG_BIG")" "$CSV_FMT" csv
    for parts in $PG_PARTS; do
        split=$'\n'"      partition: {column: id, parts: $parts}"
        schedule "csv-pg-p$parts" "$PG_SRC$(indent_query "$Q_PG")$split" "$CSV_FMT" csv
        schedule "pg-10m-p$parts" "$PG_SRC$(indent_query "$Q_PG_BIG")$split" "$CSV_FMT" csv
    done
    schedule rss-10m "      url: \"sqlite://$BIG_DB\""$'\n'"$(indent_query "$Q_EVENTS")" "$CSV_FMT" csv
    MARIADB_SRC=$'      connectionSecretRef:\n        name: bench-mariadb\n        key: url\n'
    schedule csv-mariadb "$MARIADB_SRC$(indent_query "$Q_PG")" "$CSV_FMT" csv
} >"$RES/bench.yaml"
log "ferry apply (untimed)"
"$BIN" "${F[@]}" apply --auto-approve -f "$RES" >"$LOGS/apply.txt" 2>&1 \
    || { cat "$LOGS/apply.txt" >&2; die "ferry apply failed"; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ 1. SQLite -> CSV
ref_sqlite_csv() { run_measured "sqlite3 -csv" "$1" sqlite3 -csv -header "$DB" "$Q_ITEMS"; }
if want csv-sqlite; then
    log "csv-sqlite: $ROWS rows, sqlite3 -csv -header vs ferry, warm-up + $REPS"
    REF_OUT=$REF/sqlite.csv
    FERRY_FILE=""
    bench_case csv-sqlite "sqlite3" "$REPS" ref_sqlite_csv csv-sqlite
    eol=LF; head -c 200 "$REF_OUT" | grep -q $'\r' && eol=CRLF
    note="line endings: sqlite3 $eol, ferry LF"
    record csv-sqlite "$ROWS" "sqlite3 -csv -header" "$REF_SAMPLES" "$REF_RSS_MAX" "$FERRY_SAMPLES" \
        "$FERRY_RSS_MAX" ratio "$CSV_GOAL" $(($(lines "$REF_OUT") - 1)) $(($(lines "$FERRY_FILE") - 1)) \
        "$FERRY_ROWS" "$(bytes "$REF_OUT")" "$(bytes "$FERRY_FILE")" "$note"
    rm -f "$REF_OUT" "$FERRY_FILE"
fi

# ------------------------------------------------------------------ 2. PostgreSQL -> CSV
ref_psql_csv() { run_measured "psql \\copy" "$1" psql "$PG_URL" -X -q -c "\\copy ($Q_PG) to stdout csv header"; }
ref_psql_big() { run_measured "psql \\copy (10M)" "$1" psql "$PG_URL" -X -q -c "\\copy ($Q_PG_BIG) to stdout csv header"; }
PG_VERSION_NOTE=""
[[ -n ${PG_URL:-} ]] && PG_VERSION_NOTE="PostgreSQL $(psql "$PG_URL" -X -tAc 'show server_version' 2>/dev/null | cut -d' ' -f1) on loopback, sharing the cores"
# pg_cases CASE ROWS REPS REF_FN LABEL : the serial export, then each split of PG_PARTS; each
# split file is compared with the serial one byte for byte.
pg_cases() {
    local case=$1 rows=$2 reps=$3 ref_fn=$4 label=$5 serial parts same
    log "$case: $rows rows, psql \\copy vs ferry, warm-up + $reps"
    REF_OUT=$REF/$case.csv
    FERRY_FILE=""
    bench_case "$case" "psql" "$reps" "$ref_fn" "$case"
    record "$case" "$rows" "$label" "$REF_SAMPLES" "$REF_RSS_MAX" "$FERRY_SAMPLES" \
        "$FERRY_RSS_MAX" ratio "$CSV_GOAL" $(($(lines "$REF_OUT") - 1)) $(($(lines "$FERRY_FILE") - 1)) \
        "$FERRY_ROWS" "$(bytes "$REF_OUT")" "$(bytes "$FERRY_FILE")" "one session; $PG_VERSION_NOTE"
    serial=$REF/$case-serial.csv
    mv "$FERRY_FILE" "$serial"
    FERRY_FILE=""
    for parts in $PG_PARTS; do
        log "$case, partition $parts: psql \\copy vs ferry, warm-up + $reps"
        bench_case "$case-p$parts" "psql" "$reps" "$ref_fn" "$case-p$parts"
        same=NO; cmp -s "$FERRY_FILE" "$serial" && same=yes
        record "$case, partition $parts" "$rows" "$label" "$REF_SAMPLES" "$REF_RSS_MAX" "$FERRY_SAMPLES" \
            "$FERRY_RSS_MAX" ratio "$PG_GOAL" $(($(lines "$REF_OUT") - 1)) $(($(lines "$FERRY_FILE") - 1)) \
            "$FERRY_ROWS" "$(bytes "$REF_OUT")" "$(bytes "$FERRY_FILE")" \
            "$parts sessions, one snapshot; same bytes as the serial file: $same"
        [[ $same == yes ]] || log "warning: $case with $parts parts differs from the serial file"
        rm -f "$FERRY_FILE"
        FERRY_FILE=""
    done
    rm -f "$REF_OUT" "$serial"
}
if want csv-pg; then
    if [[ $PG_OK == 1 ]]; then
        pg_cases csv-pg "$ROWS" "$REPS" ref_psql_csv "psql \\copy ... csv header"
        if [[ ${KEEP:-0} != 1 ]]; then
            psql "$PG_URL" -X -q -c "DROP TABLE IF EXISTS $PG_TABLE" >/dev/null 2>&1 || true
        fi
    else
        record csv-pg "$ROWS" "psql \\copy ... csv header" - - - - ratio "$CSV_GOAL" - - - - - "SKIPPED: $PG_NOTE"
    fi
fi
if want pg-10m; then
    if [[ $PG_BIG_OK == 1 ]]; then
        pg_cases pg-10m "$PG_BIG_ROWS" "$BIG_REPS" ref_psql_big "psql \\copy ... csv header"
        if [[ ${KEEP:-0} != 1 ]]; then
            psql "$PG_URL" -X -q -c "DROP TABLE IF EXISTS $PG_BIG_TABLE" >/dev/null 2>&1 || true
        fi
    else
        record pg-10m "$PG_BIG_ROWS" "psql \\copy ... csv header" - - - - ratio "$CSV_GOAL" - - - - - "SKIPPED: ${PG_NOTE:-loading failed}"
    fi
fi

# ------------------------------------------------------------------ 2b. MariaDB -> CSV
ref_mariadb_batch() { run_measured "mariadb -B -e" "$1" "${MY[@]}" -B -e "$Q_PG"; }
if want csv-mariadb; then
    if [[ $MARIADB_OK == 1 ]]; then
        log "csv-mariadb: $ROWS rows, mariadb -B -e vs ferry, warm-up + $REPS"
        REF_OUT=$REF/mariadb.tsv
        FERRY_FILE=""
        bench_case csv-mariadb "mariadb -B" "$REPS" ref_mariadb_batch csv-mariadb
        record csv-mariadb "$ROWS" "mariadb -B -e (tab-separated)" "$REF_SAMPLES" "$REF_RSS_MAX" \
            "$FERRY_SAMPLES" "$FERRY_RSS_MAX" ratio "$CSV_GOAL" $(($(lines "$REF_OUT") - 1)) \
            $(($(lines "$FERRY_FILE") - 1)) "$FERRY_ROWS" "$(bytes "$REF_OUT")" "$(bytes "$FERRY_FILE")" \
            "$("${MY[@]}" -N -B -e 'SELECT VERSION()' 2>/dev/null) on loopback, sharing the cores"
        rm -f "$REF_OUT" "$FERRY_FILE"
    else
        record csv-mariadb "$ROWS" "mariadb -B -e (tab-separated)" - - - - ratio "$CSV_GOAL" - - - - - "SKIPPED: $MARIADB_NOTE"
    fi
fi
# The server writes the file itself (as its own user, so into a directory it may write), with
# CSV-like options: comma, `"` around strings, NULL as \N, backslash escapes.
ref_mariadb_outfile() {
    local out=$OUTFILE_DIR/items.csv
    rm -f "$out"
    run_measured "INTO OUTFILE" "$1" "${MY_ADMIN[@]}" -e "$Q_PG INTO OUTFILE '$out' FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\n'"
    mv -f "$out" "$1"
}
if want csv-mariadb && [[ $MARIADB_OK == 1 ]]; then
    MY_ADMIN=(mariadb --no-defaults -S "$MARIADB_SOCKET" -u root "$MARIADB_DATABASE")
    OUTFILE_DIR=$(mktemp -d /tmp/ferry-bench-outfile.XXXXXX)
    chmod 1777 "$OUTFILE_DIR"
    if "${MY_ADMIN[@]}" -N -e "SELECT 1" >/dev/null 2>&1; then
        log "csv-mariadb-outfile: $ROWS rows, SELECT ... INTO OUTFILE vs ferry, warm-up + $REPS"
        REF_OUT=$REF/mariadb-outfile.csv
        FERRY_FILE=""
        bench_case csv-mariadb-outfile "INTO OUTFILE" "$REPS" ref_mariadb_outfile csv-mariadb
        record "csv-mariadb, INTO OUTFILE" "$ROWS" "SELECT ... INTO OUTFILE (server-side file)" \
            "$REF_SAMPLES" "$REF_RSS_MAX" "$FERRY_SAMPLES" "$FERRY_RSS_MAX" ratio "$CSV_GOAL" \
            "$(lines "$REF_OUT")" $(($(lines "$FERRY_FILE") - 1)) "$FERRY_ROWS" "$(bytes "$REF_OUT")" \
            "$(bytes "$FERRY_FILE")" "the server writes to its own disk (RSS: the client only)"
        rm -f "$REF_OUT" "$FERRY_FILE"
    else
        record "csv-mariadb, INTO OUTFILE" "$ROWS" "SELECT ... INTO OUTFILE (server-side file)" - - - - ratio "$CSV_GOAL" - - - - - \
            "SKIPPED: no root login on the server's socket (run as root)"
    fi
    rm -rf "$OUTFILE_DIR"
    if [[ ${KEEP:-0} != 1 ]]; then
        "${MY[@]}" -e "DROP TABLE IF EXISTS $PG_TABLE" >/dev/null 2>&1 || true
    fi
fi

# ------------------------------------------------------------------ 3. SQLite -> XLSX
ref_xlsx() {
    run_measured "xlsx_reference.py" "$LOGS/xlsx-ref.txt" python3 "$ROOT/bench/xlsx_reference.py" \
        --db "$DB" --query "$Q_ITEMS" --out "$1"
}
if want xlsx; then
    log "xlsx: $ROWS rows, Python XlsxWriter (constant_memory) vs ferry, warm-up + $REPS"
    REF_OUT=$REF/ref.xlsx
    FERRY_FILE=""
    bench_case xlsx "XlsxWriter" "$REPS" ref_xlsx xlsx
    record xlsx "$ROWS" "Python XlsxWriter $(python3 -c 'import xlsxwriter; print(xlsxwriter.__version__)') constant_memory" \
        "$REF_SAMPLES" "$REF_RSS_MAX" "$FERRY_SAMPLES" "$FERRY_RSS_MAX" ratio "$XLSX_GOAL" \
        "$(python3 "$ROOT/bench/export_tools.py" xlsx-rows "$REF_OUT")" \
        "$(python3 "$ROOT/bench/export_tools.py" xlsx-rows "$FERRY_FILE")" \
        "$FERRY_ROWS" "$(bytes "$REF_OUT")" "$(bytes "$FERRY_FILE")" "typed cells on both sides"
    rm -f "$REF_OUT" "$FERRY_FILE"
fi

# ------------------------------------------------------------------ 4. SQLite -> PDF
if want pdf; then
    OLD_LABEL="(none: no reference tool)"
    if [[ -n ${PDF_OLD_BIN:-} ]]; then
        # The other build gets a copy and a state of its own (same resources, same slots' files).
        OLD_BIN=$WORK/ferry-old
        cp "$PDF_OLD_BIN" "$OLD_BIN"
        F_OLD=(--state "$WORK/state-old/state.db" --secrets-dir "$SECRETS")
        "$OLD_BIN" "${F_OLD[@]}" apply --auto-approve -f "$RES" >"$LOGS/apply-old.txt" 2>&1 \
            || { cat "$LOGS/apply-old.txt" >&2; die "PDF_OLD_BIN: ferry apply failed"; }
        OLD_LABEL="ferry before ($(basename "$PDF_OLD_BIN"))"
    fi
    pdf_pages() { command -v pdfinfo >/dev/null && pdfinfo "$1" 2>/dev/null | awk '/^Pages:/ {print $2}' || echo -; }
    # ref_old_pdf OUTFILE: one run-now of the other build (OUTFILE unused: its file is OLD_FILE).
    ref_old_pdf() {
        [[ -n ${OLD_FILE:-} ]] && rm -f "$OLD_FILE"
        next_slot
        run_measured "ferry (PDF_OLD_BIN) run-now rs/$PDF_SCHEDULE" "$LOGS/run-now-old.txt" \
            "$OLD_BIN" "${F_OLD[@]}" run-now "rs/$PDF_SCHEDULE" --slot "$SLOT"
        local line
        line=$(head -1 "$LOGS/run-now-old.txt")
        [[ $line == *": succeeded, "* ]] || die "PDF_OLD_BIN run-now rs/$PDF_SCHEDULE: $line"
        OLD_ROWS=$(sed -E 's/.*succeeded, ([0-9]+) rows.*/\1/' <<<"$line")
        OLD_FILE=$DELIVERED/$(sed -E 's/.* file (.*)$/\1/' <<<"$line")
    }
    for n in $PDF_SIZES; do
        for PDF_SCHEDULE in $( ((HAVE_FONT)) && echo "pdf-$n") "pdf-latin-$n"; do
            font_note="IPAGothic embedded"; [[ $PDF_SCHEDULE == pdf-latin-* ]] && font_note="built-in Helvetica"
            log "pdf: $n rows, $font_note, ${PDF_OLD_BIN:+the build before vs }ferry, warm-up + $REPS"
            FERRY_FILE=""; OLD_FILE=""; OLD_ROWS=-; REF_OUT=$REF/unused.pdf
            bench_case pdf "before" "$REPS" "$( [[ -n ${PDF_OLD_BIN:-} ]] && echo ref_old_pdf)" "$PDF_SCHEDULE"
            note="$(pdf_pages "$FERRY_FILE") pages, A4 landscape, $font_note"
            old_bytes=-
            if [[ -n $OLD_FILE ]]; then
                note+="; before: $(pdf_pages "$OLD_FILE") pages"
                old_bytes=$(bytes "$OLD_FILE")
            fi
            record "pdf ($( [[ $PDF_SCHEDULE == pdf-latin-* ]] && echo Helvetica || echo IPAGothic))" "$n" "$OLD_LABEL" \
                "${REF_SAMPLES:--}" "$( [[ -n $OLD_FILE ]] && echo "$REF_RSS_MAX" || echo -)" "$FERRY_SAMPLES" \
                "$FERRY_RSS_MAX" none - "$OLD_ROWS" "$FERRY_ROWS" "$FERRY_ROWS" "$old_bytes" "$(bytes "$FERRY_FILE")" "$note"
            rm -f "$FERRY_FILE" ${OLD_FILE:+"$OLD_FILE"}
        done
    done
fi

# ------------------------------------------------------------------ 5. peak RSS, 10M rows
ref_sqlite_big() { run_measured "sqlite3 -csv (10M)" "$1" sqlite3 -csv -header "$BIG_DB" "$Q_EVENTS"; }
if want rss-10m; then
    log "rss-10m: $BIG_ROWS rows, sqlite3 -csv vs ferry, warm-up + $BIG_REPS"
    REF_OUT=$REF/big.csv
    FERRY_FILE=""
    bench_case rss-10m "sqlite3" "$BIG_REPS" ref_sqlite_big rss-10m
    record rss-10m "$BIG_ROWS" "sqlite3 -csv -header" "$REF_SAMPLES" "$REF_RSS_MAX" "$FERRY_SAMPLES" \
        "$FERRY_RSS_MAX" rss "$RSS_GOAL" $(($(lines "$REF_OUT") - 1)) $(($(lines "$FERRY_FILE") - 1)) \
        "$FERRY_ROWS" "$(bytes "$REF_OUT")" "$(bytes "$FERRY_FILE")" "5 columns; RSS = max over timed runs"
    rm -f "$REF_OUT" "$FERRY_FILE"
fi

# ------------------------------------------------------------------ report
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "Ferry export benchmark: ROWS=$ROWS PDF_ROWS=$PDF_ROWS BIG_ROWS=$BIG_ROWS REPS=$REPS BIG_REPS=$BIG_REPS"
dirty=""; [[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && dirty=" (working tree: uncommitted changes in src/)"
echo "  binary: $("$BIN" --version) ($BIN_SRC, built $(date -u -r "$BIN_SRC" +%Y-%m-%dT%H:%M:%SZ)); repository at git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$dirty"
echo "  host: $(nproc) CPU(s), $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //' || uname -m); load average $LOAD_BEFORE before, $LOAD_AFTER after"
echo "  tools: $(sqlite3 --version | cut -d' ' -f1-2), $(psql --version 2>/dev/null | head -1 || echo 'no psql'), Python $(python3 -c 'import platform; print(platform.python_version())')"
echo "  data: items.db $( [[ -f $DB ]] && du -h "$DB" | cut -f1 || echo -), events.db $( [[ -f $BIG_DB ]] && du -h "$BIG_DB" | cut -f1 || echo -)"
echo "  elapsed: ${SECONDS} s for the whole benchmark (data generation included)"
echo "  times: wall clock of the whole process (ferry: run-now, incl. state, fsync and delivery copy);"
echo "  median of the timed runs after one warm-up each; RSS: max over the timed runs (GNU time)"
echo
python3 "$ROOT/bench/export_tools.py" table "$RESULTS"
MISSED=$(cat "$RESULTS.missed")
echo
if [[ ${KEEP:-0} == 1 ]]; then echo "work directory kept: $WORK"; fi
if [[ $MISSED != 0 ]]; then
    echo "$MISSED case(s) miss their goal or row count."
    [[ ${STRICT:-0} == 1 ]] && exit 1
fi
exit 0
