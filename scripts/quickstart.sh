#!/usr/bin/env bash
# Ferry's quick start on embedded defaults: no cluster, no server, no secret.
# Builds ferry, creates the demo SQLite database from examples/quickstart/shop.sql, validates,
# plans and applies the quickstart resources, runs both reports for the demo data's slot
# (2025-06-16 00:30 Asia/Tokyo) and leaves the files in out/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
ferry=target/release/ferry
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
"$ferry" plan -f examples/quickstart
"$ferry" apply -f examples/quickstart --auto-approve

# The demo data is fixed around one slot: run both schedules for it.
slot=2025-06-16T00:30:00+09:00
"$ferry" run-now reportschedule/order-items-daily --slot "$slot"
"$ferry" run-now reportschedule/sales-weekly-xlsx --slot "$slot"
"$ferry" history reportschedule/order-items-daily

echo
echo "Report files:"
ls -l out/quickstart/
echo
echo "Next runs of order-items-daily (slot time in Asia/Tokyo, and the file each produces):"
"$ferry" next reportschedule/order-items-daily -f examples/quickstart --count 3
echo
echo "To keep running on schedule: $ferry --state $FERRY_STATE run -f examples/quickstart"
