# syntax=docker/dockerfile:1
# Images of idn (x86_64: `make ort` fetches the manylinux x86_64 ONNX Runtime), one target each:
#   docker build --target operator   -t idn-operator:0.1.0 .
#   docker build --target node-agent -t idn-node-agent:0.1.0 .
#   docker build --target models     -t idn-example-models:0.1.0 .
# Each builds only its own crate: the operator image compiles no ONNX Runtime bindings.

# The operator: kube and the contract, nothing of the data plane.
FROM rust:1.95-bookworm AS operator-builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p idn-operator --bin idn-operator \
 && mkdir -p /out \
 && cp target/release/idn-operator /out/

FROM rust:1.95-bookworm AS builder
# `make ort` takes the ONNX Runtime library from its PyPI wheel with pip.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Before the sources, so that editing them does not download the library again.
COPY Makefile ./
RUN make ort
COPY . .
# The cache mounts keep crates and build output between builds; binaries are copied out of
# the target cache in the same step because the mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p idn-node-agent --bin idn-node-agent \
 && mkdir -p /out \
 && cp target/release/idn-node-agent /out/

# Both finals run on the builder's Debian release (same glibc); `cc` adds libgcc and
# libstdc++, which ONNX Runtime needs.
FROM gcr.io/distroless/cc-debian12:nonroot AS node-agent
COPY --from=builder /out/idn-node-agent /usr/local/bin/idn-node-agent
# The library `make ort` fetched (ORT_VERSION in the Makefile); loaded at run time.
COPY --from=builder /src/.ort/libonnxruntime.so.1.32.0 /usr/lib/idn/libonnxruntime.so.1.32.0
ENV ORT_DYLIB_PATH=/usr/lib/idn/libonnxruntime.so.1.32.0
USER 65532:65532
EXPOSE 8000 8001
ENTRYPOINT ["/usr/local/bin/idn-node-agent"]

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=operator-builder /out/idn-operator /usr/local/bin/idn-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/idn-operator"]

# The example models (examples/mnist mounts this image as an image volume): no runtime, just
# the files, at the image's root.
FROM scratch AS models
COPY examples/models/mnist-linear.onnx examples/models/mnist-mlp.onnx examples/models/mnist-cnn.onnx /
