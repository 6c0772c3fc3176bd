#!/usr/bin/env bash
# Every check and test Ferry has, as CI runs them. Installs what the tests need (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# What the tests need, installed only when missing (CI runs as root on a fresh machine).
step "test dependencies"
need_apt=()
[ -x "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | head -n1)" ] || need_apt+=(postgresql)
command -v pdftotext >/dev/null || need_apt+=(poppler-utils)
[ -f /usr/share/fonts/opentype/ipafont-gothic/ipag.ttf ] || need_apt+=(fonts-ipafont-gothic)
ls /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc >/dev/null 2>&1 || need_apt+=(fonts-noto-cjk)
ls /usr/share/fonts/opentype/freefont/FreeSerif.otf >/dev/null 2>&1 || need_apt+=(fonts-freefont-otf)
command -v npm >/dev/null || need_apt+=(npm)                          # helm/kubectl for the chart check (tests/chart.rs)
python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)  # its kubernetes-validate virtualenv
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
command -v sshpass >/dev/null || need_apt+=(sshpass)                  # password logins in the hosted SFTP tests
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  # Never let a package's postinst start a system service (sshd, postgresql) on this machine.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 -c 'import openpyxl' 2>/dev/null || python3 -m pip install -q openpyxl
# Real servers on 127.0.0.1, each installed (apt/pip) and configured by its own script.
for server in postgres vsftpd sshd smtp; do
  bash "scripts/test-servers/$server.sh" start
done

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --all-targets --locked -- -D warnings

step "shell scripts"
shellcheck scripts/chart-check.sh scripts/e2e-kind.sh

step "tests"
cargo test --locked

step "tests again, on the PostgreSQL state backend"
# The suites that run ferry end to end, each sandbox with its own schema in the test database
# (the ones that read the SQLite file itself stay on SQLite).
FERRY_TEST_STATE=postgres cargo test --locked --test run --test psa_sync --test deliver_crash \
  --test deliver_e2e --test validation --test secrets_in_logs

step "every example validates"
for dir in examples/*/; do
  target/debug/ferry validate -f "$dir"
done
target/debug/ferry validate -f examples
