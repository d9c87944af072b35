//go:build tools

// Package tools pins containerd 2 (the container runtime of the real nodes:
// Debian's 1.6 has no image volumes), built by ../../build.sh; nothing here is
// compiled into the product.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
