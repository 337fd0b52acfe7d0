#!/usr/bin/env bash
# The local demo: builds the binaries, then runs the API stand-in, the webhook and the operator as
# processes, applies config/samples, admits and schedules the sample workloads, reads their
# addresses back with the real CNI binary and prints them as kubectl shows them.
# Leaves nothing running. Set E2E_LOG=debug for the processes' logs on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --workspace --bins
exec ./target/debug/aipam-demo "$@"
