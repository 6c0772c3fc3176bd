#!/usr/bin/env bash
# Ferry's quick start on embedded defaults: no cluster, no server, no secret.
# Builds ferry, creates the demo SQLite database from examples/quickstart/shop.sql, validates
# and applies the quickstart resources (the plan is printed once, by the apply), runs both
# reports for the demo data's slot (2025-06-16 00:30 Asia/Tokyo), leaves the files in
# out/quickstart/ and ends with a short summary: where the binary and the files are, how to
# open them, what to run next.
#
# FERRY_BIN=path/to/ferry uses that binary instead of building a release one (the tests run
# this script with the binary they built).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${FERRY_BIN:-}" ]; then
  ferry=$FERRY_BIN
else
  echo "building ferry (cargo build --release; the first build takes a few minutes)"
  cargo build --release --quiet
  ferry=target/release/ferry
fi
export FERRY_STATE="${FERRY_STATE:-.ferry/quickstart/state.db}"

# The demo database (Python's sqlite3 module: present wherever python3 is).
python3 - <<'PY'
import os, sqlite3
db = "examples/quickstart/shop.db"
if os.path.exists(db):
    os.remove(db)
con = sqlite3.connect(db)
con.executescript(open("examples/quickstart/shop.sql", encoding="utf-8").read())
con.commit()
print(f"built {db}")
PY

"$ferry" validate -f examples/quickstart
"$ferry" apply -f examples/quickstart --auto-approve

# The demo data is fixed around one slot: run both schedules for it.
slot=2025-06-16T00:30:00+09:00
"$ferry" run-now reportschedule/order-items-daily --slot "$slot"
"$ferry" run-now reportschedule/sales-weekly-xlsx --slot "$slot"

csv=out/quickstart/order_items_20250616003000.csv
xlsx=out/quickstart/sales-weekly-xlsx_20250616.xlsx
cat <<EOF

Done. In short:
  ferry    $ferry  (to type \`ferry\` instead: cargo install --path . --locked)
  reports  $csv  (CSV, UTF-8)
           $xlsx  (XLSX)
  open     column -s, -t < $csv    or any spreadsheet application (LibreOffice, Excel)
  state    $FERRY_STATE  (the applied resources and the run history)
Next:
  $ferry --state $FERRY_STATE history reportschedule/order-items-daily
  $ferry --state $FERRY_STATE run -f examples/quickstart    (keeps exporting on schedule)
EOF
