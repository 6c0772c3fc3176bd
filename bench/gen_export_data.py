#!/usr/bin/env python3
"""Deterministic SQLite data for bench/export.sh.

    python3 bench/gen_export_data.py --db PATH --rows N [--shape wide|narrow]

`wide` (table `items`, the 10-column shape of the CSV, XLSX and PDF cases):

    id          INTEGER PRIMARY KEY    1..N
    customer    TEXT                   Latin, Japanese, with commas, with double quotes, accents
    quantity    INTEGER                1..500
    price       DECIMAL(12,2)          inserted as text with two decimals ('1234.50'); SQLite's
                                       NUMERIC affinity stores it as REAL (1234.5) or INTEGER (12)
    weight      REAL                   0.000..999.999
    ship_date   DATE                   'YYYY-MM-DD' text, 2024-01-01 + 0..729 days
    updated_at  TIMESTAMP              'YYYY-MM-DDTHH:MM:SS+09:00' text
    active      BOOLEAN                0 / 1
    note        TEXT, nullable         NULL on a third of the rows; Japanese or Latin with commas
    status      TEXT                   pending / paid / shipped / delivered / cancelled

`narrow` (table `events`, for the 10-million-row memory case):

    id INTEGER PRIMARY KEY, code TEXT, qty INTEGER, amount REAL, day DATE

No text holds a line break, so a CSV's line count is its record count. The rows are computed by
SQLite itself (a recursive CTE over integer hashes of the id), which is several times faster than
inserting from Python; the same N always gives the same file content.
"""

import argparse
import os
import sqlite3
import sys
import time

# Three independent-looking hashes of the id: quadratic residues modulo primes below 2**31
# (a linear hash would make neighbouring rows march in lockstep). Every intermediate stays far
# below 2**63, so SQLite never falls back to floating point.
H1 = "((((i * i) % 2147483647) * 48271 + i * 16807) % 2147483647)"
H2 = "((((i * i) % 2147483629) * 69621 + i * 40692) % 2147483629)"
H3 = "((((i * i) % 2147483587) * 39373 + i * 27931) % 2147483587)"

WIDE_DDL = """
CREATE TABLE items (
    id         INTEGER PRIMARY KEY,
    customer   TEXT NOT NULL,
    quantity   INTEGER NOT NULL,
    price      DECIMAL(12,2) NOT NULL,
    weight     REAL NOT NULL,
    ship_date  DATE NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    active     BOOLEAN NOT NULL,
    note       TEXT,
    status     TEXT NOT NULL
)
"""

WIDE_INSERT = f"""
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :rows)
INSERT INTO items
SELECT i,
       CASE {H1} % 6
           WHEN 0 THEN 'Acme Trading ' || i
           WHEN 1 THEN '株式会社サンプル商事 東京支店 ' || (i % 997)
           WHEN 2 THEN 'Smith, Jones & Co. #' || i
           WHEN 3 THEN 'The "Blue" Shop ' || (i % 501)
           WHEN 4 THEN '山田 太郎様（大阪）'
           ELSE 'Café Crème, Lyon ' || (i % 89)
       END,
       {H2} % 500 + 1,
       printf('%.2f', ({H3} % 1000000) / 100.0),
       ({H1} % 1000000) / 1000.0,
       date('2024-01-01', '+' || ({H2} % 730) || ' days'),
       strftime('%Y-%m-%dT%H:%M:%S+09:00', 1704067200 + {H3} % 63072000, 'unixepoch'),
       {H1} % 3 > 0,
       CASE {H2} % 6
           WHEN 0 THEN NULL
           WHEN 1 THEN NULL
           WHEN 2 THEN 'ギフト包装あり、のし紙「御礼」'
           WHEN 3 THEN 'leave at the door, ring twice'
           WHEN 4 THEN 'fragile'
           ELSE '至急'
       END,
       CASE {H3} % 5
           WHEN 0 THEN 'pending'
           WHEN 1 THEN 'paid'
           WHEN 2 THEN 'shipped'
           WHEN 3 THEN 'delivered'
           ELSE 'cancelled'
       END
FROM seq
"""

NARROW_DDL = """
CREATE TABLE events (
    id     INTEGER PRIMARY KEY,
    code   TEXT NOT NULL,
    qty    INTEGER NOT NULL,
    amount REAL NOT NULL,
    day    DATE NOT NULL
)
"""

NARROW_INSERT = f"""
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :rows)
INSERT INTO events
SELECT i,
       'EV-' || ({H1} % 100000),
       {H2} % 1000,
       ({H3} % 10000000) / 100.0,
       date('2024-01-01', '+' || ({H1} % 730) || ' days')
FROM seq
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True, help="SQLite file to create (replaced if present)")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--shape", choices=("wide", "narrow"), default="wide")
    args = ap.parse_args()

    if os.path.exists(args.db):
        os.remove(args.db)
    t0 = time.monotonic()
    con = sqlite3.connect(args.db, isolation_level=None)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-262144")  # 256 MiB
    ddl, insert = (WIDE_DDL, WIDE_INSERT) if args.shape == "wide" else (NARROW_DDL, NARROW_INSERT)
    con.execute("BEGIN")
    con.execute(ddl)
    con.execute(insert, {"rows": args.rows})
    con.execute("COMMIT")
    table = "items" if args.shape == "wide" else "events"
    (n,) = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    con.close()
    if n != args.rows:
        print(f"error: {table} has {n} rows, expected {args.rows}", file=sys.stderr)
        return 1
    size = os.path.getsize(args.db)
    print(f"{args.db}: {n} rows in {table}, {size / 2**20:.0f} MiB, "
          f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
