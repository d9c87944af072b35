#!/usr/bin/env bash
# `make bench`: the idn node-agent against in-process ONNX Runtime (the limit), Seldon MLServer
# 1.7.1 (the baseline) and Triton Inference Server 2.51 (the peer), on the same machine, the same
# models and the same request.
#
#   1. in-process ONNX Runtime: `cargo bench --bench inprocess` (node-agent/benches/inprocess.rs)
#   2. the idn node-agent (release build): REST with OIP JSON and with the binary tensor data
#      extension (wrk), and gRPC (ghz) when the agent serves it (config field `grpcListen`)
#   3. the cost of cooperation: node-agents on loopback (bench/cooperation/*.yaml), loaded with
#      the same wrk script and body: a forward chain entry -> relay -> upstream (what a forward
#      hop adds), its links over REST with binary tensors and, in a second chain, over gRPC; and
#      threshold services against the plain model on one agent
#   4. MLServer with a small ONNX Runtime model class (bench/mlserver/), loaded with the same wrk
#      script and body
#   5. Triton Inference Server 2.51, the tritonserver binary of the nvidia-pytriton 0.7.0 wheel,
#      with a Python-backend model around onnxruntime (bench/triton/; the wheel has no ONNX
#      Runtime backend), with dynamic batching off and on: REST JSON, REST binary, gRPC
#
# Every protocol carries the same request: the first MNIST test image, batch 1, as JSON numbers,
# as raw FP32 after a JSON header (binary extension), or as FP32 raw_input_contents (gRPC).
# Health endpoints are measured too (the floors: what a request costs without inference):
# GET /v2/health/live (idn, MLServer), GET /v2/health/ready (Triton), gRPC ServerLive.
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
#   BENCH_PROTOCOLS="json binary grpc"
#                              what idn and Triton are measured over (MLServer: json only)
#   BENCH_GRPC_SATURATION="1:16 2:32 2:64"
#                              ghz connections:concurrency tried at saturation; the best is reported
#   BENCH_MLSERVER=1           0 skips MLServer
#   BENCH_TRITON=1             0 skips Triton
#   BENCH_TRITON_BATCHING="off on"
#                              Triton's dynamic batching settings tried; both are reported, and the
#                              best per protocol is compared with idn
#   BENCH_TRITON_INSTANCES=1   Triton model instances (Python stub processes) per model
#   BENCH_CHECK_IMAGES=16      images each server must classify like the reference, per model and
#                              protocol, before it is measured
#   BENCH_PORT=18000           idn REST listens here, idn gRPC on +1 (config field grpcListen);
#                              MLServer on +80 (REST), +81 (gRPC), +82 (metrics);
#                              Triton on +90 (REST), +91 (gRPC), +92 (metrics)
#                              (the cooperation agents use 18100-18105 and 18110, 18114: fixed
#                              in bench/cooperation/*.yaml and in run.sh's grpc_link_config calls)
#   BENCH_C1_ROUNDS=3          concurrency-1 rounds over idn's floor and inference endpoints
#                              (interleaved, after its other runs): "where the time goes at
#                              concurrency 1" takes infer − floor from runs next to each other
#   BENCH_C1_IDLE_POLL=1       in each of those rounds, the same runs again with idle vCPUs polling
#                              instead of halting (a PM QoS request of 0 µs on /dev/cpu_dma_latency
#                              held meanwhile): what the wake-up of a halted vCPU costs at
#                              concurrency 1; 0 skips, and so does a /dev/cpu_dma_latency that is
#                              not writable
#   BENCH_COOP_ROUNDS=3        concurrency-1 rounds over the cooperation endpoints (interleaved);
#                              the median of the rounds is reported
#   BENCH_COOPERATION=1        0 skips the cost-of-cooperation part
#   BENCH_COOP_LINKS="rest grpc"
#                              link protocols of the cooperation forward chain: REST with binary
#                              tensors (bench/cooperation/*.yaml) and gRPC (the same agents with
#                              protocol: grpc links, generated into the scratch dir)
#   BENCH_INPROCESS=1          0 skips the in-process ONNX Runtime part (and its build)
#   BENCH_BUILD=1              0 skips `cargo build` and measures target/release/idn-node-agent
#                              as it is (a binary built elsewhere from the same commit)
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
IDN_GRPC_PORT=$((PORT + 1))
MLSERVER_PORT=$((PORT + 80))
TRITON_PORT=$((PORT + 90))
TRITON_GRPC_PORT=$((PORT + 91))
TRITON_METRICS_PORT=$((PORT + 92))
PROTOCOLS=${BENCH_PROTOCOLS:-"json binary grpc"}
GRPC_SATURATION=${BENCH_GRPC_SATURATION:-"1:16 2:32 2:64"}
MLSERVER=${BENCH_MLSERVER:-1}
((MLSERVER)) || MLSERVER_WORKERS=
TRITON=${BENCH_TRITON:-1}
TRITON_BATCHING=${BENCH_TRITON_BATCHING:-"off on"}
TRITON_INSTANCES=${BENCH_TRITON_INSTANCES:-1}
CHECK_IMAGES=${BENCH_CHECK_IMAGES:-16}
LABEL=  # the server setting being measured, in the checks' labels
VENV=.venv-bench
TRITON_VENV=.venv-triton
PROTO=node-agent/proto/grpc_predict_v2.proto
RESULTS=${BENCH_RESULTS:-bench/results}
TOOLS="python3 bench/tools.py"
export BENCH_MAX_OTHER=${BENCH_MAX_OTHER:-0.3}
RETRIES=${BENCH_RETRIES:-2}
QUIET_WAIT=${BENCH_QUIET_WAIT:-300}
COOP_ROUNDS=${BENCH_COOP_ROUNDS:-3}
C1_ROUNDS=${BENCH_C1_ROUNDS:-3}
COOPERATION=${BENCH_COOPERATION:-1}
COOP_LINKS=${BENCH_COOP_LINKS:-"rest grpc"}
INPROCESS=${BENCH_INPROCESS:-1}
BUILD=${BENCH_BUILD:-1}

log() { printf '\n== %s\n' "$*" >&2; }

C1_IDLE=halt
if ((${BENCH_C1_IDLE_POLL:-1})); then
  if [[ -w /dev/cpu_dma_latency ]]; then C1_IDLE="halt poll"; else
    log "concurrency-1 rounds with polling idle vCPUs skipped: /dev/cpu_dma_latency is not writable"
  fi
fi

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

# Triton lives in its own venv too (nvidia-pytriton pins numpy below 2; it brings tritonclient,
# whose gRPC messages bench/grpc_check.py uses), installed by the Makefile's target, where its
# versions are pinned (TRITON_DEPS): the interop tests run the same Triton.
if ((TRITON)) || [[ " $PROTOCOLS " == *" grpc "* ]]; then
  make --no-print-directory "$TRITON_VENV/bin/python"
fi
GRPC_CHECK="$TRITON_VENV/bin/python bench/grpc_check.py"

# ghz, the gRPC load generator, from its Go module (pinned in tests/cluster/components/ghz/),
# built once into the tools cache (tests/cluster/build.sh). Without Go, gRPC is skipped.
GHZ=
if [[ " $PROTOCOLS " == *" grpc "* ]]; then
  if command -v go >/dev/null; then
    tests/cluster/build.sh ghz >&2
    GHZ=$(tests/cluster/build.sh --path ghz)/ghz
    export BENCH_GHZ=$GHZ
  else
    log "gRPC skipped: ghz is built from its Go module and Go is not installed"
  fi
fi
protocol_on() { [[ " $PROTOCOLS " == *" $1 "* ]] && { [[ $1 != grpc ]] || [[ -n $GHZ ]]; }; }

if ((BUILD)); then
  log "building the node-agent (release)"
  cargo build --release -p idn-node-agent
else
  log "BENCH_BUILD=0: measuring target/release/idn-node-agent as it is (not rebuilt)"
  [[ -x target/release/idn-node-agent ]] || { echo "no target/release/idn-node-agent" >&2; exit 1; }
fi
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
IDLE_POLL_PID=
cleanup() {
  if [[ -n $IDLE_POLL_PID ]]; then kill "$IDLE_POLL_PID" 2>/dev/null || true; fi
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server LOG "URL..." COMMAND...: starts COMMAND in a new process group, waits until every
# URL (space-separated) answers; exits the bench if it does not.
start_server() {
  try_start_server "$@" || { echo "server did not become ready at $FAILED_URL; its log:" >&2; cat "$1" >&2; exit 1; }
}

# try_start_server LOG "URL..." COMMAND...: the same, but returns 1 (server stopped, FAILED_URL
# the URL that did not answer) when the server exits or does not become ready.
try_start_server() {
  local log=$1 urls=$2 url
  shift 2
  # Something already answering there would be measured instead of the server started here.
  for url in $urls; do
    if curl -s -o /dev/null "$url"; then
      echo "something already listens at $url; stop it or set BENCH_PORT (the cooperation agents'" \
        "ports, 18100-18105, 18110 and 18114, are in bench/cooperation/*.yaml and bench/run.sh)" >&2
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
    FAILED_URL=$url
    stop_server
    return 1
  done
}

BODY=$WORK/body.json
BINARY_BODY=$WORK/body.bin
RECORDS=$WORK/records.jsonl
IMAGES=examples/data/mnist-test-1000.images.u8
$TOOLS body "$IMAGES" "$BODY"
BINARY_HEADER_LENGTH=$($TOOLS body-binary "$IMAGES" "$BINARY_BODY")
echo '{}' >"$WORK/empty.json"
for model in $MODELS; do $TOOLS grpc-body "$IMAGES" "$WORK/grpc-$model.json" "$model"; done
: >"$RECORDS"

# wrk_run URL THREADS CONNECTIONS SECONDS [key=value...]: one wrk run; with key=value fields it
# is recorded (and fails the bench on any non-2xx answer or socket error), without it is warm-up.
# GET when BODY is empty (the HTTP floor), else POST of the request body.
wrk_run() {
  local url=$1 threads=$2 connections=$3 seconds=$4
  shift 4
  local out=$WORK/wrk.out before after attempt rc
  ((seconds > 0)) || return 0  # BENCH_WARMUP=0: no warm-up (wrk refuses -d0s)
  for ((attempt = 1; ; attempt++)); do
    before=$($TOOLS cpu "$SERVER_PID")
    BENCH_BODY=${REQUEST_BODY-$BODY} BENCH_HEADER_LENGTH=${HEADER_LENGTH-} /usr/bin/time -f 'LOAD_CPU %U %S' \
      wrk -t"$threads" -c"$connections" -d"${seconds}s" --timeout 5s --latency \
      -s bench/wrk/infer.lua "$url" >"$out" 2>&1 || { echo "wrk failed:" >&2; cat "$out" >&2; return 1; }
    after=$($TOOLS cpu "$SERVER_PID")
    (($# > 0)) || return 0
    rc=0
    BENCH_ATTEMPT=$attempt BENCH_FINAL_ATTEMPT=$((attempt > RETRIES)) \
      $TOOLS record "$RECORDS" "$out" "$before" "$after" \
      "threads=$threads" "connections=$connections" "$@" || rc=$?
    ((rc == 3)) || return "$rc"  # 3: disturbed by other processes, measure again
  done
}

# ghz_run ADDRESS METHOD DATA CONNECTIONS CONCURRENCY SECONDS [key=value...]: one ghz run of
# inference.GRPCInferenceService/METHOD with the request DATA (protobuf JSON), closed loop with
# CONCURRENCY calls in flight over CONNECTIONS HTTP/2 connections; recorded like wrk_run. Calls
# still in flight at the end are waited for (--duration-stop=wait), not counted as errors. The
# request is not a template (--disable-template-*): with templates ghz renders and parses the
# JSON again for every call, which doubled its CPU per call here.
ghz_run() {
  local address=$1 method=$2 data=$3 connections=$4 concurrency=$5 seconds=$6
  shift 6
  ((seconds > 0)) || return 0
  local out=$WORK/ghz.out before after attempt rc
  for ((attempt = 1; ; attempt++)); do
    before=$($TOOLS cpu "$SERVER_PID")
    /usr/bin/time -o "$WORK/ghz.time" -f 'LOAD_CPU %U %S' \
      "$GHZ" --insecure --proto "$PROTO" --call "inference.GRPCInferenceService/$method" -D "$data" \
      --disable-template-functions --disable-template-data \
      --connections "$connections" -c "$concurrency" -z "${seconds}s" --duration-stop=wait \
      --timeout 5s --format json -o "$WORK/ghz.json" "$address" >"$WORK/ghz.log" 2>&1 ||
      { echo "ghz failed:" >&2; cat "$WORK/ghz.log" >&2; return 1; }
    after=$($TOOLS cpu "$SERVER_PID")
    (($# > 0)) || return 0
    { printf 'GHZ_RESULT '; tr -d '\n' <"$WORK/ghz.json"; echo; cat "$WORK/ghz.time"; } >"$out"
    rc=0
    BENCH_ATTEMPT=$attempt BENCH_FINAL_ATTEMPT=$((attempt > RETRIES)) \
      $TOOLS record "$RECORDS" "$out" "$before" "$after" \
      "connections=$connections" "concurrency=$concurrency" "$@" || rc=$?
    ((rc == 3)) || return "$rc"
  done
}

# rest_floor SYSTEM URL [key=value...]: the HTTP floor, a GET of a health endpoint, at
# concurrency 1 and at each saturation setting.
rest_floor() {
  local system=$1 url=$2 setting
  shift 2
  REQUEST_BODY='' wrk_run "$url" 1 1 "$WARMUP"
  REQUEST_BODY='' wrk_run "$url" 1 1 "$DURATION" \
    "system=$system-floor" model=- mode=c1 concurrency=1 protocol=json "endpoint=${url#http://*/}" "$@"
  for setting in $SATURATION; do
    REQUEST_BODY='' wrk_run "$url" "${setting%%:*}" "${setting##*:}" "$DURATION" "system=$system-floor" \
      model=- mode=saturation "concurrency=${setting##*:}" protocol=json "endpoint=${url#http://*/}" "$@"
  done
}

# bench_rest SYSTEM BASE_URL PROTOCOL [key=value...]: each model over REST (PROTOCOL json or
# binary), checked first, then at concurrency 1 and at each saturation setting.
bench_rest() {
  local system=$1 base=$2 protocol=$3 model url setting body=$BODY header=
  shift 3
  if [[ $protocol == binary ]]; then body=$BINARY_BODY header=$BINARY_HEADER_LENGTH; fi
  for model in $MODELS; do
    url=$base/v2/models/$model/infer
    $TOOLS check "$url" "$model" "$body" "images=$CHECK_IMAGES" ${header:+"binary=$header"} \
      record="$RECORDS" "label=$system${LABEL:+-$LABEL}-$protocol-$model"
    REQUEST_BODY=$body HEADER_LENGTH=$header wrk_run "$url" 2 32 "$WARMUP"
    REQUEST_BODY=$body HEADER_LENGTH=$header wrk_run "$url" 1 1 "$DURATION" \
      "system=$system" "model=$model" mode=c1 concurrency=1 "protocol=$protocol" "$@"
    for setting in $SATURATION; do
      REQUEST_BODY=$body HEADER_LENGTH=$header wrk_run "$url" "${setting%%:*}" "${setting##*:}" "$DURATION" \
        "system=$system" "model=$model" mode=saturation "concurrency=${setting##*:}" "protocol=$protocol" "$@"
    done
  done
}

# bench_server SYSTEM BASE_URL [key=value...]: the HTTP floor (GET /v2/health/live), then each
# model over REST with OIP JSON.
bench_server() {
  local system=$1 base=$2
  shift 2
  rest_floor "$system" "$base/v2/health/live" "$@"
  bench_rest "$system" "$base" json "$@"
}

# grpc_floor SYSTEM ADDRESS [key=value...]: the gRPC floor, ServerLive, at concurrency 1 and at
# each saturation setting.
grpc_floor() {
  local system=$1 address=$2 setting
  shift 2
  ghz_run "$address" ServerLive "$WORK/empty.json" 1 1 "$WARMUP"
  ghz_run "$address" ServerLive "$WORK/empty.json" 1 1 "$DURATION" \
    "system=$system-floor" model=- mode=c1 protocol=grpc endpoint=ServerLive "$@"
  for setting in $GRPC_SATURATION; do
    ghz_run "$address" ServerLive "$WORK/empty.json" "${setting%%:*}" "${setting##*:}" "$DURATION" \
      "system=$system-floor" model=- mode=saturation protocol=grpc endpoint=ServerLive "$@"
  done
}

# bench_grpc SYSTEM ADDRESS [key=value...]: each model over gRPC ModelInfer, checked first (with
# the same request message ghz sends), then at concurrency 1 and at each saturation setting.
bench_grpc() {
  local system=$1 address=$2 model data setting
  shift 2
  for model in $MODELS; do
    data=$WORK/grpc-$model.json
    $GRPC_CHECK check "$address" "$model" "$data" "images=$CHECK_IMAGES" record="$RECORDS" \
      "label=$system${LABEL:+-$LABEL}-grpc-$model"
    ghz_run "$address" ModelInfer "$data" 2 32 "$WARMUP"
    ghz_run "$address" ModelInfer "$data" 1 1 "$DURATION" \
      "system=$system" "model=$model" mode=c1 protocol=grpc "$@"
    for setting in $GRPC_SATURATION; do
      ghz_run "$address" ModelInfer "$data" "${setting%%:*}" "${setting##*:}" "$DURATION" \
        "system=$system" "model=$model" mode=saturation protocol=grpc "$@"
    done
  done
}

# c1_rounds SYSTEM BASE_URL [GRPC_ADDRESS]: concurrency 1 in BENCH_C1_ROUNDS rounds, each round
# the HTTP floor, then every model over JSON and binary, then (with GRPC_ADDRESS) the gRPC floor
# and every model over gRPC (mode c1-rounds). Concurrency-1 latency on a VM moves with thread
# placement from one minute to the next; a floor measured next to the inference it is subtracted
# from gives a difference that means something, round by round. With BENCH_C1_IDLE_POLL, each
# round is run twice: idle vCPUs halting (the machine as it is, idle=halt) and polling (idle=poll).
c1_rounds() {
  local system=$1 base=$2 grpc=${3-} round idle
  for ((round = 1; round <= C1_ROUNDS; round++)); do
    for idle in $C1_IDLE; do
      if [[ $idle == poll ]]; then
        $TOOLS idle-poll &
        IDLE_POLL_PID=$!
        sleep 0.2
      fi
      c1_round "$system" "$base" "$grpc" "round=$round" "idle=$idle"
      if [[ $idle == poll ]]; then
        kill "$IDLE_POLL_PID"
        wait "$IDLE_POLL_PID" 2>/dev/null || true
        IDLE_POLL_PID=
      fi
    done
  done
}

# c1_round SYSTEM BASE_URL GRPC_ADDRESS [key=value...]: one round of c1_rounds.
c1_round() {
  local system=$1 base=$2 grpc=$3 model
  shift 3
  REQUEST_BODY='' wrk_run "$base/v2/health/live" 1 1 "$DURATION" "system=$system-floor" model=- \
    mode=c1-rounds concurrency=1 protocol=json endpoint=v2/health/live "$@"
  for model in $MODELS; do
    wrk_run "$base/v2/models/$model/infer" 1 1 "$DURATION" "system=$system" "model=$model" \
      mode=c1-rounds concurrency=1 protocol=json "$@"
    if protocol_on binary; then
      REQUEST_BODY=$BINARY_BODY HEADER_LENGTH=$BINARY_HEADER_LENGTH wrk_run "$base/v2/models/$model/infer" \
        1 1 "$DURATION" "system=$system" "model=$model" mode=c1-rounds concurrency=1 protocol=binary "$@"
    fi
  done
  [[ -n $grpc ]] || return 0
  ghz_run "$grpc" ServerLive "$WORK/empty.json" 1 1 "$DURATION" "system=$system-floor" model=- \
    mode=c1-rounds protocol=grpc endpoint=ServerLive "$@"
  for model in $MODELS; do
    ghz_run "$grpc" ModelInfer "$WORK/grpc-$model.json" 1 1 "$DURATION" "system=$system" "model=$model" \
      mode=c1-rounds protocol=grpc "$@"
  done
}

# --- 1. in-process ONNX Runtime ----------------------------------------------------------------

if ((INPROCESS)); then
  log "1/5 in-process ONNX Runtime (cargo bench --bench inprocess)"
  model_args=()
  for model in $MODELS; do model_args+=(--model "$model=$PWD/examples/models/$model.onnx"); done
  cargo bench -p idn-node-agent --bench inprocess --no-run
fi
log "waiting for the machine to be idle (at most $QUIET_WAIT s)"
$TOOLS quiet "$BENCH_MAX_OTHER" "$QUIET_WAIT"
if ((INPROCESS)); then
  cargo bench -p idn-node-agent --bench inprocess -- "${model_args[@]}" \
    --duration "$DURATION" --warmup "$WARMUP" --body "$BODY" \
    --max-other "$BENCH_MAX_OTHER" --retries "$RETRIES" | tee -a "$RECORDS"
fi

# --- 2. idn node-agent -------------------------------------------------------------------------

log "2/5 idn node-agent on 127.0.0.1:$PORT"
# examples/node-agent/mnist.yaml with absolute model paths and, for gRPC, `grpcListen`. An agent
# that does not know that field refuses the config (unknown fields are errors); it is then
# started with the plain config and gRPC is skipped for idn.
IDN_CONFIG=$WORK/mnist.yaml
sed "s|path: \.\./models/|path: $PWD/examples/models/|" examples/node-agent/mnist.yaml >"$IDN_CONFIG"
IDN_GRPC=
if protocol_on grpc; then
  printf 'grpcListen: 127.0.0.1:%s\n' "$IDN_GRPC_PORT" >>"$IDN_CONFIG"
  if try_start_server "$WORK/idn.log" "http://127.0.0.1:$PORT/v2/health/ready" \
    "$AGENT" -c "$IDN_CONFIG" --listen "127.0.0.1:$PORT" --log-level warn; then
    if $GRPC_CHECK live "127.0.0.1:$IDN_GRPC_PORT" 10; then
      IDN_GRPC=127.0.0.1:$IDN_GRPC_PORT
    else
      log "idn over gRPC skipped: the agent started with grpcListen: 127.0.0.1:$IDN_GRPC_PORT but" \
        "answers no gRPC ServerLive there"
    fi
  else
    log "idn over gRPC skipped: this node-agent does not serve gRPC (it did not start with the config" \
      "field grpcListen: $(grep -o 'unknown field[^,]*' "$WORK/idn.log" | head -1 || true))"
    sed -i '/^grpcListen:/d' "$IDN_CONFIG"
  fi
fi
[[ -n $SERVER_PID ]] || start_server "$WORK/idn.log" "http://127.0.0.1:$PORT/v2/health/ready" \
  "$AGENT" -c "$IDN_CONFIG" --listen "127.0.0.1:$PORT" --log-level warn
bench_server idn "http://127.0.0.1:$PORT"
if protocol_on binary; then bench_rest idn "http://127.0.0.1:$PORT" binary; fi
if [[ -n $IDN_GRPC ]]; then
  grpc_floor idn "$IDN_GRPC"
  bench_grpc idn "$IDN_GRPC"
fi
c1_rounds idn "http://127.0.0.1:$PORT" "$IDN_GRPC"
stop_server

# --- 3. the cost of cooperation ----------------------------------------------------------------
#
# Node-agents on loopback, one process group (so the CPU accounting covers all of them, by agent):
#   upstream    serves `mnist` from its mnist-mlp                    (REST 18100, gRPC 18110; 0 hops)
#   relay       `mnist` = forward to upstream, REST binary link      (18101, 1 hop)
#   entry       `mnist` = forward to relay, REST binary link         (18102, 2 hops)
#   relay-grpc  relay with a gRPC link to upstream's gRPC port       (REST 18104, gRPC 18114; 1 hop)
#   entry-grpc  entry with a gRPC link to relay-grpc's gRPC port     (18105, 2 hops)
#   edge        mnist-mlp, `threshold-local` (tau 0: served locally) and
#               `threshold-forward` (tau 1: forwarded to upstream's mnist)     (18103)
# relay-grpc and entry-grpc are relay.yaml and entry.yaml with the link switched to
# `protocol: grpc`, generated into the scratch dir (grpc_link_config). wrk speaks REST with OIP
# JSON to every agent, the same body as everywhere: the two chains differ only in the protocol of
# the links between agents. Every link is loopback with delayMs 0. Each endpoint is checked once
# (reference probs and the provenance it must report), then measured at concurrency 1 in
# BENCH_COOP_ROUNDS interleaved rounds (the scheduler's placement of threads moves
# concurrency-1 latency on a VM; interleaving spreads it over all endpoints alike) and at each
# saturation setting.

# grpc_link_config IN OUT NODE LISTEN GRPC_LISTEN UPSTREAM_URL: the agent config IN with node
# name NODE, REST on LISTEN, gRPC on GRPC_LISTEN (none if empty), and its upstream link (IN has
# one, `binaryData: true`) going to UPSTREAM_URL with `protocol: grpc` instead.
grpc_link_config() {
  local in=$1 out=$2 node=$3 listen=$4 grpc_listen=$5 url=$6
  {
    echo "# Generated by bench/run.sh from $in: the same agent, its upstream link over gRPC."
    sed -e "s|^node: .*|node: $node|" \
      -e "s|^listen: .*|listen: $listen${grpc_listen:+\\ngrpcListen: $grpc_listen}|" \
      -e "s|^    url: .*|    url: $url|" \
      -e "s|^    binaryData: true$|    protocol: grpc|" "$in"
  } >"$out"
  if [[ $(grep -c -e '^    protocol: grpc$' -e "^    url: $url\$" "$out") != 2 ]]; then
    echo "grpc_link_config: $in does not have the one upstream link with binaryData: true it expects" >&2
    exit 1
  fi
}

coop_link_on() { [[ " $COOP_LINKS " == *" $1 "* ]]; }

if ((COOPERATION)); then
  log "3/5 cost of cooperation: node-agents on 127.0.0.1:18100-18105 (bench/cooperation/, links: $COOP_LINKS)"
  COOP=http://127.0.0.1
  coop_configs=(bench/cooperation/{upstream,relay,entry,edge}.yaml)
  coop_ready="$COOP:18100/v2/health/ready $COOP:18101/v2/health/ready $COOP:18102/v2/health/ready"
  coop_ready+=" $COOP:18103/v2/health/ready"
  if coop_link_on grpc; then
    grpc_link_config bench/cooperation/relay.yaml "$WORK/relay-grpc.yaml" relay-grpc \
      127.0.0.1:18104 127.0.0.1:18114 "$COOP:18110"
    grpc_link_config bench/cooperation/entry.yaml "$WORK/entry-grpc.yaml" entry-grpc \
      127.0.0.1:18105 "" "$COOP:18114"
    coop_configs+=("$WORK/relay-grpc.yaml" "$WORK/entry-grpc.yaml")
    coop_ready+=" $COOP:18104/v2/health/ready $COOP:18105/v2/health/ready"
  fi
  start_server "$WORK/cooperation.log" "$coop_ready" \
    bash -c 'agent=$1; shift
             for config; do "$agent" -c "$config" --log-level warn & done
             wait' bash "$AGENT" "${coop_configs[@]}"
  # endpoint: URL system model node fields... (model: what the wrk request asks for; the reference
  # probabilities are mnist-mlp's for every endpoint: every answer comes from an mnist-mlp)
  COOP_ENDPOINTS=("$COOP:18100/v2/models/mnist/infer chain mnist upstream hops=0")
  # What each answer must say (one request with the bench body, before any load).
  $TOOLS check "$COOP:18100/v2/models/mnist/infer" mnist-mlp "$BODY" record="$RECORDS" label=upstream \
    idn_node=upstream idn_decision=served idn_hops=0
  if coop_link_on rest; then
    COOP_ENDPOINTS+=(
      "$COOP:18101/v2/models/mnist/infer chain mnist relay hops=1 link=rest"
      "$COOP:18102/v2/models/mnist/infer chain mnist entry hops=2 link=rest"
    )
    $TOOLS check "$COOP:18101/v2/models/mnist/infer" mnist-mlp "$BODY" record="$RECORDS" label=relay \
      idn_node=upstream idn_decision=forwarded idn_hops=1 idn_path=relay,upstream
    $TOOLS check "$COOP:18102/v2/models/mnist/infer" mnist-mlp "$BODY" record="$RECORDS" label=entry \
      idn_node=upstream idn_decision=forwarded idn_hops=2 idn_path=entry,relay,upstream
  fi
  if coop_link_on grpc; then
    COOP_ENDPOINTS+=(
      "$COOP:18104/v2/models/mnist/infer chain mnist relay-grpc hops=1 link=grpc"
      "$COOP:18105/v2/models/mnist/infer chain mnist entry-grpc hops=2 link=grpc"
    )
    $TOOLS check "$COOP:18104/v2/models/mnist/infer" mnist-mlp "$BODY" record="$RECORDS" label=relay-grpc \
      idn_node=upstream idn_decision=forwarded idn_hops=1 idn_path=relay-grpc,upstream
    $TOOLS check "$COOP:18105/v2/models/mnist/infer" mnist-mlp "$BODY" record="$RECORDS" label=entry-grpc \
      idn_node=upstream idn_decision=forwarded idn_hops=2 idn_path=entry-grpc,relay-grpc,upstream
  fi
  COOP_ENDPOINTS+=(
    "$COOP:18103/v2/models/mnist-mlp/infer strategy mnist-mlp edge"
    "$COOP:18103/v2/models/threshold-local/infer strategy threshold-local edge"
    "$COOP:18103/v2/models/threshold-forward/infer strategy threshold-forward edge"
  )
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

# --- 4. MLServer -------------------------------------------------------------------------------

for workers in $MLSERVER_WORKERS; do
  log "4/5 MLServer 1.7.1 on 127.0.0.1:$MLSERVER_PORT, parallel_workers=$workers"
  # bench/mlserver/settings.json holds what does not change; ports and workers come from the
  # environment (MLServer reads MLSERVER_* variables for any setting the file leaves out). It
  # runs from bench/mlserver so that it finds the settings, the models and onnx_runtime.py.
  start_server "$WORK/mlserver.log" "http://127.0.0.1:$MLSERVER_PORT/v2/health/ready" \
    env -C bench/mlserver \
    MLSERVER_HTTP_PORT=$MLSERVER_PORT MLSERVER_GRPC_PORT=$((MLSERVER_PORT + 1)) \
    MLSERVER_METRICS_PORT=$((MLSERVER_PORT + 2)) MLSERVER_PARALLEL_WORKERS="$workers" \
    MLSERVER_METRICS_DIR="$WORK/mlserver-metrics" MLSERVER_ENVIRONMENTS_DIR="$WORK/mlserver-envs" \
    "$PWD/$VENV/bin/mlserver" start .
  LABEL=workers$workers bench_server mlserver "http://127.0.0.1:$MLSERVER_PORT" "parallel_workers=$workers"
  stop_server
done

# --- 5. Triton Inference Server ----------------------------------------------------------------
#
# The same ONNX models through bench/triton/model.py (Python backend around onnxruntime: the
# nvidia-pytriton wheel has no ONNX Runtime backend), one model repository per dynamic batching
# setting, written into the scratch dir. Each model is checked on BENCH_CHECK_IMAGES images per
# protocol before it is measured: a wrong answer fails the bench. The floors (health endpoint,
# ServerLive) do not depend on the models: measured with the first setting only.

if ((TRITON)); then
  first=1
  for batching in $TRITON_BATCHING; do
    log "5/5 Triton Inference Server 2.51 (nvidia-pytriton 0.7.0) on 127.0.0.1:$TRITON_PORT (REST)," \
      "$TRITON_GRPC_PORT (gRPC), dynamic batching $batching, Python backend around onnxruntime"
    repository=$WORK/triton-$batching
    python3 bench/triton/repository.py "$repository" "$batching" "$TRITON_INSTANCES" $MODELS
    start_server "$WORK/triton-$batching.log" "http://127.0.0.1:$TRITON_PORT/v2/health/ready" \
      bench/triton/serve.sh "$PWD/$TRITON_VENV" "$repository" "$WORK/triton-$batching-scratch" \
      "$TRITON_PORT" "$TRITON_GRPC_PORT" "$TRITON_METRICS_PORT"
    fields=("batching=$batching" "instances=$TRITON_INSTANCES")
    LABEL=batching-$batching
    if ((first)); then rest_floor triton "http://127.0.0.1:$TRITON_PORT/v2/health/ready" "${fields[@]}"; fi
    for protocol in json binary; do
      if protocol_on $protocol; then bench_rest triton "http://127.0.0.1:$TRITON_PORT" $protocol "${fields[@]}"; fi
    done
    if protocol_on grpc; then
      if ((first)); then grpc_floor triton "127.0.0.1:$TRITON_GRPC_PORT" "${fields[@]}"; fi
      bench_grpc triton "127.0.0.1:$TRITON_GRPC_PORT" "${fields[@]}"
    fi
    stop_server
    first=0
  done
  LABEL=
fi

# --- report ------------------------------------------------------------------------------------

log "results"
mkdir -p "$RESULTS"
$TOOLS report "$RECORDS" "$RESULTS/latest.json" "$RESULTS/latest.md"
echo >&2
echo "raw results: $RESULTS/latest.json, table: $RESULTS/latest.md" >&2
