#!/usr/bin/env python3
"""The reference XLSX export of bench/export.sh: Python's sqlite3 module reads the rows, XlsxWriter
(constant_memory mode) writes them as typed cells.

    python3 bench/xlsx_reference.py --db PATH --query SQL --out FILE.xlsx

Typing follows the column's declared type, as Ferry does: DATE text becomes a date cell
(yyyy-mm-dd), TIMESTAMP text with an offset a date-time cell (yyyy-mm-dd hh:mm:ss, the wall
clock of its offset), BOOLEAN 0/1 a boolean; integers and reals (DECIMAL included) are numbers;
text is text; NULL is an empty cell. Like Ferry's file: a bold, frozen header row and an
autofilter over header and data. Prints the number of data rows.
"""

import argparse
import datetime
import os
import sqlite3
import sys

import xlsxwriter


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sheet", default="Report")
    args = ap.parse_args()

    # Converters by declared type (the first word of it, as sqlite3 looks them up).
    sqlite3.register_converter("DATE", lambda b: datetime.date.fromisoformat(b.decode()))
    sqlite3.register_converter(
        "TIMESTAMP", lambda b: datetime.datetime.fromisoformat(b.decode()))
    sqlite3.register_converter("BOOLEAN", lambda b: b != b"0")
    con = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True,
                          detect_types=sqlite3.PARSE_DECLTYPES)
    cur = con.execute(args.query)
    names = [d[0] for d in cur.description]

    out_dir = os.path.dirname(os.path.abspath(args.out))
    wb = xlsxwriter.Workbook(args.out, {
        "constant_memory": True,
        "remove_timezone": True,   # keep the offset's wall clock (Excel has no time zones)
        "tmpdir": out_dir,
    })
    ws = wb.add_worksheet(args.sheet)
    bold = wb.add_format({"bold": True})
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    dt_fmt = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    ws.write_row(0, 0, names, bold)
    ws.freeze_panes(1, 0)
    ws.set_column(0, len(names) - 1, 14)

    write_number = ws.write_number
    write_string = ws.write_string
    write_boolean = ws.write_boolean
    write_datetime = ws.write_datetime
    DateTime, Date = datetime.datetime, datetime.date
    r = 0
    for row in cur:
        r += 1
        for c, v in enumerate(row):
            t = type(v)
            if v is None:
                continue
            if t is int or t is float:
                write_number(r, c, v)
            elif t is str:
                write_string(r, c, v)
            elif t is bool:
                write_boolean(r, c, v)
            elif t is DateTime:
                write_datetime(r, c, v, dt_fmt)
            elif t is Date:
                write_datetime(r, c, v, date_fmt)
            else:  # bytes
                write_string(r, c, v.hex())
    ws.autofilter(0, 0, r, len(names) - 1)
    wb.close()
    con.close()
    print(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
