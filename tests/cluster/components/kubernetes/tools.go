//go:build tools

// Package tools pins the Kubernetes commands built by ../../build.sh: the
// control plane, and the kubelet and kube-proxy of the real nodes; nothing
// here is compiled into the product.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
