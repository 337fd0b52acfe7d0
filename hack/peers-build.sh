#!/usr/bin/env bash
# Builds the peer IPAMs the benchmarks compare us with from the pinned modules of e2e/peers
# into a cache outside the clone, keyed by version:
#   ${AIPAM_CACHE:-~/.cache/aipam}/whereabouts-<version>/
#     whereabouts        the CNI IPAM plugin
#     ip-control-loop    its reconciler (the DaemonSet's long-running process)
#     crds/              its CRDs and install manifest, as the module ships them
# Prints that directory on stdout (progress on stderr). Reuses it when complete. host-local, the
# other peer, comes from Debian's containernetworking-plugins (hack/prereqs.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/e2e/peers"
command -v go >/dev/null 2>&1 || { echo "peers-build: Go is required (go 1.26)" >&2; exit 1; }
cd "$mod"
wa=github.com/k8snetworkplumbingwg/whereabouts
version="$(go list -m -f '{{.Version}}' "$wa")"
[ -n "$version" ] || { echo "peers-build: cannot read the Whereabouts version from $mod/go.mod" >&2; exit 1; }
out="${AIPAM_CACHE:-$HOME/.cache/aipam}/whereabouts-$version"
complete() { [ -x "$out/whereabouts" ] && [ -x "$out/ip-control-loop" ] && [ -f "$out/crds/daemonset-install.yaml" ]; }
if complete; then echo "$out"; exit 0; fi

mkdir -p "$out/crds"
echo "peers-build: building Whereabouts $version into $out (first time only; about 2 minutes on 2 cores)" >&2
start=$SECONDS
# The module's own files (go mod download verifies them against go.sum).
src="$(go mod download -json "$wa@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$src/doc/crds" ] || { echo "peers-build: no doc/crds in $src" >&2; exit 1; }
cp "$src"/doc/crds/whereabouts.cni.cncf.io_*.yaml "$src/doc/crds/daemonset-install.yaml" "$out/crds/"
source "$root/hack/lib/gobuild.sh"
go_build_cmd peers-build whereabouts "$wa/cmd" "$out"
go_build_cmd peers-build ip-control-loop "$wa/cmd/controlloop" "$out"
echo "peers-build: done in $((SECONDS - start)) s" >&2
echo "$out"
