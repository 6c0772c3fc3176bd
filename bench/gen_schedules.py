#!/usr/bin/env python3
"""Generate many cheap ReportSchedules for the scheduler benchmarks (bench/scheduler.sh,
bench/sftp_due.sh).

Every schedule exports a tiny SQLite table (3 rows) as CSV, so the cost measured is the
scheduler's and the delivery's, not the export's. Schedules go 1,000 to a multi-document file
(`schedules/batch-NNN.yaml`); the one DeliveryTarget they share is in `targets.yaml`.

Modes:
  idle  never due for hours: `monthly` on days other than today and tomorrow (UTC), at times
        spread over the day; for measuring an idle daemon without FERRY_NOW
  due   all due at one slot: `daily` at --at (UTC); apply before the slot, run after it
  sftp  like `due`, delivered to one `sftp` target (--sftp-* options)

    python3 bench/gen_schedules.py --mode idle --count 10000 --out DIR --db DB --local-dir OUT
    python3 bench/gen_schedules.py --mode due --count 10000 --out DIR --db DB --local-dir OUT
    python3 bench/gen_schedules.py --mode sftp --count 1000 --out DIR --db DB \
        --sftp-port 40022 --sftp-user root --sftp-host-key "ssh-ed25519 AAAA..." \
        --sftp-dir /tmp/x/upload --max-connections 4

Also creates the SQLite database (--db) when missing. Deterministic; standard library only.
"""

import argparse
import datetime
import json
import os
import shutil
import sqlite3
import sys

API = "ferry.dev/v1alpha1"
PER_FILE = 1000


def q(s):
    return json.dumps(s)


def make_db(path):
    if os.path.exists(path):
        return
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);"
        "INSERT INTO items VALUES (1, 'alpha', 3), (2, 'beta', 5), (3, 'gamma', 7);"
    )
    con.commit()
    con.close()


def target(args):
    if args.mode == "sftp":
        return (
            f"apiVersion: {API}\nkind: DeliveryTarget\nmetadata:\n  name: bench-out\n"
            "spec:\n  sftp:\n    host: 127.0.0.1\n"
            f"    port: {args.sftp_port}\n    username: {args.sftp_user}\n"
            f"    directory: {q(args.sftp_dir)}\n"
            "    privateKeySecretRef: {name: bench-sftp-key, key: id_ed25519}\n"
            f"    hostKeys: [{q(args.sftp_host_key)}]\n"
            + (f"    maxConnections: {args.max_connections}\n" if args.max_connections else "")
        )
    return (
        f"apiVersion: {API}\nkind: DeliveryTarget\nmetadata:\n  name: bench-out\n"
        f"spec:\n  localDir:\n    path: {q(args.local_dir)}\n"
    )


def schedule_block(args, i):
    if args.mode == "idle":
        today = datetime.datetime.now(datetime.timezone.utc).date()
        avoid = {today.day, (today + datetime.timedelta(days=1)).day}
        days = [d for d in range(2, 28) if d not in avoid]  # 2..27: exists in every month
        day = days[i % len(days)]
        at = f"{(i * 7) % 24:02d}:{(i * 13) % 60:02d}"
        return f"    monthly:\n      day: {day}\n      at: \"{at}\"\n"
    return f"    daily:\n      at: \"{args.at}\"\n"


def report_schedule(args, i):
    name = f"s{i:06d}"
    return (
        f"apiVersion: {API}\nkind: ReportSchedule\nmetadata:\n  name: {name}\n"
        "spec:\n  schedule:\n" + schedule_block(args, i) + "  timeZone: UTC\n"
        "  source:\n    sql:\n"
        f"      url: {q('sqlite://' + os.path.abspath(args.db))}\n"
        "      query: SELECT id, name, qty FROM items ORDER BY id\n"
        "  format:\n    csv: {}\n"
        "  fileName: \"{schedule}_{yyyyMMddHHmmss}.csv\"\n"
        "  deliverTo:\n    - target: bench-out\n"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["idle", "due", "sftp"], required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", required=True, help="resource directory (replaced)")
    ap.add_argument("--db", required=True, help="SQLite source (created when missing)")
    ap.add_argument("--local-dir", help="localDir target path (idle, due)")
    ap.add_argument("--at", default="09:00", help="daily slot, UTC (due, sftp)")
    ap.add_argument("--sftp-port", type=int)
    ap.add_argument("--sftp-user")
    ap.add_argument("--sftp-host-key")
    ap.add_argument("--sftp-dir")
    ap.add_argument("--max-connections", type=int, help="sftp maxConnections (omit: the default)")
    args = ap.parse_args()
    if args.mode == "sftp":
        missing = [o for o in ("sftp_port", "sftp_user", "sftp_host_key", "sftp_dir") if getattr(args, o) is None]
        if missing:
            ap.error("sftp mode needs " + ", ".join("--" + m.replace("_", "-") for m in missing))
    elif not args.local_dir:
        ap.error("--local-dir is required")
    make_db(args.db)
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(os.path.join(args.out, "schedules"))
    with open(os.path.join(args.out, "targets.yaml"), "w") as f:
        f.write(target(args))
    size = 0
    for k, start in enumerate(range(0, args.count, PER_FILE)):
        docs = [report_schedule(args, i) for i in range(start, min(start + PER_FILE, args.count))]
        path = os.path.join(args.out, "schedules", f"batch-{k:03d}.yaml")
        with open(path, "w") as f:
            f.write(f"# Generated by bench/gen_schedules.py ({args.mode}): {len(docs)} schedules\n")
            f.write("---\n".join(docs))
        size += os.path.getsize(path)
    print(f"generated {args.count} {args.mode} schedules in {-(-args.count // PER_FILE)} files, "
          f"{size / 1048576:.1f} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
