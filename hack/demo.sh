#!/usr/bin/env bash
# The local demo: builds the control plane (once, cached) and the binaries, then runs the real
# control plane, simulated nodes, the webhook and the operator as processes, applies
# config/samples, lets the real controllers and scheduler make and place the sample workloads'
# Pods, the nodes run the CNI chain with our IPAM binary, and prints what each Pod got as kubectl
# shows it. E2E_API=stand-in runs it on the API stand-in instead.
# Leaves nothing running. Set E2E_LOG=debug for the processes' logs on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${E2E_API:-}" != "stand-in" ]; then
  source hack/prereqs.sh
  bash hack/kube-build.sh >/dev/null
fi
cargo build -q --workspace --bins
exec "${CARGO_TARGET_DIR:-target}/debug/aipam-demo" "$@"
