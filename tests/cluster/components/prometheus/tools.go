//go:build tools

// Package tools pins the prometheus commands built by ../../build.sh;
// nothing here is compiled into the product.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
