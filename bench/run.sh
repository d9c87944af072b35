#!/usr/bin/env bash
# `make bench`: the idn node-agent against in-process ONNX Runtime (the limit) and Seldon
# MLServer 1.7.1 (the baseline), on the same machine, the same models and the same request.
#
#   1. in-process ONNX Runtime: `cargo bench --bench inprocess` (node-agent/benches/inprocess.rs)
#   2. the idn node-agent (release build), loaded with wrk
#   3. the cost of cooperation: node-agents on loopback (bench/cooperation/*.yaml), loaded with
#      the same wrk script and body: a forward chain entry -> relay -> upstream (what a forward
#      hop adds), and threshold services against the plain model on one agent
#   4. MLServer with a small ONNX Runtime model class (bench/mlserver/), loaded with the same wrk
#      script and body
#
# Every server is started here and stopped on exit. Raw results go to bench/results/latest.json,
# the markdown table to bench/results/latest.md and stdout. docs/benchmarks.md explains them.
#
# Knobs (environment):
#   BENCH_DURATION=10          seconds per measured run (BENCH_DURATION=2 for a quick check)
#   BENCH_WARMUP=2             seconds of unrecorded load before measuring each model
#   BENCH_SATURATION="1:16 2:32 2:64"
#                              wrk threads:connections tried at saturation; the best is reported
#   BENCH_MLSERVER_WORKERS="0 1"
#                              MLServer parallel_workers values tried; the best is reported
#   BENCH_MODELS="mnist-mlp mnist-cnn"
#   BENCH_PORT=18000           idn listens here, MLServer on +80 (REST), +81 (gRPC), +82 (metrics)
#                              (the cooperation agents use 18100-18103, fixed in their configs)
#   BENCH_COOP_ROUNDS=3        concurrency-1 rounds over the cooperation endpoints (interleaved);
#                              the median of the rounds is reported
#   BENCH_COOPERATION=1        0 skips the cost-of-cooperation part
#   BENCH_RESULTS=bench/results  where latest.json and latest.md go
#   BENCH_MAX_OTHER=0.3        a run during which other processes used more cores than this is
#   BENCH_RETRIES=2            repeated (at most this many times); see "Shared machines" below
#   BENCH_QUIET_WAIT=300       seconds to wait at start for the machine to become idle
#
# Shared machines: every run records where the machine's CPU went (the server by thread, wrk,
# and other processes). A run disturbed by other processes (e.g. someone's compile) is repeated;
# if it stays disturbed it is kept and marked "disturbed" in the results.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
SATURATION=${BENCH_SATURATION:-"1:16 2:32 2:64"}
MLSERVER_WORKERS=${BENCH_MLSERVER_WORKERS:-"0 1"}
MODELS=${BENCH_MODELS:-"mnist-mlp mnist-cnn"}
PORT=${BENCH_PORT:-18000}
MLSERVER_PORT=$((PORT + 80))
VENV=.venv-bench
RESULTS=${BENCH_RESULTS:-bench/results}
TOOLS="python3 bench/tools.py"
export BENCH_MAX_OTHER=${BENCH_MAX_OTHER:-0.3}
RETRIES=${BENCH_RETRIES:-2}
QUIET_WAIT=${BENCH_QUIET_WAIT:-300}
COOP_ROUNDS=${BENCH_COOP_ROUNDS:-3}
COOPERATION=${BENCH_COOPERATION:-1}

log() { printf '\n== %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------------

if ! command -v wrk >/dev/null; then
  log "installing wrk"
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
if [[ ! -x /usr/bin/time ]]; then  # GNU time: wrk's own CPU use, reported next to the server's
  apt-get install -y time >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
fi

# MLServer lives in its own venv: it pins much of its stack (fastapi, pydantic, ...) and must not
# disturb .venv (the interop tests). Reinstalled only when the pinned versions are not there.
# uvloop is pinned below 0.22: from 0.22 its get_event_loop() raises when no loop is set, and
# MLServer 1.7.1's parallel workers call it at start (mlserver/parallel/worker.py
# _ignore_signals), so every worker dies with "There is no current event loop" and
# parallel_workers >= 1 cannot serve.
MLSERVER_DEPS=(mlserver==1.7.1 onnxruntime==1.32.0 "uvloop==0.21.0" numpy)
if ! "$VENV/bin/python" -c '
import mlserver, onnxruntime, uvloop
assert (mlserver.__version__, onnxruntime.__version__, uvloop.__version__) == ("1.7.1", "1.32.0", "0.21.0")
' 2>/dev/null; then
  log "installing MLServer 1.7.1 into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet "${MLSERVER_DEPS[@]}"
fi

log "building the node-agent (release)"
cargo build --release -p idn-node-agent
# What is measured: the commit and any uncommitted change to the agent, as of this build (the
# report says so). The binary is copied below, so a later build in this checkout during the
# bench (another user's) cannot swap it between phases.
export BENCH_IDN_COMMIT BENCH_IDN_CHANGES
BENCH_IDN_COMMIT=$(git rev-parse --short HEAD)
BENCH_IDN_CHANGES=$(git status --porcelain -- node-agent Cargo.lock Cargo.toml)

# --- scratch space, servers and cleanup --------------------------------------------------------

WORK=$(mktemp -d)
AGENT=$WORK/idn-node-agent  # finds the ONNX Runtime library in .ort/ (node-agent/src/model/ort_library.rs)
cp target/release/idn-node-agent "$AGENT"
SERVER_PID=
stop_server() {
  if [[ -n $SERVER_PID ]]; then
    # Servers run in their own process group (setsid), so MLServer's worker processes go too.
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server LOG "URL..." COMMAND...: starts COMMAND in a new process group, waits until every
# URL (space-separated) answers.
start_server() {
  local log=$1 urls=$2 url
  shift 2
  # Something already answering there would be measured instead of the server started here.
  for url in $urls; do
    if curl -s -o /dev/null "$url"; then
      echo "something already listens at $url; stop it or set BENCH_PORT (the cooperation agents'" \
        "ports, 18100-18103, are in bench/cooperation/*.yaml)" >&2
      exit 1
    fi
  done
  setsid "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  for url in $urls; do
    for _ in $(seq 120); do
      if curl -sf -o /dev/null "$url" && kill -0 "$SERVER_PID" 2>/dev/null; then continue 2; fi
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
      sleep 0.5
    done
    echo "server did not become ready at $url; its log:" >&2
    cat "$log" >&2
    exit 1
  done
}

BODY=$WORK/body.json
RECORDS=$WORK/records.jsonl
$TOOLS body examples/data/mnist-test-1000.images.u8 "$BODY"
: >"$RECORDS"

# wrk_run URL THREADS CONNECTIONS SECONDS [key=value...]: one wrk run; with key=value fields it
# is recorded (and fails the bench on any non-2xx answer or socket error), without it is warm-up.
# GET when BODY is empty (the HTTP floor), else POST of the request body.
wrk_run() {
  local url=$1 threads=$2 connections=$3 seconds=$4
  shift 4
  local out=$WORK/wrk.out before after attempt rc
  for ((attempt = 1; ; attempt++)); do
    before=$($TOOLS cpu "$SERVER_PID")
    BENCH_BODY=${REQUEST_BODY-$BODY} /usr/bin/time -f 'WRK_CPU %U %S' \
      wrk -t"$threads" -c"$connections" -d"${seconds}s" --timeout 5s --latency \
      -s bench/wrk/infer.lua "$url" >"$out" 2>&1
    after=$($TOOLS cpu "$SERVER_PID")
    (($# > 0)) || return 0
    rc=0
    BENCH_ATTEMPT=$attempt BENCH_FINAL_ATTEMPT=$((attempt > RETRIES)) \
      $TOOLS record "$RECORDS" "$out" "$before" "$after" \
      "threads=$threads" "connections=$connections" "$@" || rc=$?
    ((rc == 3)) || return "$rc"  # 3: disturbed by other processes, measure again
  done
}

# bench_server SYSTEM BASE_URL [key=value...]: the HTTP floor, then each model at concurrency 1
# and at each saturation setting.
bench_server() {
  local system=$1 base=$2
  shift 2
  REQUEST_BODY='' wrk_run "$base/v2/health/live" 1 1 "$WARMUP"
  REQUEST_BODY='' wrk_run "$base/v2/health/live" 1 1 "$DURATION" \
    "system=$system-floor" model=- mode=c1 concurrency=1 "$@"
  for model in $MODELS; do
    local url=$base/v2/models/$model/infer
    $TOOLS check "$url" "$model" "$BODY"
    wrk_run "$url" 2 32 "$WARMUP"
    wrk_run "$url" 1 1 "$DURATION" "system=$system" "model=$model" mode=c1 concurrency=1 "$@"
    for setting in $SATURATION; do
      wrk_run "$url" "${setting%%:*}" "${setting##*:}" "$DURATION" \
        "system=$system" "model=$model" mode=saturation "concurrency=${setting##*:}" "$@"
    done
  done
}

# --- 1. in-process ONNX Runtime ----------------------------------------------------------------

log "1/4 in-process ONNX Runtime (cargo bench --bench inprocess)"
model_args=()
for model in $MODELS; do model_args+=(--model "$model=$PWD/examples/models/$model.onnx"); done
cargo bench -p idn-node-agent --bench inprocess --no-run
log "waiting for the machine to be idle (at most $QUIET_WAIT s)"
$TOOLS quiet "$BENCH_MAX_OTHER" "$QUIET_WAIT"
cargo bench -p idn-node-agent --bench inprocess -- "${model_args[@]}" \
  --duration "$DURATION" --warmup "$WARMUP" --body "$BODY" \
  --max-other "$BENCH_MAX_OTHER" --retries "$RETRIES" | tee -a "$RECORDS"

# --- 2. idn node-agent -------------------------------------------------------------------------

log "2/4 idn node-agent on 127.0.0.1:$PORT"
start_server "$WORK/idn.log" "http://127.0.0.1:$PORT/v2/health/ready" \
  "$AGENT" -c examples/node-agent/mnist.yaml --listen "127.0.0.1:$PORT" --log-level warn
bench_server idn "http://127.0.0.1:$PORT"
stop_server

# --- 3. the cost of cooperation ----------------------------------------------------------------
#
# Four agents, one process group (so the CPU accounting covers all of them, by agent):
#   upstream  serves `mnist` from its mnist-mlp                           (18100, 0 hops)
#   relay     `mnist` = forward to upstream                               (18101, 1 hop)
#   entry     `mnist` = forward to relay                                  (18102, 2 hops)
#   edge      mnist-mlp, `threshold-local` (tau 0: served locally) and
#             `threshold-forward` (tau 1: forwarded to upstream's mnist)  (18103)
# Every upstream link is loopback with delayMs 0. Each endpoint is checked once (reference probs
# and the provenance it must report), then measured at concurrency 1 in BENCH_COOP_ROUNDS
# interleaved rounds (the scheduler's placement of threads moves concurrency-1 latency on a VM;
# interleaving spreads it over all endpoints alike) and at each saturation setting.

if ((COOPERATION)); then
  log "3/4 cost of cooperation: node-agents on 127.0.0.1:18100-18103 (bench/cooperation/)"
  COOP=http://127.0.0.1
  start_server "$WORK/cooperation.log" \
    "$COOP:18100/v2/health/ready $COOP:18101/v2/health/ready $COOP:18102/v2/health/ready $COOP:18103/v2/health/ready" \
    bash -c 'for node in upstream relay entry edge; do
               "$0" -c "bench/cooperation/$node.yaml" --log-level warn &
             done
             wait' "$AGENT"
  # endpoint: URL system model node fields... (model: what the wrk request asks for; the reference
  # probabilities are mnist-mlp's for every endpoint: every answer comes from an mnist-mlp)
  COOP_ENDPOINTS=(
    "$COOP:18100/v2/models/mnist/infer chain mnist upstream hops=0"
    "$COOP:18101/v2/models/mnist/infer chain mnist relay hops=1"
    "$COOP:18102/v2/models/mnist/infer chain mnist entry hops=2"
    "$COOP:18103/v2/models/mnist-mlp/infer strategy mnist-mlp edge"
    "$COOP:18103/v2/models/threshold-local/infer strategy threshold-local edge"
    "$COOP:18103/v2/models/threshold-forward/infer strategy threshold-forward edge"
  )
  # What each answer must say (one request with the bench body, before any load).
  $TOOLS check "$COOP:18100/v2/models/mnist/infer" mnist-mlp "$BODY" record="$RECORDS" label=upstream \
    idn_node=upstream idn_decision=served idn_hops=0
  $TOOLS check "$COOP:18101/v2/models/mnist/infer" mnist-mlp "$BODY" record="$RECORDS" label=relay \
    idn_node=upstream idn_decision=forwarded idn_hops=1 idn_path=relay,upstream
  $TOOLS check "$COOP:18102/v2/models/mnist/infer" mnist-mlp "$BODY" record="$RECORDS" label=entry \
    idn_node=upstream idn_decision=forwarded idn_hops=2 idn_path=entry,relay,upstream
  $TOOLS check "$COOP:18103/v2/models/mnist-mlp/infer" mnist-mlp "$BODY" record="$RECORDS" label=mnist-mlp
  $TOOLS check "$COOP:18103/v2/models/threshold-local/infer" mnist-mlp "$BODY" record="$RECORDS" \
    label=threshold-local idn_node=edge idn_decision=served idn_hops=0
  $TOOLS check "$COOP:18103/v2/models/threshold-forward/infer" mnist-mlp "$BODY" record="$RECORDS" \
    label=threshold-forward idn_node=upstream idn_decision=forwarded idn_hops=1 idn_path=edge,upstream
  for endpoint in "${COOP_ENDPOINTS[@]}"; do
    read -r url _ <<<"$endpoint"
    wrk_run "$url" 2 32 "$WARMUP"
  done
  for ((round = 1; round <= COOP_ROUNDS; round++)); do
    for endpoint in "${COOP_ENDPOINTS[@]}"; do
      read -r url system model node fields <<<"$endpoint"
      # shellcheck disable=SC2086 # fields: zero or more key=value words
      wrk_run "$url" 1 1 "$DURATION" "system=$system" "model=$model" "node=$node" $fields \
        mode=c1 concurrency=1 "round=$round"
    done
  done
  for endpoint in "${COOP_ENDPOINTS[@]}"; do
    read -r url system model node fields <<<"$endpoint"
    wrk_run "$url" 2 32 "$WARMUP"
    for setting in $SATURATION; do
      # shellcheck disable=SC2086
      wrk_run "$url" "${setting%%:*}" "${setting##*:}" "$DURATION" "system=$system" "model=$model" \
        "node=$node" $fields mode=saturation "concurrency=${setting##*:}"
    done
  done
  stop_server
fi

# --- 3. MLServer -------------------------------------------------------------------------------

for workers in $MLSERVER_WORKERS; do
  log "4/4 MLServer 1.7.1 on 127.0.0.1:$MLSERVER_PORT, parallel_workers=$workers"
  # bench/mlserver/settings.json holds what does not change; ports and workers come from the
  # environment (MLServer reads MLSERVER_* variables for any setting the file leaves out). It
  # runs from bench/mlserver so that it finds the settings, the models and onnx_runtime.py.
  start_server "$WORK/mlserver.log" "http://127.0.0.1:$MLSERVER_PORT/v2/health/ready" \
    env -C bench/mlserver \
    MLSERVER_HTTP_PORT=$MLSERVER_PORT MLSERVER_GRPC_PORT=$((MLSERVER_PORT + 1)) \
    MLSERVER_METRICS_PORT=$((MLSERVER_PORT + 2)) MLSERVER_PARALLEL_WORKERS="$workers" \
    MLSERVER_METRICS_DIR="$WORK/mlserver-metrics" MLSERVER_ENVIRONMENTS_DIR="$WORK/mlserver-envs" \
    "$PWD/$VENV/bin/mlserver" start .
  bench_server mlserver "http://127.0.0.1:$MLSERVER_PORT" "parallel_workers=$workers"
  stop_server
done

# --- report ------------------------------------------------------------------------------------

log "results"
mkdir -p "$RESULTS"
$TOOLS report "$RECORDS" "$RESULTS/latest.json" "$RESULTS/latest.md"
echo >&2
echo "raw results: $RESULTS/latest.json, table: $RESULTS/latest.md" >&2
