#!/usr/bin/env bash
# Stops the control plane hack/kube-up.sh started in DIR (SIGTERM, then SIGKILL after 10 s);
# leaves its data in DIR. Nothing of it is left running.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
root="$(cd "$(dirname "$0")/.." && pwd)"
target="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
if [ ! -x "$target/debug/aipam-kube" ]; then
  cargo build --quiet --locked -p aipam-e2e --bin aipam-kube --manifest-path "$root/Cargo.toml"
fi
"$target/debug/aipam-kube" down "$1"
