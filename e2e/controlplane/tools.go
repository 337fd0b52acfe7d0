//go:build tools

// Package controlplane pins the commands of the control plane. Nothing here is compiled into a
// program of ours: `go build` of these import paths (see hack/kube-build.sh) builds the binaries
// at the versions go.mod and go.sum fix.
package controlplane

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
