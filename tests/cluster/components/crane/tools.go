//go:build tools

// Package tools pins crane (go-containerregistry), which builds the images of
// the real-node tests without a Docker engine, built by ../../build.sh;
// nothing here is compiled into the product.
package tools

import (
	_ "github.com/google/go-containerregistry/cmd/crane"
)
