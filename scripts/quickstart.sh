#!/usr/bin/env bash
# Ferry's quick start on embedded defaults: no cluster, no server, no secret.
# Builds ferry, creates the demo SQLite database from examples/quickstart/shop.sql, then
# validates, plans and applies the quickstart resources and previews their next runs.
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
"$ferry" get reportschedules
echo
echo "Next runs of order-items-daily (slot time in Asia/Tokyo, and the file each produces):"
"$ferry" next reportschedule/order-items-daily -f examples/quickstart --count 3
