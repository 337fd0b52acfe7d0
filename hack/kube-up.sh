#!/usr/bin/env bash
# Starts the real control plane with its files under DIR and exits once it is ready:
#   bash hack/kube-up.sh DIR        then  kubectl --kubeconfig DIR/kubeconfig get --raw /readyz
# Builds the control plane first if its cache is empty (hack/kube-build.sh), and aipam-kube.
# etcd, kube-apiserver, kube-controller-manager and kube-scheduler listen on 127.0.0.1 only;
# their logs are DIR/<name>.log. Stop them with hack/kube-down.sh DIR.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
dir="$(cd "$1" && pwd)"
bash "$root/hack/kube-build.sh" >/dev/null
cargo build --quiet --locked -p aipam-e2e --bin aipam-kube --manifest-path "$root/Cargo.toml"
target="$(cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
"$target/debug/aipam-kube" up "$dir"
echo "export KUBECONFIG=$dir/kubeconfig"
