//go:build tools

// Package tools pins the helm commands built by ../../build.sh;
// nothing here is compiled into the product.
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
