#!/usr/bin/env bash
# Builds the real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)
# from the pinned modules of e2e/controlplane into a cache outside the clone, keyed by version:
#   ${AIPAM_CACHE:-~/.cache/aipam}/kube-<k8s version>-etcd-<etcd version>/
# Prints that directory on stdout (progress goes to stderr). Reuses it when every binary is there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/e2e/controlplane"
command -v go >/dev/null 2>&1 || { echo "kube-build: Go is required (go 1.26)" >&2; exit 1; }

# The versions go.mod requires (go list reads go.mod and go.sum, no network).
k8s_version="$(cd "$mod" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
etcd_version="$(cd "$mod" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
[ -n "$k8s_version" ] && [ -n "$etcd_version" ] || { echo "kube-build: cannot read the versions from $mod/go.mod" >&2; exit 1; }
out="${AIPAM_CACHE:-$HOME/.cache/aipam}/kube-$k8s_version-etcd-$etcd_version"
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler)

complete() { for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if complete; then echo "$out"; exit 0; fi

mkdir -p "$out"
echo "kube-build: building Kubernetes $k8s_version and etcd $etcd_version into $out (first time only; about 9 minutes on 2 cores)" >&2
start=$SECONDS
cd "$mod"
# What `kubectl version` and the API server's /version report (hack/lib/version.sh stamps the
# same variables in Kubernetes' own build); without it they say v0.0.0-master.
minor="${k8s_version#v1.}"; minor="${minor%%.*}"
stamp=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp="$stamp -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
source "$root/hack/lib/gobuild.sh"
build() { go_build_cmd kube-build "$1" "$2" "$out" "$stamp"; }
[ -x "$out/etcd" ] || build etcd go.etcd.io/etcd/server/v3
[ -x "$out/kube-apiserver" ] || build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
[ -x "$out/kube-controller-manager" ] || build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
[ -x "$out/kube-scheduler" ] || build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
echo "kube-build: done in $((SECONDS - start)) s" >&2
echo "$out"
