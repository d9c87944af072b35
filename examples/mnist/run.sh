#!/usr/bin/env bash
# The main job (`make run`): run the example three-tier network on loopback with `idn up`,
# replay the 1000-image MNIST sample through its cascade, then compare strategies side by side.
set -euo pipefail
cd "$(dirname "$0")/../.."

idn=target/release/idn
entry=127.0.0.1:${IDN_BASE_PORT:-8101}

$idn up -f examples/mnist/ --base-port "${entry##*:}" &
up=$!
trap 'kill "$up" 2>/dev/null; wait "$up" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://$entry/v2/health/ready" >/dev/null && break
  kill -0 "$up" 2>/dev/null || { echo "idn up failed" >&2; exit 1; }
  sleep 0.1
done

echo
echo "== idn replay: the declared cascade, 1000 MNIST test images =="
$idn replay --url "http://$entry" --concurrency 4
kill "$up"; wait "$up" 2>/dev/null || true
trap - EXIT

echo
echo "== idn replay --compare: the same traffic through several strategies =="
$idn replay --compare -f examples/mnist/ --concurrency 4 --out idn-compare
