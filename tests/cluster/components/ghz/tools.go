//go:build tools

// Package tools pins the ghz command (the gRPC load generator of `make bench`)
// built by ../../build.sh; nothing here is compiled into the product.
package tools

import (
	_ "github.com/bojand/ghz/cmd/ghz"
)
