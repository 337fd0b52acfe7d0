//go:build tools

// Package peers pins the IPAMs the benchmarks compare us with (see hack/peers-build.sh). Nothing
// here is compiled into a program of ours: `go build` of these import paths builds the peers'
// own binaries at the versions go.mod and go.sum fix.
package peers

import (
	_ "github.com/k8snetworkplumbingwg/whereabouts/cmd"
	_ "github.com/k8snetworkplumbingwg/whereabouts/cmd/controlloop"
)
