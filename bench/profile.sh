#!/usr/bin/env bash
# Diagnostics behind "Where the time goes" in docs/benchmarks.md; not part of `make bench`.
#
#   1. Concurrency-1 latency of the node-agent by CPU placement (taskset): agent and wrk on one
#      CPU, on different CPUs, and unpinned. On a VM, waking a thread on an idle vCPU is far
#      dearer than a switch on the same CPU; the request path crosses threads several times.
#   2. A CPU profile of the agent at saturation (mnist-mlp, wrk -t1 -c32): `perf record` with the
#      software cpu-clock event, which works in VMs without a PMU. perf must start the agent
#      (attaching with -p counted nothing on the Firecracker VM this was written on).
#   3. The forward hop (bench/cooperation/: relay -> upstream on loopback, delayMs 0): the
#      concurrency-1 latency of upstream and relay with everything on one CPU and unpinned, and
#      a CPU profile of the relay at saturation (wrk -t1 -c32 on the relay).
#
# Output: bench/results/profile.txt. Needs what bench/run.sh installs (wrk, the release build);
# perf is optional (apt-get install linux-perf).
#   BENCH_PROFILE_REPEAT=3   placement runs per setting
#   BENCH_PORT=18500         (part 3 uses the ports of bench/cooperation/*.yaml, 18100-18101)
set -euo pipefail

cd "$(dirname "$0")/.."
REPEAT=${BENCH_PROFILE_REPEAT:-3}
PORT=${BENCH_PORT:-18500}
BASE=http://127.0.0.1:$PORT
OUT=bench/results/profile.txt
TOOLS="python3 bench/tools.py"

cargo build --release -p idn-node-agent
WORK=$(mktemp -d)
AGENT_PID=
COOP_PIDS=()
cleanup() {
  if [[ -n $AGENT_PID ]]; then kill "$AGENT_PID" 2>/dev/null || true; wait "$AGENT_PID" 2>/dev/null || true; fi
  for pid in "${COOP_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
$TOOLS body examples/data/mnist-test-1000.images.u8 "$WORK/body.json"
mkdir -p bench/results
: >"$OUT"

wait_ready() {
  local url=${1:-$BASE/v2/health/ready}
  for _ in $(seq 100); do curl -sf -o /dev/null "$url" && return 0; sleep 0.1; done
  echo "the agent did not start ($url)" >&2
  exit 1
}

# p50/p99 (µs) of one wrk -t1 -c1 run; $1: taskset prefix for wrk, $2: URL, $3: body file or ''.
c1() {
  BENCH_BODY=$3 $1 wrk -t1 -c1 -d5s --latency -s bench/wrk/infer.lua "$2" |
    sed -n 's/^WRK_RESULT //p' | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["p50_us"], r["p99_us"])'
}

{
  echo "# 1. concurrency-1 p50/p99 (µs) by CPU placement, mnist-mlp; loadavg shown to spot other load"
  printf '%-28s %-16s %-16s %s\n' placement "GET live" "POST infer" loadavg
} | tee -a "$OUT"
for _ in $(seq "$REPEAT"); do
  for placement in "same CPU:0:0" "agent CPU 0, wrk CPU 1:0:1" "unpinned::"; do
    IFS=: read -r label agent_cpu wrk_cpu <<<"$placement"
    agent_pin=${agent_cpu:+taskset -c $agent_cpu}
    wrk_pin=${wrk_cpu:+taskset -c $wrk_cpu}
    $agent_pin target/release/idn-node-agent -c examples/node-agent/mnist.yaml \
      --listen "127.0.0.1:$PORT" --log-level warn &
    AGENT_PID=$!
    wait_ready
    BENCH_BODY=$WORK/body.json $wrk_pin wrk -t1 -c1 -d2s -s bench/wrk/infer.lua "$BASE/v2/models/mnist-mlp/infer" >/dev/null
    live=$(c1 "$wrk_pin" "$BASE/v2/health/live" '')
    infer=$(c1 "$wrk_pin" "$BASE/v2/models/mnist-mlp/infer" "$WORK/body.json")
    printf '%-28s %-16s %-16s %s\n' "$label" "$live" "$infer" "$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"
    kill "$AGENT_PID"
    wait "$AGENT_PID" || true
    AGENT_PID=
  done
done

HAVE_PERF=1
if ! command -v perf >/dev/null || ! perf stat -e cpu-clock true >/dev/null 2>&1; then HAVE_PERF=0; fi

# profile_report PERF_DATA: shares of samples by thread and library, and the top functions.
profile_report() {
  echo
  echo "## share of samples by thread and library"
  perf report -i "$1" --no-children --sort comm,dso -g none 2>/dev/null | grep '%' | sed -n 1,15p
  echo
  echo "## top functions (self time)"
  perf report -i "$1" --no-children --sort comm,sym -g none 2>/dev/null | grep '%' | sed -n 1,40p
}

echo | tee -a "$OUT"
if ((!HAVE_PERF)); then
  echo "# 2. perf is not available here: no CPU profile" | tee -a "$OUT"
else
echo "# 2. CPU profile of the agent at saturation (mnist-mlp, wrk -t1 -c32, 10 s)" | tee -a "$OUT"
perf record -e cpu-clock -F 999 -g -o "$WORK/perf.data" -- \
  target/release/idn-node-agent -c examples/node-agent/mnist.yaml --listen "127.0.0.1:$PORT" --log-level warn \
  2>"$WORK/perf.log" &
PERF_PID=$!
wait_ready
BENCH_BODY=$WORK/body.json wrk -t1 -c32 -d10s --latency -s bench/wrk/infer.lua "$BASE/v2/models/mnist-mlp/infer" |
  grep -E 'Requests/sec' | tee -a "$OUT"
# The agent is perf's child; stopping it ends the recording.
kill -INT "$(pgrep -P "$PERF_PID")"
wait "$PERF_PID" || true
profile_report "$WORK/perf.data" | tee -a "$OUT"
fi

# --- 3. the forward hop ------------------------------------------------------------------------

UPSTREAM=http://127.0.0.1:18100
RELAY=http://127.0.0.1:18101
start_chain() {  # $1: taskset prefix for both agents ('' = unpinned)
  local node
  for node in upstream relay; do
    $1 target/release/idn-node-agent -c "bench/cooperation/$node.yaml" --log-level warn &
    COOP_PIDS+=($!)
  done
  wait_ready "$UPSTREAM/v2/health/ready"
  wait_ready "$RELAY/v2/health/ready"
}
stop_chain() {
  local pid
  for pid in "${COOP_PIDS[@]}"; do kill "$pid"; wait "$pid" || true; done
  COOP_PIDS=()
}

{
  echo
  echo "# 3. the forward hop: concurrency-1 p50/p99 (µs) of POST /v2/models/mnist/infer at upstream (0 hops)"
  echo "#    and relay (1 hop, bench/cooperation/), by CPU placement of both agents and wrk"
  printf '%-28s %-16s %-16s %-10s %s\n' placement "upstream" "relay" "p50 diff" loadavg
} | tee -a "$OUT"
for _ in $(seq "$REPEAT"); do
  for placement in "all on CPU 0:0" "unpinned:"; do
    IFS=: read -r label cpu <<<"$placement"
    pin=${cpu:+taskset -c $cpu}
    start_chain "$pin"
    BENCH_BODY=$WORK/body.json $pin wrk -t1 -c1 -d2s -s bench/wrk/infer.lua "$RELAY/v2/models/mnist/infer" >/dev/null
    up=$(c1 "$pin" "$UPSTREAM/v2/models/mnist/infer" "$WORK/body.json")
    relay=$(c1 "$pin" "$RELAY/v2/models/mnist/infer" "$WORK/body.json")
    printf '%-28s %-16s %-16s %-10s %s\n' "$label" "$up" "$relay" "$((${relay%% *} - ${up%% *}))" \
      "$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"
    stop_chain
  done
done

echo | tee -a "$OUT"
if ((!HAVE_PERF)); then
  echo "# 3b. perf is not available here: no CPU profile of the relay" | tee -a "$OUT"
  exit 0
fi
echo "# 3b. CPU profile of the relay at saturation (POST mnist at relay, wrk -t1 -c32, 10 s; upstream unprofiled)" | tee -a "$OUT"
target/release/idn-node-agent -c bench/cooperation/upstream.yaml --log-level warn &
COOP_PIDS+=($!)
wait_ready "$UPSTREAM/v2/health/ready"
perf record -e cpu-clock -F 999 -g -o "$WORK/perf-relay.data" -- \
  target/release/idn-node-agent -c bench/cooperation/relay.yaml --log-level warn 2>"$WORK/perf-relay.log" &
PERF_PID=$!
wait_ready "$RELAY/v2/health/ready"
BENCH_BODY=$WORK/body.json wrk -t1 -c32 -d10s --latency -s bench/wrk/infer.lua "$RELAY/v2/models/mnist/infer" |
  grep -E 'Requests/sec' | tee -a "$OUT"
kill -INT "$(pgrep -P "$PERF_PID")"
wait "$PERF_PID" || true
profile_report "$WORK/perf-relay.data" | tee -a "$OUT"
