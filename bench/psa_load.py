#!/usr/bin/env python3
"""PSA sync load: MAPPINGS CustomerMappings synced in one `ferry run --once` against Ferry's own
simulators (`ferry psa-sim connectwise|autotask`), under their limits: Autotask's 3 concurrent
requests per endpoint and 10,000 requests per rolling hour (the services are already on the
contracts, as for customers billed for them), and a ConnectWise rate limit (CW_RATE requests
per second, 429 + Retry-After above it). Every quantity is new: ConnectWise creates one
addition per product, Autotask posts one adjustment per service. Prints, per PSA: mappings synced,
HTTP requests the simulator answered (and how many were 429s), wall time, requests per mapping.

    bench/psa_load.py                  # 1,000 mappings per PSA
    MAPPINGS=100 bench/psa_load.py     # a quick run

Environment: MAPPINGS=1000, PRODUCTS=3, CW_RATE=100, FERRY_BIN (default target/release/ferry,
built when missing), KEEP=1 keeps the work dir.
"""

import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAPPINGS = int(os.environ.get("MAPPINGS", "1000"))
PRODUCTS = int(os.environ.get("PRODUCTS", "3"))
CW_RATE = int(os.environ.get("CW_RATE", "100"))
FERRY = os.environ.get("FERRY_BIN", os.path.join(ROOT, "target/release/ferry"))


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def usage_db(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE usage (customer TEXT, product TEXT, quantity REAL)")
    con.executemany(
        "INSERT INTO usage VALUES (?, ?, ?)",
        [
            (f"cust{i:04}", f"product-{p}", float((i * 7 + p * 3) % 50 + 1))
            for i in range(MAPPINGS)
            for p in range(PRODUCTS)
        ],
    )
    con.commit()
    con.close()


def cw_files(work, url, db):
    data = {
        "companyId": "loadmsp",
        "codebase": "v2025_1/",
        "clientId": "3f6a2c1e-8b4d-4f7a-9c2e-5d1b7a9e0c43",
        "publicKey": "pub",
        "privateKey": "priv",
        "rateLimit": {"requests": CW_RATE, "perSeconds": 1},
        "companies": [
            {"id": 1000 + i, "identifier": f"CUST{i:04}", "name": f"Customer {i}", "status": "Active"}
            for i in range(MAPPINGS)
        ],
        "agreements": [
            {"id": 5000 + i, "name": "Managed Services", "companyId": 1000 + i,
             "type": "Managed Services", "status": "Active"}
            for i in range(MAPPINGS)
        ],
        "products": [
            {"id": 100 + p, "identifier": f"SKU-{p}", "description": f"Product {p}", "price": 5}
            for p in range(PRODUCTS)
        ],
        "boards": [{"id": 1, "name": "Alerts"}],
    }
    docs = [
        f"""apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: cw}}
spec:
  connectwise:
    baseUrl: {url}
    companyId: loadmsp
    clientId: "3f6a2c1e-8b4d-4f7a-9c2e-5d1b7a9e0c43"
    publicKeySecretRef: {{name: cw, key: public}}
    privateKeySecretRef: {{name: cw, key: private}}
    defaults:
      usageSync:
        enabled: true
        source:
          sql:
            url: "sqlite:{db}"
            query: "SELECT customer, product, quantity FROM usage"
"""
    ]
    for i in range(MAPPINGS):
        contracts = "\n".join(
            f'    - {{product: product-{p}, agreement: "Managed Services", item: SKU-{p}}}'
            for p in range(PRODUCTS)
        )
        docs.append(
            f"""apiVersion: ferry.dev/v1alpha1
kind: CustomerMapping
metadata: {{name: cust{i:04}}}
spec:
  customer: cust{i:04}
  psa: {{target: cw}}
  company: {{identifier: CUST{i:04}}}
  contracts:
{contracts}
  settings: general
"""
        )
    secrets = {"cw/public": "pub", "cw/private": "priv"}
    return data, "---\n".join(docs), secrets


def at_files(work, url, db):
    data = {
        "username": "load@msp.example",
        "secret": "sec",
        "integrationCode": "CODE",
        "companies": [
            {"id": 1000 + i, "companyName": f"Customer {i}", "companyNumber": f"C{i}",
             "companyType": 1, "isActive": True}
            for i in range(MAPPINGS)
        ],
        "contracts": [
            {"id": 5000 + i, "companyID": 1000 + i, "contractName": "Managed Services",
             "contractNumber": f"K{i}", "contractType": 7, "status": 1,
             "startDate": "2026-01-01", "endDate": "2027-12-31"}
            for i in range(MAPPINGS)
        ],
        "services": [
            {"id": 100 + p, "name": f"Service {p}", "unitPrice": 5.0, "unitCost": 1.0, "periodType": "m"}
            for p in range(PRODUCTS)
        ],
        # The services are on the contracts already, as when a customer is billed for them.
        "contractServices": [
            {"id": 20000 + i * PRODUCTS + p, "contractID": 5000 + i, "serviceID": 100 + p, "unitPrice": 5.0}
            for i in range(MAPPINGS)
            for p in range(PRODUCTS)
        ],
        "queues": [{"id": 8, "name": "Alerts"}],
    }
    docs = [
        f"""apiVersion: ferry.dev/v1alpha1
kind: DeliveryTarget
metadata: {{name: at}}
spec:
  autotask:
    username: load@msp.example
    secretSecretRef: {{name: at, key: secret}}
    integrationCodeSecretRef: {{name: at, key: code}}
    zoneDiscoveryUrl: {url}/atservicesrest/v1.0/zoneInformation
    defaults:
      usageSync:
        enabled: true
        source:
          sql:
            url: "sqlite:{db}"
            query: "SELECT customer, product, quantity FROM usage"
"""
    ]
    for i in range(MAPPINGS):
        contracts = "\n".join(
            f'    - {{product: product-{p}, agreement: "Managed Services", item: "Service {p}"}}'
            for p in range(PRODUCTS)
        )
        docs.append(
            f"""apiVersion: ferry.dev/v1alpha1
kind: CustomerMapping
metadata: {{name: cust{i:04}}}
spec:
  customer: cust{i:04}
  psa: {{target: at}}
  company: {{name: "Customer {i}"}}
  contracts:
{contracts}
  settings: general
"""
        )
    secrets = {"at/secret": "sec", "at/code": "CODE"}
    return data, "---\n".join(docs), secrets


def run_one(kind, make):
    work = tempfile.mkdtemp(prefix=f"ferry-bench-psa-{kind}.")
    db = os.path.join(work, "usage.db")
    usage_db(db)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data, yaml, secrets = make(work, url, db)
    with open(os.path.join(work, "sim.json"), "w") as f:
        json.dump(data, f)
    os.makedirs(os.path.join(work, "files"))
    with open(os.path.join(work, "files", "mappings.yaml"), "w") as f:
        f.write(yaml)
    for name, value in secrets.items():
        path = os.path.join(work, "secrets", "default", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(value)
    sim = subprocess.Popen(
        [FERRY, "psa-sim", kind, "--listen", f"127.0.0.1:{port}", "--data", os.path.join(work, "sim.json")],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/_sim/requests").read()
                break
            except OSError:
                time.sleep(0.1)
        common = ["--state", os.path.join(work, "state.db"), "--secrets-dir", os.path.join(work, "secrets")]
        subprocess.run([FERRY, *common, "apply", "-f", os.path.join(work, "files"), "--auto-approve"],
                       check=True, stdout=subprocess.DEVNULL)
        started = time.monotonic()
        done = subprocess.run([FERRY, *common, "run", "--once", "-f", os.path.join(work, "files")],
                              capture_output=True, text=True, cwd=work)
        wall = time.monotonic() - started
        requests = json.loads(urllib.request.urlopen(f"{url}/_sim/requests").read())
        get = json.loads(subprocess.run(
            [FERRY, *common, "get", "customermappings", "--sync-status", "succeeded", "-o", "json"],
            check=True, capture_output=True, text=True).stdout)
        throttled = sum(1 for r in requests if r["status"] == 429)
        if done.returncode != 0:
            log(f"{kind}: ferry run --once exited {done.returncode}: {done.stderr[-2000:]}")
        return {
            "psa": kind,
            "mappings": MAPPINGS,
            "succeeded": len(get),
            "requests": len(requests),
            "throttled": throttled,
            "wall": wall,
        }
    finally:
        sim.terminate()
        sim.wait()
        if os.environ.get("KEEP") != "1":
            subprocess.run(["rm", "-rf", work])


def main():
    if not os.path.exists(FERRY):
        log("building target/release/ferry")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    results = [run_one("connectwise", cw_files), run_one("autotask", at_files)]
    print(f"{'PSA':<12} {'mappings':>8} {'synced':>7} {'requests':>9} {'429s':>6} {'wall s':>8} {'req/mapping':>12}")
    for r in results:
        print(
            f"{r['psa']:<12} {r['mappings']:>8} {r['succeeded']:>7} {r['requests']:>9} {r['throttled']:>6} "
            f"{r['wall']:>8.1f} {r['requests'] / max(r['mappings'], 1):>12.2f}"
        )
    if any(r["succeeded"] != r["mappings"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
