#!/usr/bin/env python3
"""Generate a large, realistic Ferry resource tree for benchmarks.

Default: 10,000 resources = 1,000 DeliveryTargets + 7,000 ReportSchedules + 2,000
CustomerMappings, spread over 10 namespaces and ~100 YAML files (mostly multi-document, a few
single-document), in nested directories. Every resource is valid (`ferry validate` passes).

Optionally (--secrets-dir) it also writes every referenced secret in the file-mode layout
`<dir>/<namespace>/<name>/<key>`, so that plans do not carry thousands of "secret not found"
warnings (the usual situation on an operator's machine or in CD).

Deterministic: the same --seed and --scale give byte-identical output.
Standard library only (no PyYAML needed).

    python3 bench/gen_resources.py --out /tmp/ferry-10k/resources --secrets-dir /tmp/ferry-10k/secrets
    python3 bench/gen_resources.py --out /tmp/ferry-2k --scale 0.2     # 2,000 resources
"""

import argparse
import base64
import json
import os
import random
import shutil
import struct
import sys

API = "ferry.dev/v1alpha1"

TIME_ZONES = [
    "UTC", "Asia/Tokyo", "Europe/Paris", "Europe/Rome", "Europe/London", "Europe/Berlin",
    "America/New_York", "America/Los_Angeles", "America/Sao_Paulo", "Australia/Sydney",
    "Asia/Kolkata", "Asia/Singapore", "Pacific/Auckland", "Africa/Johannesburg",
    "America/Chicago", "Asia/Kathmandu",
]
CRONS = [
    "30 5 * * 1-5", "0 */6 * * *", "15 2 * * *", "0 8 1 * *", "45 23 * * 0",
    "0 0 1 1,4,7,10 *", "*/30 9-17 * * 1-5", "0 12 15 * *", "5 4 * * sun", "0 22 28 * *",
    "@daily", "@hourly", "10 1 * * 6,0", "0 6 1-7 * 1",
]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WINDOWS = ["all", "previousDay", "previousWeek", "previousMonth", "sinceLastSuccess"]
DURATIONS = ["30s", "1m", "2m", "5m", "90s", "1h", "1h30m"]
DEADLINES = ["30m", "2h", "6h", "12h", "24h", "1d"]
TABLES = {
    "orders": ["id", "number", "customer_id", "status", "ordered_at", "total", "currency",
               "payment_method", "shipped_at", "updated_at"],
    "order_items": ["id", "order_id", "product_name", "sku", "quantity", "unit_price",
                    "discount", "tax", "updated_at"],
    "customers": ["id", "number", "last_name", "first_name", "email", "tel", "zipcode",
                  "prefecture", "newsletter_opt_in", "created_at", "updated_at"],
    "actions": ["id", "occurred_at", "campaign_id", "order_reference", "sale_amount", "payout",
                "currency", "status", "updated_at"],
    "payouts": ["id", "paid_at", "amount", "currency", "method", "reference"],
    "tickets": ["id", "opened_at", "closed_at", "priority", "board", "summary", "owner"],
}
HEADERS_JA = {
    "id": "ID", "number": "番号", "customer_id": "顧客ID", "status": "ステータス",
    "ordered_at": "受注日時", "total": "合計", "quantity": "数量", "unit_price": "単価",
    "updated_at": "更新日時", "created_at": "登録日時", "email": "メールアドレス",
}
HEADERS_FR = {
    "amount": "Montant", "currency": "Devise", "paid_at": "Date de paiement",
    "payout": "Commission", "campaign_id": "Campagne", "status": "Statut",
    "occurred_at": "Date", "reference": "Référence",
}
PRODUCTS = [
    "endpoint-protection", "intercept-x-advanced", "intercept-x-server", "central-email",
    "apex-one-saas", "cloud-app-security", "mdr-essentials", "backup-365", "firewall-xgs",
    "mobile-security", "ztna", "email-security-advanced",
]


def q(s):
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(s, ensure_ascii=False)


def ssh_key(rng, kind="ssh-ed25519"):
    """A syntactically valid OpenSSH public key line (type repeated inside the blob)."""
    name = kind.encode()
    if kind == "ssh-ed25519":
        body = struct.pack(">I", 32) + rng.randbytes(32)
    else:  # ssh-rsa: e, n
        # A canonical mpint: the 0x00 pad only when the next byte has its high bit set.
        modulus = bytes([rng.randrange(128, 256)]) + rng.randbytes(255)
        body = struct.pack(">I", 3) + b"\x01\x00\x01" + struct.pack(">I", 257) + b"\x00" + modulus
    blob = struct.pack(">I", len(name)) + name + body
    return f"{kind} {base64.b64encode(blob).decode()}"


class Gen:
    def __init__(self, seed, scale, namespaces):
        self.rng = random.Random(seed)
        self.scale = scale
        self.namespaces = namespaces
        self.secrets = set()  # (namespace, name, key)

    def sref(self, ns, name, key, indent):
        self.secrets.add((ns, name, key))
        pad = " " * indent
        return f"\n{pad}name: {name}\n{pad}key: {key}"

    # ---------------------------------------------------------------- DeliveryTargets
    def delivery_target(self, ns, name, kind, i):
        r = self.rng
        head = f"apiVersion: {API}\nkind: DeliveryTarget\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
        if r.random() < 0.3:
            head += f"  labels:\n    team: {r.choice(['finance', 'ops', 'sales', 'bi'])}\n    tier: \"{r.randint(1, 3)}\"\n"
        if kind == "localDir":
            spec = f"spec:\n  localDir:\n    path: out/{ns}/{name}\n"
        elif kind == "sftp":
            keys = [ssh_key(r)] + ([ssh_key(r, "ssh-rsa")] if r.random() < 0.3 else [])
            spec = (
                f"spec:\n  sftp:\n    host: sftp{i}.{ns}.example\n    port: {r.choice([22, 22, 22, 2222])}\n"
                f"    directory: /upload/{name}\n    username: user{i}\n"
                f"    privateKeySecretRef:{self.sref(ns, name + '-key', 'id_rsa', 6)}\n"
                "    hostKeys:\n" + "".join(f"      - {q(k)}\n" for k in keys)
            )
        elif kind == "ftp":
            tls = r.choice(["none", "explicit", "explicit", "implicit"])
            port = {"none": 21, "explicit": 21, "implicit": 990}[tls]
            spec = (
                f"spec:\n  ftp:\n    host: ftp{i}.{ns}.example\n    port: {port}\n    tls: {tls}\n"
                f"    directory: /incoming/{name}/\n    username: ftp{i}\n"
                f"    passwordSecretRef:{self.sref(ns, name, 'password', 6)}\n"
            )
            if tls != "none" and r.random() < 0.3:
                spec += f"    caSecretRef:{self.sref(ns, name, 'ca.pem', 6)}\n"
        elif kind == "email":
            to = sorted({f"{r.choice(['finance', 'ops', 'ceo', 'bi', 'audit', 'team'])}{j}@partner{i}.example"
                         for j in range(r.randint(1, 4))})
            spec = (
                "spec:\n  email:\n    smtp:\n      host: smtp.mail.example\n      port: 587\n"
                "      tls: starttls\n      username: reports@ferry.example\n"
                f"      passwordSecretRef:{self.sref(ns, 'smtp', 'password', 8)}\n"
                f"    from: {q('Reports <reports@ferry.example>')}\n"
                "    to:\n" + "".join(f"      - {t}\n" for t in to) +
                f"    subject: {q('Report {schedule} for {yyyy}-{MM}-{dd}')}\n"
                "    body: |\n      Hello,\n\n      Your report {fileName} ({rows} rows) is ready:\n"
                "      {link}\n\n      The link expires on {expires}.\n"
                "    link:\n      s3:\n        endpoint: \"https://s3.eu-west-3.amazonaws.com\"\n"
                f"        region: eu-west-3\n        bucket: reports-{ns}\n        prefix: {name}/\n"
                f"        accessKeyIdSecretRef:{self.sref(ns, 'reports-s3', 'access-key-id', 10)}\n"
                f"        secretAccessKeySecretRef:{self.sref(ns, 'reports-s3', 'secret-access-key', 10)}\n"
                f"      expiresIn: {r.choice(['1d', '3d', '7d'])}\n    attach: false\n"
            )
        elif kind == "hostedSftp":
            spec = (
                f"spec:\n  hostedSftp:\n    connectionName: {name}\n"
                f"    displayName: {q('Hosted drop ' + name)}\n    user: {ns[:8]}{i}\n"
                + (f"    publicKeys:\n      - {q(ssh_key(r) + ' analyst@example.com')}\n" if i % 2 else "")
                + f"    directory: reports/{name}/\n    access: {r.choice(['read', 'readWrite'])}\n"
            )
        elif kind == "connectwise":
            spec = (
                f"spec:\n  connectwise:\n    site: api-{r.choice(['na', 'eu', 'au'])}.myconnectwise.net\n"
                f"    companyId: msp{i}\n    clientId: \"3f6a2c1e-8b4d-4f7a-9c2e-{i:012d}\"\n"
                f"    publicKeySecretRef:{self.sref(ns, name + '-api', 'public-key', 6)}\n"
                f"    privateKeySecretRef:{self.sref(ns, name + '-api', 'private-key', 6)}\n"
                "    defaults:\n      usageSync:\n        enabled: true\n        schedule:\n          every: 24h\n"
                "        timeZone: Europe/Paris\n        source:\n          sql:\n"
                f"            connectionSecretRef:{self.sref(ns, 'usage-db', 'url', 14)}\n"
                "            query: |\n              SELECT customer_key AS customer, product_code AS product,\n"
                "                     SUM(seats) AS quantity\n              FROM license_usage\n"
                "              WHERE snapshot_date = (SELECT MAX(snapshot_date) FROM license_usage)\n"
                "              GROUP BY customer_key, product_code\n"
                f"      ticketSync:\n        enabled: true\n        board: {q('Alerts ' + str(i))}\n"
                "      billing:\n        enabled: true\n        schedule:\n          monthly:\n"
                "            day: 31\n            at: \"06:00\"\n        timeZone: Europe/Paris\n"
            )
        elif kind == "autotask":
            spec = (
                f"spec:\n  autotask:\n    username: ferry-api{i}@msp-{ns}.example\n"
                f"    secretSecretRef:{self.sref(ns, name + '-api', 'secret', 6)}\n"
                f"    integrationCodeSecretRef:{self.sref(ns, name + '-api', 'integration-code', 6)}\n"
            )
        else:
            raise ValueError(kind)
        return head + spec

    # ---------------------------------------------------------------- ReportSchedules
    def schedule_block(self, indent):
        r = self.rng
        pad = " " * indent
        kind = r.choices(["daily", "weekly", "monthly", "cron", "every"], [35, 20, 15, 20, 10])[0]
        at = f"{r.randint(0, 23):02d}:{r.choice([0, 5, 15, 30, 45]):02d}"
        if kind == "daily":
            return f"{pad}daily:\n{pad}  at: \"{at}\"\n"
        if kind == "weekly":
            days = sorted(r.sample(range(7), r.randint(1, 3)))
            return f"{pad}weekly:\n{pad}  on: [{', '.join(WEEKDAYS[d] for d in days)}]\n{pad}  at: \"{at}\"\n"
        if kind == "monthly":
            return f"{pad}monthly:\n{pad}  day: {r.choice([1, 5, 15, 28, 29, 30, 31])}\n{pad}  at: \"{at}\"\n"
        if kind == "cron":
            return f"{pad}cron: {q(r.choice(CRONS))}\n"
        return f"{pad}every: {r.choice(['15m', '1h', '6h', '12h', '24h', '1h30m'])}\n"

    def report_schedule(self, ns, name, i, targets, db_secret):
        r = self.rng
        table = r.choice(list(TABLES))
        cols_all = TABLES[table]
        fmt = r.choices(["csv", "xlsx", "pdf"], [60, 25, 15])[0]
        out = [f"apiVersion: {API}\nkind: ReportSchedule\nmetadata:\n  name: {name}\n  namespace: {ns}\n"]
        if r.random() < 0.5:
            out.append(f"  labels:\n    app.kubernetes.io/part-of: {table}-exports\n")
        if r.random() < 0.1:
            out.append(f"  annotations:\n    ferry.dev/owner: {q('team-' + str(i % 17) + '@example.com')}\n")
        out.append("spec:\n  schedule:\n" + self.schedule_block(4))
        out.append(f"  timeZone: {r.choice(TIME_ZONES)}\n")
        if r.random() < 0.05:
            out.append("  suspend: true\n")
        if r.random() < 0.6:
            out.append(f"  startingDeadline: {r.choice(DEADLINES)}\n")
        if r.random() < 0.5:
            out.append(f"  concurrencyPolicy: {r.choice(['Allow', 'Forbid', 'Replace'])}\n")
        out.append("  source:\n    sql:\n")
        if r.random() < 0.8:
            out.append(f"      connectionSecretRef:{self.sref(ns, db_secret, 'url', 8)}\n")
        else:
            out.append(f"      url: \"sqlite://data/{ns}/{table}.db\"\n")
        sel = cols_all[: r.randint(3, len(cols_all))]
        window = r.choice(WINDOWS)
        where = ("" if window == "all" else
                 "        WHERE t.updated_at >= CAST(:window_start AS timestamptz)\n"
                 "          AND t.updated_at <  CAST(:window_end AS timestamptz)\n")
        out.append(
            "      query: |\n        SELECT " + ",\n               ".join(f"t.{c}" for c in sel) + "\n"
            f"        FROM {table} AS t\n" + where + "        ORDER BY t.id\n"
            f"    window: {window}\n"
        )
        if r.random() < 0.6:
            headers = HEADERS_JA if r.random() < 0.5 else HEADERS_FR
            out.append("  columns:\n")
            for c in sel:
                h = headers.get(c)
                out.append(f"    - {{name: {c}, header: {q(h)}}}\n" if h else f"    - name: {c}\n")
        if fmt == "csv":
            delimiter = q(r.choice([",", ",", ";", "\t", "|"]))
            out.append(
                "  format:\n    csv:\n"
                f"      delimiter: {delimiter}\n"
                f"      header: {r.choice(['true', 'true', 'false'])}\n"
                f"      encoding: {r.choice(['utf-8', 'utf-8-bom', 'shift_jis'])}\n"
                f"      lineEnding: {r.choice(['crlf', 'lf'])}\n"
            )
            ext = "csv"
        elif fmt == "xlsx":
            out.append(f"  format:\n    xlsx:\n      sheetName: {q(table.title() + ' ' + str(i % 100))}\n")
            ext = "xlsx"
        else:
            out.append(
                f"  format:\n    pdf:\n      title: {q('Report ' + name)}\n"
                f"      orientation: {r.choice(['portrait', 'landscape'])}\n"
                f"      pageSize: {r.choice(['A4', 'Letter'])}\n"
            )
            ext = "pdf"
        fname = r.choice([
            f"{table}_{{yyyyMMddHHmmss}}.{ext}", f"{{schedule}}_{{yyyyMMdd}}.{ext}",
            f"{{namespace}}_{{schedule}}_{{yyyy}}-{{MM}}-{{dd}}.{ext}", f"{name}_{{HH}}{{mm}}.{ext}",
        ])
        out.append(f"  fileName: {q(fname)}\n  deliverTo:\n")
        for t in r.sample(targets, r.randint(1, 3)):
            out.append(f"    - target: {t}\n")
        if r.random() < 0.7:
            out.append(f"  retry:\n    attempts: {r.randint(1, 6)}\n    backoff: {r.choice(DURATIONS)}\n")
        if r.random() < 0.4:
            out.append(f"  historyLimit: {r.choice([10, 30, 50, 90, 365])}\n")
        return "".join(out)

    # ---------------------------------------------------------------- CustomerMappings
    def customer_mapping(self, ns, name, i, psa_name, psa_kind):
        r = self.rng
        out = [f"apiVersion: {API}\nkind: CustomerMapping\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
               f"spec:\n  customer: {name}\n  psa:\n    target: {psa_name}\n  company:\n"]
        if psa_kind == "connectwise":
            out.append(f"    identifier: {q('CUST' + str(i).zfill(5))}\n")
        else:
            out.append(f"    name: {q('Customer ' + str(i) + ' S.r.l.')}\n")
        out.append("  contracts:\n")
        for p in r.sample(PRODUCTS, r.randint(1, 4)):
            out.append(f"    - product: {p}\n      agreement: {q('Managed Services ' + str(i))}\n"
                       f"      item: {q(p.upper())}\n")
        general = psa_kind == "connectwise" and r.random() < 0.5
        if general:
            out.append("  settings: general\n")
        else:
            enabled = r.random() < 0.85
            out.append(f"  usageSync:\n    enabled: {'true' if enabled else 'false'}\n")
            if enabled:
                if r.random() < 0.5:
                    out.append("    schedule:\n" + self.schedule_block(6))
                out.append(f"    timeZone: {r.choice(TIME_ZONES)}\n    source:\n      sql:\n"
                           f"        connectionSecretRef:{self.sref(ns, 'usage-db', 'url', 10)}\n"
                           "        query: |\n          SELECT customer, product, SUM(seats) AS quantity\n"
                           "          FROM licence_usage\n"
                           f"          WHERE customer = '{name}'\n          GROUP BY customer, product\n")
            out.append(f"  ticketSync:\n    enabled: true\n    board: {q('Support L' + str(i % 3 + 1))}\n")
            if r.random() < 0.5:
                out.append("  billing:\n    enabled: true\n    schedule:\n" + self.schedule_block(6)
                           + f"    timeZone: {r.choice(TIME_ZONES)}\n")
            out.append("  settings: custom\n")
        if r.random() < 0.3:
            out.append(f"  deletionPolicy: {r.choice(['Orphan', 'Delete'])}\n")
        return "".join(out)

    # ---------------------------------------------------------------- layout
    def generate(self, out_dir):
        r = self.rng
        n_ns = len(self.namespaces)
        per_ns_targets = round(1000 * self.scale / n_ns)
        per_ns_schedules = round(7000 * self.scale / n_ns)
        per_ns_mappings = round(2000 * self.scale / n_ns)
        files = {}  # relative path -> list of documents
        counts = {"DeliveryTarget": 0, "ReportSchedule": 0, "CustomerMapping": 0}
        for ns in self.namespaces:
            # Targets: 4 PSA connections (2 ConnectWise, 2 Autotask), the rest delivery targets.
            n_psa = min(4, max(2, per_ns_targets // 10))
            psa = [(f"cw-{ns}-{k}", "connectwise") for k in range((n_psa + 1) // 2)] + \
                  [(f"at-{ns}-{k}", "autotask") for k in range(n_psa // 2)]
            n_delivery = per_ns_targets - n_psa
            weights = [("sftp", 30), ("ftp", 25), ("email", 16), ("hostedSftp", 4)]
            mix = [k for k, w in weights for _ in range(max(1, round(w * n_delivery / 100)))]
            mix = (mix + ["localDir"] * n_delivery)[:n_delivery]
            r.shuffle(mix)
            delivery = []
            docs_t = []
            for j, (name, kind) in enumerate(psa):
                docs_t.append(self.delivery_target(ns, name, kind, j))
            for j in range(n_delivery):
                kind = mix[j]
                name = f"{kind.lower()}-{ns}-{j:04d}"
                delivery.append(name)
                docs_t.append(self.delivery_target(ns, name, kind, j))
            counts["DeliveryTarget"] += len(docs_t)
            # Per namespace: the PSA connections, the delivery targets, 5 schedule batches and 2
            # mapping files (9 multi-document files); in the first namespace, 10 schedules also
            # sit in single-document files, as hand-written repositories often do.
            files[f"{ns}/targets/psa.yaml"] = docs_t[:len(psa)]
            files[f"{ns}/targets/delivery.yaml"] = docs_t[len(psa):]
            db_secrets = [f"{ns}-db-{k}" for k in range(3)]
            docs_s = [self.report_schedule(ns, f"report-{ns}-{j:05d}", j, delivery, r.choice(db_secrets))
                      for j in range(per_ns_schedules)]
            counts["ReportSchedule"] += len(docs_s)
            singles = 10 if ns == self.namespaces[0] else 0
            for k in range(min(singles, len(docs_s))):
                files[f"{ns}/schedules/single/report-{k:02d}.yaml"] = [docs_s[k]]
            batched = docs_s[singles:]
            for k in range(5):
                files[f"{ns}/schedules/batch-{k}.yaml"] = batched[k::5]
            # Mappings: 2 files.
            docs_m = []
            for j in range(per_ns_mappings):
                pname, pkind = psa[j % len(psa)]
                docs_m.append(self.customer_mapping(ns, f"customer-{ns}-{j:05d}", j, pname, pkind))
            counts["CustomerMapping"] += len(docs_m)
            files[f"{ns}/mappings/customers-a.yaml"] = docs_m[::2]
            files[f"{ns}/mappings/customers-b.yaml"] = docs_m[1::2]
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        for rel, docs in files.items():
            path = os.path.join(out_dir, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(f"# Generated by bench/gen_resources.py: {len(docs)} document(s)\n")
                f.write("---\n".join(docs))
        return files, counts

    def write_secrets(self, secrets_dir):
        if os.path.exists(secrets_dir):
            shutil.rmtree(secrets_dir)
        for ns, name, key in sorted(self.secrets):
            d = os.path.join(secrets_dir, ns, name)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, key), "w") as f:
                f.write(f"bench-secret-{ns}-{name}-{key}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (replaced)")
    ap.add_argument("--secrets-dir", help="also write every referenced secret here (replaced)")
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = 10,000 resources (default)")
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    namespaces = ["default"] + [f"tenant-{k:02d}" for k in range(1, args.namespaces)]
    g = Gen(args.seed, args.scale, namespaces)
    files, counts = g.generate(args.out)
    if args.secrets_dir:
        g.write_secrets(args.secrets_dir)
    total = sum(counts.values())
    multi = sum(1 for d in files.values() if len(d) > 1)
    size = sum(os.path.getsize(os.path.join(args.out, p)) for p in files)
    print(f"generated {total} resources ({counts['DeliveryTarget']} DeliveryTarget, "
          f"{counts['ReportSchedule']} ReportSchedule, {counts['CustomerMapping']} CustomerMapping) "
          f"in {len(files)} files ({multi} multi-document), {size / 1048576:.1f} MiB"
          + (f"; {len(g.secrets)} secrets" if args.secrets_dir else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
