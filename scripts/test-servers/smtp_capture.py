#!/usr/bin/env python3
"""An SMTP capture server for Ferry's email delivery tests (aiosmtpd).

One process, two listeners on 127.0.0.1:
  --port       plain SMTP that offers STARTTLS; AUTH is offered only once the session is
               encrypted (as real submission servers do), so `tls: none` works without AUTH;
  --tls-port   implicit TLS (SMTPS) from the first byte, with AUTH.

AUTH PLAIN and LOGIN accept exactly --user / --password. Every accepted message is written to
--mail-dir as <n>.eml (the DATA bytes as received) and <n>.json (the envelope: mail_from,
rcpt_tos, auth_user, tls, tls_version, port, peer). The JSON file is written first and both
are renamed into place, so a reader that sees <n>.eml also sees <n>.json. Files are written
before the server answers DATA, so a client that got its 250 finds them.

A recipient whose local part starts with `reject` is refused with 550, so tests can check that
a rejected recipient is named in the error. Once both listeners accept connections the process
writes its PID to --pid-file (the starter's readiness signal) and runs until SIGTERM/SIGINT.
"""

import argparse
import itertools
import json
import os
import signal
import ssl
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls-port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--mail-dir", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--pid-file", required=True)
    return p.parse_args()


class Authenticator:
    """Accepts the one test user, over PLAIN or LOGIN."""

    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if (
            mechanism in ("PLAIN", "LOGIN")
            and isinstance(auth_data, LoginPassword)
            and auth_data.login == self.user
            and auth_data.password == self.password
        ):
            return AuthResult(success=True, auth_data=auth_data.login.decode())
        return AuthResult(success=False, handled=False)


class Capture:
    """Writes each message and its envelope to the mail directory."""

    def __init__(self, mail_dir):
        self.mail_dir = mail_dir
        self.lock = threading.Lock()
        existing = [
            int(name.split(".")[0])
            for name in os.listdir(mail_dir)
            if name.endswith(".eml") and name.split(".")[0].isdigit()
        ]
        self.counter = itertools.count(max(existing, default=0) + 1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].lower().startswith("reject"):
            return f"550 5.1.1 <{address}>: recipient rejected (test server)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            n = next(self.counter)
        transport = server.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport else None
        sockname = transport.get_extra_info("sockname") if transport else None
        auth = session.auth_data
        record = {
            "n": n,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_user": auth if isinstance(auth, str) else None,
            "tls": ssl_object is not None,
            "tls_version": ssl_object.version() if ssl_object is not None else None,
            "port": sockname[1] if sockname else None,
            "peer": list(session.peer) if session.peer else None,
            "mail_options": list(envelope.mail_options),
            "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        base = os.path.join(self.mail_dir, str(n))
        write_atomic(base + ".json", json.dumps(record, indent=2).encode() + b"\n")
        write_atomic(base + ".eml", envelope.original_content or envelope.content)
        return f"250 2.0.0 OK queued as {n}"


def write_atomic(path, data):
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main():
    args = parse_args()
    os.makedirs(args.mail_dir, exist_ok=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    handler = Capture(args.mail_dir)
    authenticator = Authenticator(args.user, args.password)
    common = dict(
        hostname=args.host,
        authenticator=authenticator,
        auth_required=False,
        data_size_limit=128 * 1024 * 1024,
        decode_data=False,
        ident="ferry-test-smtp",
    )
    # Plain + STARTTLS: AUTH only after STARTTLS (auth_require_tls defaults to True).
    plain = Controller(
        handler, port=args.port, tls_context=context, require_starttls=False, **common
    )
    # Implicit TLS: the session is encrypted from the start; with auth_require_tls left True
    # aiosmtpd would not offer AUTH here at all.
    implicit = Controller(
        handler, port=args.tls_port, ssl_context=context, auth_require_tls=False, **common
    )
    plain.start()
    try:
        implicit.start()
    except Exception:
        plain.stop()
        raise
    write_atomic(args.pid_file, f"{os.getpid()}\n".encode())
    print(
        f"smtp capture: plain+STARTTLS {args.host}:{args.port}, implicit TLS "
        f"{args.host}:{args.tls_port}, mail in {args.mail_dir}",
        flush=True,
    )

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    implicit.stop()
    plain.stop()
    try:
        os.remove(args.pid_file)
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    main()
