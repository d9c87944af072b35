//go:build tools

// Package tools pins the kwok commands built by ../../build.sh;
// nothing here is compiled into the product.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
