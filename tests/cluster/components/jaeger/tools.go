//go:build tools

// Package tools pins the jaeger commands built by ../../build.sh;
// nothing here is compiled into the product.
package tools

import (
	_ "github.com/jaegertracing/jaeger/cmd/jaeger"
)
