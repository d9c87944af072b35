#!/usr/bin/env bash
# Starts a node-agent on the three example models and sends it real MNIST test images over the
# Open Inference Protocol v2, printing what each tier answers. Used by `make run`.
set -euo pipefail
cd "$(dirname "$0")/../.."

addr=127.0.0.1:${IDN_DEMO_PORT:-8000}
target/release/idn-node-agent --config examples/node-agent/mnist.yaml --listen "$addr" &
agent=$!
trap 'kill "$agent" 2>/dev/null; wait "$agent" 2>/dev/null || true' EXIT

for _ in $(seq 100); do
  curl -sf "http://$addr/v2/health/ready" >/dev/null && break
  kill -0 "$agent" 2>/dev/null || { echo "node-agent failed to start" >&2; exit 1; }
  sleep 0.1
done

python3 - "$addr" <<'PY'
import json, sys, urllib.request

addr = sys.argv[1]
images = open("examples/data/mnist-test-1000.images.u8", "rb").read()
labels = open("examples/data/mnist-test-1000.labels.u8", "rb").read()

def infer(model, i):
    pixels = [p / 255 for p in images[i * 784:(i + 1) * 784]]
    body = {"id": f"demo-{i}", "inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": pixels}]}
    request = urllib.request.Request(f"http://{addr}/v2/models/{model}/infer", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    probs = json.load(urllib.request.urlopen(request))["outputs"][0]["data"]
    best = max(range(10), key=probs.__getitem__)
    return best, probs[best]

models = ["mnist-linear", "mnist-mlp", "mnist-cnn"]
print(f"\nPOST http://{addr}/v2/models/<model>/infer, first 10 MNIST test images\n")
print("image  label  " + "  ".join(f"{m:>20}" for m in models))
for i in range(10):
    cells = [f"{c} (p={p:.3f}){' ' if c == labels[i] else '!'}" for c, p in (infer(m, i) for m in models)]
    print(f"{i:>5}  {labels[i]:>5}  " + "  ".join(f"{c:>20}" for c in cells))
print("\n'!' marks a wrong class. Metrics: curl http://%s/metrics" % addr)
PY
