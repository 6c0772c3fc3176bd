#!/usr/bin/env python3
"""Hostile and ordinary SFTP clients for Ferry's hosted SFTP tests (tests/it/hosted_sftp_abuse.rs).

Each subcommand drives `ferry run --sftp-listen` the way a real client library (paramiko) or a
raw socket would, and prints one JSON object on stdout for the Rust test to assert on:

  tamper   a readWrite user tries to change a delivered report in place (write, truncate,
           chmod, setstat size), then does what it may (upload, rewrite its own file, rename
           and remove its copy)
  flood    logged-in channels issue READs and never read the answers
  burst    N concurrent password guesses for one user
  login    one password login (to check a lock-out refuses even the right password)
  idle     idle TCP connections from one or several source addresses, reconnecting when
           closed, for a while
  hold     keeps N logged-in sessions of a user open until stdin closes

Needs paramiko (installed by scripts/test.sh into its test virtualenv).
"""

import argparse
import json
import os
import selectors
import socket
import struct
import sys
import threading
import time

import paramiko

SSH_FXP_INIT = 1
SSH_FXP_OPEN = 3
SSH_FXP_READ = 5
SSH_FXF_READ = 0x01


def connect(host, port, user, key=None, password=None, source=None, timeout=20):
    """A logged-in paramiko Transport (host key not pinned: the tests pin it with OpenSSH)."""
    sock = socket.create_connection((host, port), timeout=timeout,
                                    source_address=(source, 0) if source else None)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    transport.auth_timeout = timeout
    transport.start_client(timeout=timeout)
    if key:
        transport.auth_publickey(user, paramiko.Ed25519Key.from_private_key_file(key))
    else:
        transport.auth_password(user, password)
    return transport


def error_text(e):
    return f"{type(e).__name__}: {e}"


def cmd_tamper(a):
    out = {}
    t = connect(a.host, a.port, a.user, key=a.key)
    sftp = paramiko.SFTPClient.from_transport(t)
    path = a.path

    def attempt(name, fn):
        try:
            fn()
            out[name] = "allowed"
        except Exception as e:  # what the server answered
            out[name] = "refused: " + error_text(e)

    def write_in_place():
        with sftp.open(path, "r+") as f:
            f.seek(0)
            f.write(b"TAMPERED BY " + a.user.encode())
            f.flush()

    def truncate_by_open():
        with sftp.open(path, "w") as f:
            f.write(b"TAMPERED")

    def append():
        with sftp.open(path, "a") as f:
            f.write(b"TAMPERED")

    attempt("write_in_place", write_in_place)
    attempt("open_truncate", truncate_by_open)
    attempt("append", append)
    attempt("setstat_size", lambda: sftp.truncate(path, 0))
    attempt("chmod", lambda: sftp.chmod(path, 0o644))
    attempt("utime", lambda: sftp.utime(path, (0, 0)))

    # What a readWrite user may do: its own files are its own.
    directory = os.path.dirname(path)
    mine = directory + "/mine.txt"
    attempt("upload_own", lambda: sftp.putfo(__import__("io").BytesIO(b"draft one\n"), mine))

    def rewrite_own():
        with sftp.open(mine, "r+") as f:
            f.seek(0)
            f.write(b"DRAFT")
        with sftp.open(mine, "r") as f:
            if f.read() != b"DRAFT one\n":
                raise RuntimeError("own file not rewritten")

    attempt("rewrite_own", rewrite_own)
    attempt("chmod_own", lambda: sftp.chmod(mine, 0o600))
    attempt("rename_copy", lambda: sftp.posix_rename(path, path + ".kept"))
    attempt("remove_copy", lambda: sftp.remove(path + ".kept"))
    sftp.close()
    t.close()
    print(json.dumps(out))


def sftp_frame(kind, body):
    return struct.pack(">IB", 1 + len(body), kind) + body


def sftp_string(b):
    return struct.pack(">I", len(b)) + b


def read_frame(chan):
    head = b""
    while len(head) < 4:
        chunk = chan.recv(4 - len(head))
        if not chunk:
            raise EOFError("channel closed")
        head += chunk
    (length,) = struct.unpack(">I", head)
    body = b""
    while len(body) < length:
        chunk = chan.recv(length - len(body))
        if not chunk:
            raise EOFError("channel closed")
        body += chunk
    return body


def cmd_flood(a):
    """Per channel: INIT, OPEN, then READ requests in batches, never reading an answer."""
    t = connect(a.host, a.port, a.user, key=a.key)
    channels = []
    for _ in range(a.channels):
        chan = t.open_session()
        chan.invoke_subsystem("sftp")
        chan.sendall(sftp_frame(SSH_FXP_INIT, struct.pack(">I", 3)))
        read_frame(chan)  # VERSION
        chan.sendall(sftp_frame(SSH_FXP_OPEN, struct.pack(">I", 1) + sftp_string(a.path.encode())
                                + struct.pack(">II", SSH_FXF_READ, 0)))
        answer = read_frame(chan)
        if answer[0] != 102:  # SSH_FXP_HANDLE
            print(json.dumps({"error": f"open failed: {answer!r}"}))
            return
        (hlen,) = struct.unpack(">I", answer[5:9])
        channels.append((chan, answer[9:9 + hlen]))
    sent = 0
    request_id = 10
    deadline = time.time() + a.seconds
    disconnected = False
    while time.time() < deadline:
        if not t.is_active():
            disconnected = True
            break
        try:
            for chan, handle in channels:
                batch = bytearray()
                for _ in range(256):
                    request_id += 1
                    offset = (request_id * 262144) % max(a.size, 262144)
                    batch += sftp_frame(SSH_FXP_READ, struct.pack(">I", request_id)
                                        + sftp_string(handle) + struct.pack(">QI", offset, 261120))
                chan.sendall(bytes(batch))
                sent += 256
        except Exception:
            disconnected = True
            break
        time.sleep(0.001)
    # The transport notices a disconnection on its own thread; give it a moment.
    for _ in range(100):
        if not t.is_active():
            disconnected = True
            break
        time.sleep(0.05)
    t.close()
    print(json.dumps({"sent": sent, "disconnected": disconnected}))


def cmd_burst(a):
    guesses = [f"wrong-guess-{i}" for i in range(a.count)]
    results = [None] * a.count
    barrier = threading.Barrier(a.count)

    sources = a.sources.split(",") if a.sources else [None]

    def guess(i):
        source = sources[i % len(sources)]
        try:
            sock = socket.create_connection((a.host, a.port), timeout=60,
                                            source_address=(source, 0) if source else None)
            t = paramiko.Transport(sock)
            t.banner_timeout = 60
            t.auth_timeout = 60
            t.start_client(timeout=60)
            barrier.wait(timeout=60)
            try:
                t.auth_password(a.user, guesses[i])
                results[i] = "accepted"
            except paramiko.AuthenticationException:
                results[i] = "rejected"
            t.close()
        except Exception as e:
            results[i] = "error: " + error_text(e)
            barrier.abort()

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(a.count)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(json.dumps({"results": results}))


def cmd_login(a):
    try:
        t = connect(a.host, a.port, a.user, password=a.password, source=a.source)
        sftp = paramiko.SFTPClient.from_transport(t)
        sftp.listdir("/")
        t.close()
        print(json.dumps({"result": "accepted"}))
    except paramiko.AuthenticationException as e:
        print(json.dumps({"result": "rejected", "error": error_text(e)}))
    except Exception as e:
        print(json.dumps({"result": "error", "error": error_text(e)}))


def cmd_idle(a):
    """Keeps `count` idle connections open, spread over `sources`, reconnecting each one as soon
    as the server closes it, for `seconds`. Counts what the server did with them."""
    sources = a.sources.split(",")
    sel = selectors.DefaultSelector()
    stats = {"opened": 0, "refused": 0, "banner_then_closed": 0, "closed_after_grace": 0,
             "connect_errors": 0, "max_open": 0, "lifetimes": []}
    opened_at = {}
    got_banner = {}

    def open_one(slot):
        source = sources[slot % len(sources)]
        s = socket.socket()
        s.setblocking(False)
        try:
            s.bind((source, 0))
            s.connect_ex((a.host, a.port))
        except OSError:
            stats["connect_errors"] += 1
            s.close()
            return False
        sel.register(s, selectors.EVENT_READ, slot)
        opened_at[s] = time.time()
        got_banner[s] = False
        stats["opened"] += 1
        return True

    deadline = time.time() + a.seconds
    for slot in range(a.count):
        open_one(slot)
    pending_reopen = []
    while time.time() < deadline:
        stats["max_open"] = max(stats["max_open"], len(opened_at))
        for key, _ in sel.select(timeout=0.05):
            s, slot = key.fileobj, key.data
            try:
                data = s.recv(4096)
            except (ConnectionResetError, ConnectionRefusedError, OSError):
                data = b""
            if data:
                got_banner[s] = True  # the server's SSH version line: we never answer it
                continue
            life = time.time() - opened_at.pop(s)
            if not got_banner.pop(s):
                stats["refused"] += 1
            elif life >= a.grace * 0.8:
                stats["closed_after_grace"] += 1
                stats["lifetimes"].append(round(life, 2))
            else:
                stats["banner_then_closed"] += 1
            sel.unregister(s)
            s.close()
            pending_reopen.append((time.time() + a.reconnect_delay, slot))
        now = time.time()
        due = [p for p in pending_reopen if p[0] <= now]
        pending_reopen = [p for p in pending_reopen if p[0] > now]
        for _, slot in due:
            open_one(slot)
    for s in list(opened_at):
        sel.unregister(s)
        s.close()
    stats["lifetimes"] = stats["lifetimes"][:20]
    print(json.dumps(stats))


def cmd_hold(a):
    """Opens `count` sessions of `user` (key), prints how many succeeded, then holds them until
    stdin closes."""
    held, errors = [], []
    for _ in range(a.count):
        try:
            t = connect(a.host, a.port, a.user, key=a.key)
            sftp = paramiko.SFTPClient.from_transport(t)
            sftp.listdir("/")
            held.append((t, sftp))
        except Exception as e:
            errors.append(error_text(e))
    print(json.dumps({"held": len(held), "errors": errors}), flush=True)
    sys.stdin.read()
    for t, _ in held:
        t.close()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("tamper")
    s.add_argument("--user", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--path", required=True)
    s = sub.add_parser("flood")
    s.add_argument("--user", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--path", required=True)
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--channels", type=int, default=4)
    s.add_argument("--seconds", type=float, default=30)
    s = sub.add_parser("burst")
    s.add_argument("--user", required=True)
    s.add_argument("--count", type=int, default=30)
    s.add_argument("--sources", help="comma-separated source addresses, used in turn")
    s = sub.add_parser("login")
    s.add_argument("--user", required=True)
    s.add_argument("--password", required=True)
    s.add_argument("--source")
    s = sub.add_parser("idle")
    s.add_argument("--sources", default="127.0.0.2")
    s.add_argument("--count", type=int, default=32)
    s.add_argument("--seconds", type=float, default=20)
    s.add_argument("--grace", type=float, default=5)
    s.add_argument("--reconnect-delay", type=float, default=0.05)
    s = sub.add_parser("hold")
    s.add_argument("--user", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--count", type=int, default=1)
    a = p.parse_args()
    paramiko.util.get_logger("paramiko").setLevel(50)
    {"tamper": cmd_tamper, "flood": cmd_flood, "burst": cmd_burst, "login": cmd_login,
     "idle": cmd_idle, "hold": cmd_hold}[a.cmd](a)


if __name__ == "__main__":
    main()
