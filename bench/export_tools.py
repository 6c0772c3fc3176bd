#!/usr/bin/env python3
"""Helpers of bench/export.sh (standard library only).

    python3 bench/export_tools.py xlsx-rows FILE.xlsx     data rows (rows less one header per sheet)
    python3 bench/export_tools.py table RESULTS.tsv       the final tables; writes the number of
                                                          missed goals to RESULTS.tsv.missed

RESULTS.tsv has one line per case, tab-separated, with these fields (see `FIELDS`); samples are
wall-clock nanoseconds separated by spaces, RSS in KiB, `-` where there is nothing.
"""

import re
import statistics
import sys
import zipfile

FIELDS = (
    "case", "rows", "ref_tool", "ref_ns", "ref_rss_kib", "ferry_ns", "ferry_rss_kib",
    "goal_kind", "goal", "ref_rows", "ferry_rows", "ferry_reported_rows", "ref_bytes",
    "ferry_bytes", "note",
)


def xlsx_rows(path: str) -> int:
    """Counts `<row ` elements in every worksheet without holding a sheet in memory."""
    total = sheets = 0
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if not re.fullmatch(r"xl/worksheets/sheet\d+\.xml", name):
                continue
            sheets += 1
            tail = b""
            with z.open(name) as f:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    buf = tail + chunk
                    total += buf.count(b"<row ")
                    # Keep a few bytes so a tag split across chunks is counted once (the kept
                    # bytes cannot hold a whole `<row `, which is 5 bytes).
                    tail = buf[-4:]
    return total - sheets  # one header row per sheet


def median_s(samples: str):
    if samples in ("", "-"):
        return None
    return statistics.median(int(x) / 1e9 for x in samples.split())


def mib(kib: str):
    return None if kib in ("", "-") else int(kib) / 1024


def fmt(x, digits=2, unit=""):
    return "-" if x is None else f"{x:.{digits}f}{unit}"


def human(n: str) -> str:
    if n in ("", "-"):
        return "-"
    v = float(n)
    for u in ("B", "KiB", "MiB", "GiB"):
        if v < 1024 or u == "GiB":
            return f"{v:.0f} {u}" if u == "B" else f"{v:.1f} {u}"
        v /= 1024
    return n


def render(hdr, rows, left=(0,)):
    """A Markdown table; columns whose index is in `left` are left-aligned, the rest right."""
    w = [max(len(r[i]) for r in [hdr] + rows) for i in range(len(hdr))]

    def line(r):
        return "| " + " | ".join(c.ljust(w[i]) if i in left else c.rjust(w[i])
                                 for i, c in enumerate(r)) + " |"
    out = [line(hdr), "|" + "|".join("-" * (x + 2) for x in w) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def table(path: str) -> int:
    recs = []
    for line in open(path, encoding="utf-8"):
        if line.strip():
            parts = line.rstrip("\n").split("\t")
            parts += ["-"] * (len(FIELDS) - len(parts))
            recs.append(dict(zip(FIELDS, parts)))

    main, outputs, missed = [], [], 0
    for r in recs:
        ref, ferry = median_s(r["ref_ns"]), median_s(r["ferry_ns"])
        ratio = ref / ferry if ref is not None and ferry else None
        ref_rss, ferry_rss = mib(r["ref_rss_kib"]), mib(r["ferry_rss_kib"])
        kind, goal = r["goal_kind"], r["goal"]
        if kind == "ratio":
            goal_text = f"ratio >= {float(goal):g}"
            ok = ratio is not None and ratio >= float(goal)
        elif kind == "rss":
            goal_text = f"Ferry RSS < {float(goal):g} MiB"
            ok = ferry_rss is not None and ferry_rss < float(goal)
        else:
            goal_text, ok = "-", None
        # Both outputs must hold the expected rows (ferry's own count too).
        counts = [r[k] for k in ("ref_rows", "ferry_rows", "ferry_reported_rows")
                  if r[k] not in ("", "-")]
        rows_ok = all(c == r["rows"] for c in counts) and r["ferry_rows"] not in ("", "-")
        if not rows_ok:
            ok = False
        met = "-" if ok is None else ("yes" if ok else "NO")
        if r["ferry_ns"] in ("", "-"):
            met, ok = "skipped", False
        if ok is False:
            missed += 1
        n_ref = len(r["ref_ns"].split()) if r["ref_ns"] not in ("", "-") else 0
        n_ferry = len(r["ferry_ns"].split()) if r["ferry_ns"] not in ("", "-") else 0
        main.append((
            r["case"], f"{int(r['rows']):,}", r["ref_tool"],
            fmt(ref, 2, " s") + (f" (x{n_ref})" if n_ref else ""),
            fmt(ferry, 2, " s") + (f" (x{n_ferry})" if n_ferry else ""),
            fmt(ratio, 2), fmt(ref_rss, 0), fmt(ferry_rss, 0), goal_text, met,
        ))
        outputs.append((
            r["case"], human(r["ref_bytes"]), human(r["ferry_bytes"]), r["ref_rows"],
            r["ferry_rows"], r["ferry_reported_rows"], "yes" if rows_ok else "NO", r["note"],
        ))

    print(render(("case", "rows", "reference tool", "reference median", "ferry median",
                  "ratio ref/ferry", "ref RSS MiB", "ferry RSS MiB", "goal", "met?"), main,
                 left=(0, 2, 8, 9)))
    print()
    print(render(("case", "reference file", "ferry file", "reference rows", "ferry rows",
                  "ferry reported", "rows match", "note"), outputs, left=(0, 7)))
    open(path + ".missed", "w").write(str(missed))
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "xlsx-rows":
        print(xlsx_rows(sys.argv[2]))
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "table":
        return table(sys.argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
