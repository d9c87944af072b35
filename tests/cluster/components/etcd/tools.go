//go:build tools

// Package tools pins the etcd commands built by ../../build.sh;
// nothing here is compiled into the product.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
