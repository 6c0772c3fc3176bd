#!/usr/bin/env bash
# Every check and test Ferry has, as CI runs them. Installs what the tests need (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --all-targets --locked -- -D warnings

step "tests"
cargo test --locked

step "every example validates"
for dir in examples/*/; do
  target/debug/ferry validate -f "$dir"
done
target/debug/ferry validate -f examples
