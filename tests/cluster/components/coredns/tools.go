//go:build tools

// Package tools pins CoreDNS, the cluster DNS of the real nodes, built by
// ../../build.sh; nothing here is compiled into the product.
package tools

import (
	_ "github.com/coredns/coredns"
)
