#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests (the end-to-end ones on the real
# control plane), and the CRD drift check.
# Installs what the tests need on a fresh machine (idempotent; skipped when present).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A test run builds once; incremental caches only grow the target (26 GB of 60 on a warm one).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (Rust toolchain)" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy >/dev/null 2>&1 || true

# The end-to-end tests run on a real control plane built from Go modules; see prereqs.sh.
source hack/prereqs.sh

echo "== Go: gofmt, go.sum verified"
unformatted="$(gofmt -l e2e/controlplane e2e/peers)"
[ -z "$unformatted" ] || { echo "gofmt: $unformatted" >&2; exit 1; }
(cd e2e/controlplane && go mod verify)
(cd e2e/peers && go mod verify)

echo "== the control plane (cached by version; the first build takes about 9 minutes)"
bash hack/kube-build.sh
echo "== the peer IPAMs the benches compare with (Whereabouts; cached by version, about 2 minutes the first time)"
bash hack/peers-build.sh

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The end-to-end scenarios run the webhook, operator and CNI binaries as processes.
echo "== cargo build --bins"
cargo build --workspace --bins --locked

echo "== cargo test"
cargo test --workspace --locked
