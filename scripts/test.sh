#!/usr/bin/env bash
# Every check and test Ferry has, as CI runs them. Installs what the tests need (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# What the tests need, installed only when missing (CI runs as root on a fresh machine).
step "test dependencies"
# rustfmt and clippy: a minimal Rust toolchain has neither.
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
need_apt=()
[ -x "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | head -n1)" ] || need_apt+=(postgresql)
[ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server mariadb-client)  # the MySQL/MariaDB source tests
command -v pdftotext >/dev/null || need_apt+=(poppler-utils)
[ -f /usr/share/fonts/opentype/ipafont-gothic/ipag.ttf ] || need_apt+=(fonts-ipafont-gothic)
ls /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc >/dev/null 2>&1 || need_apt+=(fonts-noto-cjk)
ls /usr/share/fonts/opentype/freefont/FreeSerif.otf >/dev/null 2>&1 || need_apt+=(fonts-freefont-otf)
command -v npm >/dev/null || need_apt+=(npm)                          # helm/kubectl for the chart check (tests/it/chart.rs)
python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)  # its kubernetes-validate virtualenv
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
command -v sshpass >/dev/null || need_apt+=(sshpass)                  # password logins in the hosted SFTP tests
command -v openssl >/dev/null || need_apt+=(openssl)                  # the GCS simulator's service-account keys and JWT checks
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  # Never let a package's postinst start a system service (sshd, postgresql, mariadb) on this machine;
  # the blocker is removed afterwards unless it was there before (the machine's own).
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    made_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT # also when apt-get fails
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  if [ -n "$made_policy" ]; then
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
fi
# Python packages of the tests, in a virtualenv of their own under target/ (a system python3
# refuses `pip install`, PEP 668): openpyxl reads XLSX reports back, aiosmtpd is the SMTP test
# server, paramiko and asyncssh are SFTP clients of the hosted SFTP tests, azure-storage-blob is
# Microsoft's client, reading back what the Azure objectStore tests wrote. Tests run Python
# through FERRY_TEST_PYTHON (and fall back to python3 when it is not set).
TEST_VENV=target/test-venv
TEST_PY_PACKAGES=(openpyxl aiosmtpd paramiko asyncssh azure-storage-blob)
if ! "$TEST_VENV/bin/python" -c 'import openpyxl, aiosmtpd, paramiko, asyncssh, azure.storage.blob' 2>/dev/null; then
  echo "installing ${TEST_PY_PACKAGES[*]} (PyPI) into $TEST_VENV"
  rm -rf "$TEST_VENV"
  python3 -m venv "$TEST_VENV"
  "$TEST_VENV/bin/pip" install --quiet --disable-pip-version-check "${TEST_PY_PACKAGES[@]}"
fi
FERRY_TEST_PYTHON="$(pwd)/$TEST_VENV/bin/python"
export FERRY_TEST_PYTHON
echo "test Python: $FERRY_TEST_PYTHON ($("$FERRY_TEST_PYTHON" --version))"
# Azurite, Microsoft's Blob Storage emulator (npm; it checks Shared Key signatures), for the Azure
# objectStore tests, which start it on a free port of their own.
AZURITE_VERSION=3.37.0
if [ "$(cat target/azurite/version 2>/dev/null)" != "$AZURITE_VERSION" ]; then
  echo "installing azurite $AZURITE_VERSION (npm) into target/azurite"
  rm -rf target/azurite
  npm install --silent --no-audit --no-fund --prefix target/azurite "azurite@$AZURITE_VERSION" >/dev/null
  echo "$AZURITE_VERSION" > target/azurite/version
fi
# Real servers on 127.0.0.1, each installed (apt/pip) and configured by its own script.
for server in postgres mariadb vsftpd sshd smtp; do
  bash "scripts/test-servers/$server.sh" start
done

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --all-targets --locked -- -D warnings

step "no import cycle between modules"
# tests/it/architecture.rs: every file of src/ is a module; a cycle fails with each edge and the
# line that makes it (docs/architecture.md says how the tree is layered).
cargo test --locked --test it architecture::

step "shell scripts"
shellcheck scripts/chart-check.sh scripts/e2e-kind.sh

step "tests"
cargo test --locked

step "tests again, on the PostgreSQL state backend"
# The suites that run ferry end to end, each sandbox with its own schema in the test database
# (the ones that read the SQLite file itself stay on SQLite).
FERRY_TEST_STATE=postgres cargo test --locked --test it -- runs:: psa_sync:: deliver_crash:: deliver_exactly_once:: \
  deliver_e2e:: validation:: secrets_in_logs::

step "every example validates"
for dir in examples/*/; do
  target/debug/ferry validate -f "$dir"
done
target/debug/ferry validate -f examples
