#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests, and the CRD drift check.
# Installs what the tests need on a fresh machine (idempotent; skipped when present).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (Rust toolchain)" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The end-to-end scenarios run the webhook, operator and CNI binaries as processes.
echo "== cargo build --bins"
cargo build --workspace --bins --locked

echo "== cargo test"
cargo test --workspace --locked
