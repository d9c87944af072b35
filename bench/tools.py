#!/usr/bin/env python3
"""Helpers for bench/run.sh: the request body, a correctness check, CPU accounting, parsing wrk's
output into result records, and the final report. Standard library only (runs on the system
python3, outside the MLServer venv).

    tools.py body IMAGES OUT                 write the OIP v2 JSON body (first image, pixel/255)
    tools.py body-binary IMAGES OUT          the same request in the binary tensor data extension
                                             (input and output as raw FP32); prints the value of
                                             its Inference-Header-Content-Length
    tools.py grpc-body IMAGES OUT MODEL      the same request as a gRPC ModelInferRequest in
                                             protobuf JSON (ghz -D): FP32 raw_input_contents
    tools.py check URL MODEL BODY [record=RECORDS label=NAME] [images=N] [binary=HEADER_LENGTH]
                   [idn_x=VALUE...]
                                             POST BODY once; fail unless 200 and MODEL's reference
                                             probs (and, for services, the provenance parameters
                                             given; lists comma-separated); record= appends what
                                             the answer said to RECORDS (mode "check"); images=N
                                             also sends images 1..N-1 (same encoding) and checks
                                             each answer (probs and class) against the reference;
                                             binary= sends BODY in the binary extension
    tools.py cpu PID                         CPU snapshot (JSON): machine totals, PID's process tree
    tools.py record RECORDS OUT BEFORE AFTER key=value...
                                             parse one wrk or ghz run (OUT: its output with the
                                             WRK_RESULT or GHZ_RESULT line and GNU time's LOAD_CPU
                                             line), append a record; fail on any error;
                                             exit 3 (retry) when other processes took more than
                                             BENCH_MAX_OTHER cores, unless BENCH_FINAL_ATTEMPT=1
    tools.py quiet MAX_OTHER TIMEOUT         wait until the machine is idle (busy <= MAX_OTHER cores)
    tools.py idle-poll                       until killed, hold a PM QoS CPU latency request of 0 µs
                                             (/dev/cpu_dma_latency): idle CPUs poll, none halts
    tools.py report RECORDS OUT_JSON OUT_MD  machine info + records -> JSON, markdown table -> stdout
"""

import base64
import json
import os
import platform
import re
import struct
import subprocess
import sys
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def image_values(images, index=0):
    """Image INDEX as the model input: 784 f32 values pixel/255, as Python floats."""
    with open(images, "rb") as f:
        f.seek(784 * index)
        image = f.read(784)
    return [struct.unpack("<f", struct.pack("<f", p / 255.0))[0] for p in image]


def json_request(values):
    return {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": values}]}


def binary_request(values):
    """(body, header length) in the binary tensor data extension: the JSON header, then the
    input's raw little-endian FP32 bytes; the output is asked for as binary data too."""
    raw = struct.pack("<%df" % len(values), *values)
    header = {
        "inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": "probs", "parameters": {"binary_data": True}}],
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    return text + raw, len(text)


def body(images, out):
    # The same values the in-process bench feeds (f32 pixel/255); written as Python floats, the
    # way tritonclient or requests would send a numpy FP32 array converted with tolist().
    with open(out, "w") as f:
        json.dump(json_request(image_values(images)), f, separators=(",", ":"))


def body_binary(images, out):
    data, header_length = binary_request(image_values(images))
    with open(out, "wb") as f:
        f.write(data)
    print(header_length)


def grpc_request(values, model):
    """A ModelInferRequest in protobuf's JSON mapping (bytes fields base64), as ghz reads it."""
    raw = struct.pack("<%df" % len(values), *values)
    return {
        "model_name": model,
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 784]}],
        "raw_input_contents": [base64.b64encode(raw).decode()],
    }


def grpc_body(images, out, model):
    with open(out, "w") as f:
        json.dump(grpc_request(image_values(images), model), f, separators=(",", ":"))


def reference_probs(model, index=0):
    with open(os.path.join(ROOT, "examples/data/reference", f"{model}.probs.f32"), "rb") as f:
        f.seek(40 * index)
        return struct.unpack("<10f", f.read(40))


def post(url, payload, header_length=None):
    """POST one inference request; (status, answer JSON, probs)."""
    headers = {"Content-Type": "application/json"}
    if header_length is not None:
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(header_length)}
    request = urllib.request.Request(url, data=payload, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        status, raw = response.status, response.read()
        length = response.headers.get("Inference-Header-Content-Length")
    if length is None:
        answer, rest = json.loads(raw), b""
    else:
        answer, rest = json.loads(raw[: int(length)]), raw[int(length):]
    offset, probs = 0, None
    for o in answer["outputs"]:
        size = (o.get("parameters") or {}).get("binary_data_size")
        if o["name"] == "probs":
            probs = o["data"] if size is None else list(struct.unpack("<%df" % (size // 4), rest[offset:offset + size]))
        offset += size or 0
    if header_length is not None and length is None:
        sys.exit(f"check {url}: asked for binary output, the answer has no Inference-Header-Content-Length")
    return status, answer, probs


def argmax(values):
    return max(range(len(values)), key=lambda i: values[i])


def check(url, model, body_path, *pairs):
    """One request before the load: the server answers 200 with the reference probabilities and,
    for a service, the provenance (idn_* parameters) expected of it."""
    options = dict(p.split("=", 1) for p in pairs)
    records, label = options.pop("record", None), options.pop("label", None)
    images = int(options.pop("images", "1"))
    header_length = options.pop("binary", None)
    header_length = None if header_length is None else int(header_length)
    with open(body_path, "rb") as f:
        payload = f.read()
    status, answer, probs = post(url, payload, header_length)
    reference = reference_probs(model)
    worst = max(abs(a - b) for a, b in zip(probs, reference)) if probs else None
    if status != 200 or not probs or len(probs) != 10 or worst > 1e-4:
        sys.exit(f"check {url}: status {status}, probs {probs} differ from the reference by {worst}")
    # More images, each encoded as the body is: every answer's class and probabilities must be
    # the reference's (a server that answered one fixed image right could still be wrong).
    for index in range(1, images):
        values = image_values(os.path.join(ROOT, "examples/data/mnist-test-1000.images.u8"), index)
        if header_length is None:
            data = json.dumps(json_request(values), separators=(",", ":")).encode()
            got = post(url, data)[2]
        else:
            got = post(url, *binary_request(values))[2]
        want = reference_probs(model, index)
        diff = max(abs(a - b) for a, b in zip(got, want))
        if len(got) != 10 or argmax(got) != argmax(want) or diff > 1e-4:
            sys.exit(f"check {url}: image {index}: class {argmax(got)} (probs {got}), reference class "
                     f"{argmax(want)}, max diff {diff}")
        worst = max(worst, diff)
    params = answer.get("parameters") or {}
    for key, want in options.items():
        got = params.get(key)
        got_text = ",".join(map(str, got)) if isinstance(got, list) else str(got)
        if got_text.lower() != want.lower():
            sys.exit(f"check {url}: parameter {key} is {got!r}, expected {want}")
    provenance = {k: v for k, v in params.items() if k.startswith("idn_")}
    print(
        f"check {url}{' (binary)' if header_length is not None else ''}: 200, probs"
        + (f" and classes of {images} images" if images > 1 else "")
        + f" match the reference (max diff {worst:.1e})"
        + (f"; {json.dumps(provenance)}" if provenance else "")
    )
    if records:
        rec = {"system": "check", "mode": "check", "label": label, "url": url, "model": model,
               "images": images, "binary": header_length is not None, "max_diff": worst,
               "parameters": provenance}
        with open(records, "a") as f:
            f.write(json.dumps(rec) + "\n")


def descendants(pid):
    """PID and every process below it (MLServer's parallel workers are child processes)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    todo, found = [pid], []
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def process_label(pid):
    """A name for one server process: the config file's name for a node-agent (`-c X.yaml`),
    else the command name."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
    except OSError:
        return None
    for flag, value in zip(argv, argv[1:]):
        if flag in ("-c", "--config"):
            return os.path.splitext(os.path.basename(value))[0]
    return comm


def cpu(pid):
    """CPU seconds so far: the machine's busy and steal time (/proc/stat) and the server's, by
    thread name with digits folded (idn-infer-0, idn-infer-1 -> idn-infer-N) and by process
    (process_label: the cooperation bench runs several agents under one process group)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    threads, processes = {}, {}
    for p in descendants(pid):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        label = process_label(p)
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            name = re.sub(r"-\d+$", "-N", stat[stat.index("(") + 1 : stat.rindex(")")])
            rest = stat[stat.rindex(")") + 2 :].split()
            seconds = (int(rest[11]) + int(rest[12])) / TICK
            threads[name] = threads.get(name, 0) + seconds
            if label:
                processes[label] = processes.get(label, 0) + seconds
    snapshot = {
        "time": time.monotonic(),
        "busy": (user + nice + system + irq + softirq) / TICK,
        "steal": steal / TICK,
        "threads": threads,
        "processes": processes,
    }
    print(json.dumps(snapshot))


def ghz_result(g):
    """ghz's JSON report (nanoseconds) in the shape of the wrk script's WRK_RESULT."""
    codes = g.get("statusCodeDistribution") or {}
    latency = {d["percentage"]: d["latency"] for d in g.get("latencyDistribution") or []}
    return {
        "requests": g["count"],
        "duration_us": g["total"] / 1e3,
        "status_errors": sum(n for code, n in codes.items() if code != "OK"),
        # ghz counts every failed call in statusCodeDistribution too; errorDistribution says why
        "error_messages": g.get("errorDistribution") or {},
        "connect_errors": 0, "read_errors": 0, "write_errors": 0, "timeouts": 0,
        "p50_us": round(latency.get(50, 0) / 1e3),
        "p99_us": round(latency.get(99, 0) / 1e3),
        "mean_us": round(g["average"] / 1e3, 1),
        "max_us": round(g["slowest"] / 1e3),
    }


def record(records, out, before, after, *pairs):
    """Turns one load run into a record: wrk's (the WRK_RESULT line of bench/wrk/infer.lua) or
    ghz's (a GHZ_RESULT line holding its JSON report), and /usr/bin/time's LOAD_CPU line."""
    with open(out) as f:
        text = f.read()
    result = re.search(r"^WRK_RESULT (\{.*\})$", text, re.M)
    ghz = re.search(r"^GHZ_RESULT (\{.*\})$", text, re.M)
    times = re.search(r"^(?:LOAD|WRK)_CPU ([\d.]+) ([\d.]+)$", text, re.M)
    if result:
        w, loadgen = json.loads(result.group(1)), "wrk"
    elif ghz:
        w, loadgen = ghz_result(json.loads(ghz.group(1))), "ghz"
    else:
        sys.exit(f"no WRK_RESULT or GHZ_RESULT in the load generator's output:\n{text}")
    fields = dict(p.split("=", 1) for p in pairs)
    for key in ("concurrency", "threads", "connections", "parallel_workers", "hops", "round", "instances"):
        if key in fields:
            fields[key] = int(fields[key])
    rec = {
        **fields,
        "loadgen": loadgen,
        "requests": w["requests"],
        "errors": sum(w[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")),
        "error_detail": {k: w[k] for k in w if k.endswith("errors") or k in ("timeouts", "error_messages")},
        "seconds": w["duration_us"] / 1e6,
        "rps": w["requests"] / (w["duration_us"] / 1e6),
        "p50_us": w["p50_us"],
        "p99_us": w["p99_us"],
        "mean_us": w["mean_us"],
        "max_us": w["max_us"],
    }
    # Where the machine's CPU went during the run: the server (by thread), the load generator
    # (wrk or ghz; under the key "wrk" for both, as in earlier results), and anything else
    # (another user's compile on a shared machine shows up here), in cores.
    b, a = json.loads(before), json.loads(after)
    wall = a["time"] - b["time"]
    server = {k: round((v - b["threads"].get(k, 0)) / wall, 3) for k, v in a["threads"].items()}
    server = {k: v for k, v in server.items() if v > 0}
    wrk_cpu = (float(times.group(1)) + float(times.group(2))) / wall if times else None
    busy = (a["busy"] - b["busy"]) / wall
    processes = {
        k: round((v - b.get("processes", {}).get(k, 0)) / wall, 3) for k, v in a.get("processes", {}).items()
    }
    rec["cpu_cores"] = {
        "server": round(sum(server.values()), 3),
        "server_threads": server,
        "server_processes": {k: v for k, v in processes.items() if v > 0},
        "wrk": round(wrk_cpu, 3) if wrk_cpu is not None else None,
        "loadgen": loadgen,
        "machine_busy": round(busy, 3),
        "other": round(busy - sum(server.values()) - (wrk_cpu or 0), 3),
        "steal": round((a["steal"] - b["steal"]) / wall, 3),
    }
    max_other = float(os.environ.get("BENCH_MAX_OTHER", "0.3"))
    final = os.environ.get("BENCH_FINAL_ATTEMPT", "1") == "1"
    rec["attempts"] = int(os.environ.get("BENCH_ATTEMPT", "1"))
    rec["disturbed"] = rec["cpu_cores"]["other"] > max_other
    if rec["errors"]:
        print(json.dumps(rec))
        sys.exit(f"{loadgen} reported errors (non-2xx or non-OK answers, or socket errors): {rec['error_detail']}")
    if rec["disturbed"] and not final:
        print(f"  other processes used {rec['cpu_cores']['other']:.2f} cores meanwhile; measuring again")
        sys.exit(3)
    with open(records, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(
        f"  {rec['system']:9} {rec['model']:10}{' @' + rec['node'] if 'node' in rec else ''}"
        f"{' ' + rec['protocol'] if 'protocol' in rec else ''}{' ' + rec['config'] if 'config' in rec else ''}"
        f" {rec['mode']:10} {load_label(rec)}"
        f"{'' if 'parallel_workers' not in fields else ' workers=%d' % fields['parallel_workers']}:"
        f" {rec['rps']:9.0f} req/s  p50 {rec['p50_us']} us  p99 {rec['p99_us']} us"
        f"  (cpu: server {rec['cpu_cores']['server']}, {loadgen} {rec['cpu_cores']['wrk']}, other {rec['cpu_cores']['other']})"
        + (" DISTURBED" if rec["disturbed"] else "")
    )


def load_label(r):
    """How a run was loaded: `wrk -tT -cC` or `ghz --connections N -c C`."""
    if r.get("loadgen") == "ghz":
        return f"ghz --connections {r['connections']} -c {r['concurrency']}"
    return f"wrk -t{r['threads']} -c{r['connections']}"


def machine_busy():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:7]) - fields[3] - fields[4]) / TICK


def quiet(max_other, timeout):
    """Waits (at most TIMEOUT s) for 3 s in a row during which the machine was nearly idle."""
    deadline = time.monotonic() + float(timeout)
    while True:
        before, start = machine_busy(), time.monotonic()
        time.sleep(3)
        busy = (machine_busy() - before) / (time.monotonic() - start)
        if busy <= float(max_other):
            return
        if time.monotonic() > deadline:
            print(f"  the machine is still busy ({busy:.2f} cores used by other processes); going on", file=sys.stderr)
            return
        print(f"  waiting for other processes to finish ({busy:.2f} cores busy)", file=sys.stderr)


def idle_poll():
    """Holds /dev/cpu_dma_latency open with a request of 0 µs until killed: cpuidle may then use
    only states with no exit latency (POLL), so an idle vCPU spins instead of halting and a
    wake-up on it needs no interrupt through the hypervisor. The request ends with the process."""
    fd = os.open("/dev/cpu_dma_latency", os.O_WRONLY)
    os.write(fd, struct.pack("i", 0))
    while True:
        time.sleep(3600)


def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine():
    info = {}
    with open("/proc/cpuinfo") as f:
        models = re.findall(r"^model name\s*:\s*(.*)$", f.read(), re.M)
    info["cpu"] = models[0] if models else platform.processor()
    info["cores"] = os.cpu_count()
    with open("/proc/meminfo") as f:
        info["memory_gib"] = round(int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1)) / 2**20, 1)
    with open("/etc/os-release") as f:
        info["os"] = re.search(r'^PRETTY_NAME="?([^"\n]*)', f.read(), re.M).group(1)
    info["kernel"] = platform.release()
    info["rustc"] = run("rustc", "--version")
    info["wrk"] = (run("sh", "-c", "wrk -v 2>&1 | head -1") or "").split(" Copyright")[0]
    venv = os.path.join(ROOT, ".venv-bench/bin/python")
    info["mlserver"] = run(venv, "-c", "import mlserver; print(mlserver.__version__)")
    info["onnxruntime_python"] = run(venv, "-c", "import onnxruntime; print(onnxruntime.__version__)")
    info["python"] = run(venv, "--version")
    info["onnxruntime_library"] = "libonnxruntime.so.1.32.0 (.ort/, make ort)"
    triton_venv = os.path.join(ROOT, ".venv-triton/bin/python")
    versions = run(triton_venv, "-c", "import importlib.metadata as m; print(' '.join(m.version(p) for p in "
                   "('nvidia-pytriton', 'onnxruntime', 'tritonclient')))")
    if versions:
        pytriton, ort_version, tritonclient = versions.split()
        info["triton"] = f"Triton Inference Server 2.51.0 (nvidia-pytriton {pytriton}), {TRITON_NOTE}"
        info["triton_onnxruntime_python"] = ort_version
        info["tritonclient"] = tritonclient
    ghz = os.environ.get("BENCH_GHZ")
    if ghz:
        info["ghz"] = run(ghz, "--version")
    # The agent is built from the working tree: say which commit, and what differed from it.
    # As of run.sh's build (BENCH_IDN_*), else now.
    info["idn_commit"] = os.environ.get("BENCH_IDN_COMMIT") or run("git", "-C", ROOT, "rev-parse", "--short", "HEAD")
    changed = os.environ.get("BENCH_IDN_CHANGES")
    if changed is None:
        changed = run("git", "-C", ROOT, "status", "--porcelain", "--", "node-agent", "Cargo.lock", "Cargo.toml")
    info["idn_uncommitted_changes"] = changed.splitlines() if changed else []
    with open("/proc/loadavg") as f:
        info["loadavg_at_report"] = f.read().split()[:3]
    return info


SYSTEMS = [("inprocess", "in-process ORT"), ("idn", "idn node-agent"), ("mlserver", "MLServer 1.7.1")]


def us(value):
    """Microseconds for a table: one decimal below 100 (the in-process numbers), else whole."""
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


# Fields a record may lack, and what that means: runs before protocols were recorded were JSON.
DEFAULTS = {"protocol": "json"}


def best(records, **match):
    """The record with the highest throughput among those matching."""
    rows = [r for r in records if all(r.get(k, DEFAULTS.get(k)) == v for k, v in match.items())]
    return max(rows, key=lambda r: r["rps"]) if rows else None


def median(values):
    values = sorted(values)
    n = len(values)
    return None if n == 0 else (values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2)


def signed(value):
    return "-" if value is None else f"{value:+,.0f}"


# The link protocols of the cooperation chains (bench/run.sh, part 3), in report order.
COOP_LINKS = {"rest": "REST, binary tensors (binaryData: true)", "grpc": "gRPC (protocol: grpc)"}


def cooperation(records):
    """The "Cost of cooperation" tables: the forward chain (system "chain", by node) and the
    threshold services against the plain model (system "strategy", by model), each at
    concurrency 1 (median of the interleaved rounds) and at saturation (best setting)."""
    if not any(r["system"] in ("chain", "strategy") for r in records):
        return [], {}
    checks = {r["label"]: r["parameters"] for r in records if r["system"] == "check"}

    def c1(system, key, value):
        rows = sorted(
            (r for r in records if r["system"] == system and r.get(key) == value and r["mode"] == "c1"),
            key=lambda r: r.get("round", 0),
        )
        if not rows:
            return None
        return {
            "p50_us": median([r["p50_us"] for r in rows]),
            "p99_us": median([r["p99_us"] for r in rows]),
            "rps": median([r["rps"] for r in rows]),
            "rounds_p50_us": [r["p50_us"] for r in rows],
            "rounds_p99_us": [r["p99_us"] for r in rows],
            "disturbed": any(r.get("disturbed") for r in rows),
        }

    def saturation(system, key, value):
        r = best(records, system=system, mode="saturation", **{key: value})
        if r is None:
            return None
        c = r.get("cpu_cores") or {}
        return {
            "rps": r["rps"],
            "p50_us": r["p50_us"],
            "p99_us": r["p99_us"],
            "load": f"wrk -t{r['threads']} -c{r['connections']}",
            "cpu_cores": c.get("server"),
            "cpu_us_per_request": c["server"] / r["rps"] * 1e6 if c.get("server") and r["rps"] else None,
            "cpu_by_agent": {k: v for k, v in (c.get("server_processes") or {}).items() if k != "bash"},
            "wrk_cores": c.get("wrk"),
            "disturbed": bool(r.get("disturbed")),
        }

    def mark(x):
        return " ⚠" if x and x["disturbed"] else ""

    def lat(x):
        return "-" if x is None else f"{us(x['p50_us'])} / {us(x['p99_us'])}{mark(x)}"

    def rounds(x):
        return "-" if x is None else ", ".join(str(v) for v in x["rounds_p50_us"])

    def sat_cell(x):
        return "-" if x is None else f"{x['rps']:,.0f}{mark(x)}"

    def cpu_cell(x):
        return "-" if x is None or x["cpu_us_per_request"] is None else f"{x['cpu_us_per_request']:.0f}"

    def agents(x):
        if x is None:
            return "-"
        active = {k: v for k, v in x["cpu_by_agent"].items() if v >= 0.01}
        return ", ".join(f"{k} {v:.2f}" for k, v in sorted(active.items(), key=lambda kv: -kv[1])) or "-"

    summary, lines = {"chain": {}, "strategy": {}}, []
    # (node, hops, link protocol): the upstream answers both chains; each chain's relay and entry
    # forward over one link protocol (bench/run.sh, part 3).
    nodes = [("upstream", 0, None), ("relay", 1, "rest"), ("entry", 2, "rest"),
             ("relay-grpc", 1, "grpc"), ("entry-grpc", 2, "grpc")]
    chain = {n: (c1("chain", "node", n), saturation("chain", "node", n)) for n, _, _ in nodes}
    nodes = [(n, hops, link) for n, hops, link in nodes if any(chain[n])]
    links = [link for link in COOP_LINKS if any(link == l for _, _, l in nodes)]
    if nodes:
        lines += [
            "Cost of cooperation: forward chains entry -> relay -> upstream on loopback (delayMs 0), service "
            "`mnist`, answered by mnist-mlp at upstream; the links between agents over "
            + " and, in a second chain, over ".join(COOP_LINKS[link] for link in links)
            + ". The client is the same for every agent (wrk, REST with OIP JSON, the bench body): the chains "
            "differ only in the protocol of their links. Concurrency 1: median of the interleaved rounds; "
            "saturation: the best setting.",
            "",
            "| POST /v2/models/mnist/infer at | links | hops | c=1 p50 / p99 µs | c=1 p50 per round µs "
            "| saturation req/s | sat. p50 / p99 µs | load | agents' CPU µs per request | CPU by agent (cores) |",
            "|---|---|--:|--:|--:|--:|--:|---|--:|---|",
        ]
        for n, hops, link in nodes:
            a, b = chain[n]
            summary["chain"][n] = {"hops": hops, "link": link, "c1": a, "saturation": b}
            lines.append(
                f"| {n} | {'-' if link is None else COOP_LINKS[link]} | {hops} | {lat(a)} | {rounds(a)} | {sat_cell(b)} "
                f"| {lat(b)} | {'-' if b is None else b['load']} | {cpu_cell(b)} | {agents(b)} |"
            )

        def diff(x, y, key, n=1):
            return None if x is None or y is None or x.get(key) is None or y.get(key) is None else (x[key] - y[key]) / n

        def per_round(x, y, n):
            if x and y and len(x["rounds_p50_us"]) == len(y["rounds_p50_us"]):
                return [(a - b) / n for a, b in zip(x["rounds_p50_us"], y["rounds_p50_us"])]
            return []

        def own_cpu(x, agents):
            """CPU µs per request of the forwarding agents themselves, per agent."""
            if x is None or not x["rps"] or not all(a in x["cpu_by_agent"] for a in agents):
                return None
            return sum(x["cpu_by_agent"][a] for a in agents) / len(agents) / x["rps"] * 1e6

        def hop(x1, xs, n, agents):
            """What a forward hop adds: node x (n hops) against the upstream, divided by n."""
            return {
                "forwarder_cpu_us_per_request": own_cpu(xs, agents),
                "c1_p50_us": diff(x1, u1, "p50_us", n),
                "c1_p99_us": diff(x1, u1, "p99_us", n),
                "c1_p50_us_per_round": per_round(x1, u1, n),
                "cpu_us_per_request": diff(xs, us_, "cpu_us_per_request", n),
                "saturation_rps_ratio": xs["rps"] / us_["rps"] if xs and us_ else None,
            }

        def verdict(v):
            return "" if v is None else (" (met)" if v <= 100 else " (missed)")

        def ratio(v):
            return "-" if v is None else f"{v:.2f}×"

        u1, us_ = chain["upstream"]
        summary["per_hop"] = {}
        lines += [
            "",
            "| added per forward hop | links | c=1 p50 µs (target ≤ 100 over the emulated link delay, here 0) "
            "| per round | c=1 p99 µs | agents' CPU µs per request at saturation | of which the forwarding agent's own "
            "| saturation req/s vs upstream |",
            "|---|---|--:|--:|--:|--:|--:|--:|",
        ]
        for link in links:
            suffix = "" if link == "rest" else f"-{link}"
            relay, entry = f"relay{suffix}", f"entry{suffix}"
            (r1, rs), (e1, es) = chain.get(relay, (None, None)), chain.get(entry, (None, None))
            hop1, hop2 = hop(r1, rs, 1, [relay]), hop(e1, es, 2, [entry, relay])
            summary["per_hop"][link] = {f"{relay}_minus_upstream": hop1, f"{entry}_minus_upstream_over_2": hop2}
            for label, h, own, sat in (
                (f"1 hop: {relay} − upstream", hop1, f"({relay})", ""),
                (f"per hop of 2: ({entry} − upstream) / 2", hop2, f"({entry}, {relay}: mean)", " (2 hops)"),
            ):
                lines.append(
                    f"| {label} | {COOP_LINKS[link]} | {signed(h['c1_p50_us'])}{verdict(h['c1_p50_us'])} | "
                    f"{', '.join(signed(v) for v in h['c1_p50_us_per_round']) or '-'} | {signed(h['c1_p99_us'])} | "
                    f"{signed(h['cpu_us_per_request'])} | {signed(h['forwarder_cpu_us_per_request'])} {own} | "
                    f"{ratio(h['saturation_rps_ratio'])}{sat} |"
                )
        if len(links) > 1:
            a = summary["per_hop"]["rest"]["relay_minus_upstream"]["c1_p50_us"]
            b = summary["per_hop"]["grpc"]["relay-grpc_minus_upstream"]["c1_p50_us"]
            if a is not None and b is not None:
                lines += ["", f"One hop over a gRPC link against one over a REST binary link, c=1 p50: {signed(b - a)} µs "
                          "(same upstream, same client; the relay's link is the only difference)."]

    services = [
        ("mnist-mlp", "the plain model (no strategy)"),
        ("threshold-local", "tau 0: served locally, the strategy's own cost"),
        ("threshold-forward", "tau 1: local run, then forwarded to upstream"),
    ]
    strat = {m: (c1("strategy", "model", m), saturation("strategy", "model", m)) for m, _ in services}
    if any(a or b for a, b in strat.values()):
        base1, bases = strat["mnist-mlp"]
        lines += [
            "",
            "Cost of cooperation: threshold services against the plain model on one agent (edge, "
            "mnist-mlp; upstream on loopback, delayMs 0).",
            "",
            "| POST /v2/models/{name}/infer at edge | what it measures | answer (check) | c=1 p50 / p99 µs "
            "| c=1 p50 per round µs | p50 − plain µs | saturation req/s | vs plain | agents' CPU µs per request |",
            "|---|---|---|--:|--:|--:|--:|--:|--:|",
        ]
        for m, what in services:
            a, b = strat[m]
            p = checks.get(m) or {}
            if not p.get("idn_decision"):
                answer = "the model's output (no provenance)"
            else:
                answer = f"{p['idn_decision']}: answered by {p.get('idn_node')}, {p.get('idn_hops')} hop" + (
                    "" if p.get("idn_hops") == 1 else "s")
            d = None if a is None or base1 is None else a["p50_us"] - base1["p50_us"]
            r = None if b is None or bases is None else b["rps"] / bases["rps"]
            summary["strategy"][m] = {"c1": a, "saturation": b, "check": p, "c1_p50_minus_plain_us": d,
                                      "saturation_rps_vs_plain": r}
            lines.append(
                f"| {m} | {what} | {answer} | {lat(a)} | {rounds(a)} | {'-' if m == 'mnist-mlp' else signed(d)} | "
                f"{sat_cell(b)} | {'-' if m == 'mnist-mlp' or r is None else f'{r:.2f}×'} | {cpu_cell(b)} |"
            )
    return lines, summary


TRITON_NOTE = "Python backend around onnxruntime; the wheel has no ONNX Runtime backend"
PROTOCOLS = [
    ("json", "REST, OIP JSON"),
    ("binary", "REST, binary tensor data extension"),
    ("grpc", "gRPC, FP32 raw_input_contents"),
]


def summarize(r):
    """One measured run, as the report's JSON summary gives it."""
    if r is None:
        return None
    c = r.get("cpu_cores") or {}
    return {
        "rps": r["rps"],
        "p50_us": r["p50_us"],
        "p99_us": r["p99_us"],
        "load": load_label(r),
        "server_cores": c.get("server"),
        "server_cpu_us_per_request": c["server"] / r["rps"] * 1e6 if c.get("server") and r["rps"] else None,
        "loadgen_cores": c.get("wrk"),
        "disturbed": bool(r.get("disturbed")),
    }


# Triton with dynamic batching on against off at saturation, within which a difference is not
# read as a win or a loss: saturation throughput of the same code varies by ±10–15 % between runs
# on the 2-vCPU VM of docs/benchmarks.md.
BATCHING_NOISE = 0.15


def dynamic_batching(records, models, protocols):
    """Does server-side dynamic batching win at saturation? Triton with it on and off, and idn
    (which has none), per model and protocol; then one line per protocol for the CNN, the model
    on which the decision to build it in idn is to be taken."""
    lines = [
        "Dynamic batching at saturation: Triton with it off and on (best load setting each), and idn, which "
        f"does not batch ({TRITON_NOTE}). A ratio within ±{BATCHING_NOISE:.0%} is read as no difference "
        "(run-to-run spread of saturation throughput on this machine).",
        "",
        "| model | protocol | Triton off req/s | Triton on req/s | on ÷ off | idn req/s | idn ÷ Triton on |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    summary = {}

    def rate(r):
        return "-" if r is None else f"{r['rps']:,.0f}{' ⚠' if r.get('disturbed') else ''}"

    def times(x):
        return "-" if x is None else f"{x:.2f}×"

    for m in models:
        summary[m] = {}
        for p, plabel in protocols:
            off = best(records, system="triton", model=m, mode="saturation", protocol=p, batching="off")
            on = best(records, system="triton", model=m, mode="saturation", protocol=p, batching="on")
            idn = best(records, system="idn", model=m, mode="saturation", protocol=p)
            on_off = on["rps"] / off["rps"] if on and off else None
            idn_on = idn["rps"] / on["rps"] if idn and on else None
            summary[m][p] = {"triton_off_rps": off and off["rps"], "triton_on_rps": on and on["rps"],
                             "triton_on_over_off": on_off, "idn_rps": idn and idn["rps"], "idn_over_triton_on": idn_on}
            lines.append(f"| {m} | {plabel} | {rate(off)} | {rate(on)} | {times(on_off)} | {rate(idn)} | {times(idn_on)} |")

    def verdict(x):
        if x is None:
            return "not measured"
        if x > 1 + BATCHING_NOISE:
            return f"batching wins for Triton ({x:.2f}×)"
        if x < 1 - BATCHING_NOISE:
            return f"batching loses for Triton ({x:.2f}×)"
        return f"no difference beyond the noise ({x:.2f}×)"

    cnn = summary.get("mnist-cnn")
    if cnn:
        lines += ["", "**mnist-cnn at saturation, dynamic batching on ÷ off** (the criterion for building optional "
                  "server-side dynamic batching in idn: only if it wins on the CNN here):", ""]
        for p, plabel in protocols:
            x = cnn[p]
            idn_on = x["idn_over_triton_on"]
            lines.append(f"- {plabel}: {verdict(x['triton_on_over_off'])}; idn without batching: "
                         + ("not measured" if idn_on is None else f"{idn_on:.2f}× Triton with it"))
    return lines, summary


def peers(records, mls_workers):
    """The peers tables: idn, Triton (each dynamic batching setting) and MLServer per model and
    protocol; the floors (health endpoints over HTTP, ServerLive over gRPC); the ratios idn ÷
    Triton's best setting, and idn ÷ idn's own floor."""
    protocols = [(p, label) for p, label in PROTOCOLS
                 if any(r["system"] in ("idn", "triton") and r.get("protocol", "json") == p for r in records)]
    if not any(r["system"] in ("triton", "triton-floor") or r.get("protocol", "json") != "json" for r in records):
        return [], {}
    models = list(dict.fromkeys(r["model"] for r in records if r["system"] in ("idn", "triton") and r["model"] != "-"))
    batchings = list(dict.fromkeys(r["batching"] for r in records if r["system"] == "triton" and "batching" in r))

    def mark(r):
        return " ⚠" if r and r.get("disturbed") else ""

    def rps(r):
        return "-" if r is None else f"{r['rps']:,.0f}{mark(r)}"

    def lat(r):
        return "-" if r is None else f"{us(r['p50_us'])} / {us(r['p99_us'])}"

    def cpu(r):
        x = summarize(r)
        if x is None or x["server_cores"] is None:
            return "- | - | -"
        per = "-" if x["server_cpu_us_per_request"] is None else f"{x['server_cpu_us_per_request']:.0f}"
        gen = "-" if x["loadgen_cores"] is None else f"{x['loadgen_cores']:.2f}"
        return f"{x['server_cores']:.2f} | {per} | {gen}"

    lines = [
        "Peers per protocol: the same request (batch 1, the first MNIST test image) as OIP JSON, in the binary "
        "tensor data extension, and over gRPC. Triton 2.51 (nvidia-pytriton 0.7.0): "
        f"{TRITON_NOTE}. Saturation: the best load setting tried; CPU at saturation.",
        "",
        "| model | protocol | server | c=1 req/s | c=1 p50 / p99 µs | saturation req/s | sat. p50 / p99 µs | load "
        "| server cores | server CPU µs per request | load generator cores |",
        "|---|---|---|--:|--:|--:|--:|---|--:|--:|--:|",
    ]
    summary = {"triton_note": TRITON_NOTE, "models": {}, "floors": {}}
    for m in models:
        summary["models"][m] = {}
        for p, plabel in protocols:
            servers = [("idn", {}, "idn node-agent")]
            servers += [("triton", {"batching": b}, f"Triton, dynamic batching {b} ({TRITON_NOTE})") for b in batchings]
            if p == "json" and any(r["system"] == "mlserver" for r in records):
                servers.append(("mlserver", {"parallel_workers": mls_workers[m]} if m in mls_workers else {},
                                "MLServer 1.7.1"))
            entry = {"idn": {}, "triton": {}, "mlserver": {}}
            for system, match, label in servers:
                c1 = best(records, system=system, model=m, mode="c1", protocol=p, **match)
                sat = best(records, system=system, model=m, mode="saturation", protocol=p, **match)
                if c1 is None and sat is None:
                    continue
                value = {"c1": summarize(c1), "saturation": summarize(sat)}
                if system == "triton":
                    entry["triton"][match["batching"]] = value
                else:
                    entry[system] = value
                lines.append(f"| {m} | {plabel} | {label} | {rps(c1)} | {lat(c1)} | {rps(sat)} | {lat(sat)} | "
                             f"{'-' if sat is None else load_label(sat)} | {cpu(sat)} |")
            summary["models"][m][p] = entry

    floor_rows = [
        ("idn", "json", "idn GET /v2/health/live (HTTP)"),
        ("idn", "grpc", "idn gRPC ServerLive"),
        ("mlserver", "json", "MLServer 1.7.1 GET /v2/health/live (HTTP)"),
        ("triton", "json", f"Triton GET /v2/health/ready (HTTP) ({TRITON_NOTE})"),
        ("triton", "grpc", f"Triton gRPC ServerLive ({TRITON_NOTE})"),
    ]
    lines += [
        "",
        "Floors: a health call, no inference; what the server's request path costs on its own.",
        "",
        "| floor | c=1 req/s | c=1 p50 / p99 µs | saturation req/s | sat. p50 / p99 µs | load | server cores "
        "| server CPU µs per request | load generator cores |",
        "|---|--:|--:|--:|--:|---|--:|--:|--:|",
    ]
    floors = {}
    for system, p, label in floor_rows:
        match = {"parallel_workers": mls_workers[next(iter(mls_workers))]} if system == "mlserver" and mls_workers else {}
        c1 = best(records, system=f"{system}-floor", mode="c1", protocol=p, **match)
        sat = best(records, system=f"{system}-floor", mode="saturation", protocol=p, **match)
        if c1 is None and sat is None:
            continue
        floors[(system, p)] = sat
        summary["floors"][f"{system}-{'http' if p == 'json' else 'grpc'}"] = {
            "endpoint": (c1 or sat).get("endpoint"), "c1": summarize(c1), "saturation": summarize(sat)}
        lines.append(f"| {label} | {rps(c1)} | {lat(c1)} | {rps(sat)} | {lat(sat)} | "
                     f"{'-' if sat is None else load_label(sat)} | {cpu(sat)} |")

    def ratio(a, b):
        return None if a is None or b is None or not b["rps"] else a["rps"] / b["rps"]

    def times(x):
        return "-" if x is None else f"{x:.2f}×"

    http_floor, grpc_floor = floors.get(("idn", "json")), floors.get(("idn", "grpc"))
    lines += [
        "",
        f"Ratios at saturation (req/s ÷ req/s). Triton: its best dynamic batching setting per model and protocol "
        f"({TRITON_NOTE}). idn's floors: GET /v2/health/live and gRPC ServerLive at saturation.",
        "",
        "| model | protocol | idn req/s | Triton best req/s | Triton setting | idn ÷ Triton best "
        "| idn ÷ idn HTTP floor | idn ÷ idn gRPC floor |",
        "|---|---|--:|--:|---|--:|--:|--:|",
    ]
    for m in models:
        for p, plabel in protocols:
            idn = best(records, system="idn", model=m, mode="saturation", protocol=p)
            tri = best(records, system="triton", model=m, mode="saturation", protocol=p)
            entry = summary["models"][m][p]
            entry["triton_best_batching"] = tri["batching"] if tri else None
            entry["idn_over_triton_best"] = ratio(idn, tri)
            entry["idn_over_idn_http_floor"] = ratio(idn, http_floor)
            entry["idn_over_idn_grpc_floor"] = ratio(idn, grpc_floor) if p == "grpc" else None
            triton_cell = "-" if tri is None else f"{rps(tri)} ({TRITON_NOTE})"
            lines.append(
                f"| {m} | {plabel} | {rps(idn)} | {triton_cell} | {'-' if tri is None else 'dynamic batching ' + tri['batching']} "
                f"| {times(entry['idn_over_triton_best'])} | {times(entry['idn_over_idn_http_floor'])} "
                f"| {times(entry['idn_over_idn_grpc_floor']) if p == 'grpc' else '-'} |")
    if "on" in batchings and "off" in batchings:
        batching_lines, summary["batching"] = dynamic_batching(records, models, protocols)
        lines += [""] + batching_lines
    checks = [r for r in records if r["system"] == "check" and r.get("images")]
    if checks:
        lines += ["", "Checked before measuring (probabilities within 1e-4 of the reference and the same class, per "
                  "image): " + ", ".join(f"{r['label']} {r['images']} images" for r in checks) + "."]
    if not any(r["system"] == "idn" and r.get("protocol") == "grpc" for r in records):
        lines += ["", "idn over gRPC: not measured (the node-agent measured does not serve gRPC, or ghz was not available)."]
    return lines, summary


def c1_where(records, models):
    """Where idn's concurrency-1 time goes, from the interleaved rounds (mode c1-rounds): per model
    and protocol the floor (a health call, no inference), the inference, their difference per
    round (the server-side cost of inference at concurrency 1), and the difference to the
    in-process run; for JSON, that server-side cost split with the in-process breakdown."""
    rounds = [r for r in records if r.get("mode") == "c1-rounds" and r["system"] in ("idn", "idn-floor")]
    if not rounds:
        return [], {}

    def runs(system, protocol, model=None, idle="halt"):
        rows = [r for r in rounds if r["system"] == system and r.get("protocol") == protocol
                and r.get("idle", "halt") == idle and (model is None or r["model"] == model)]
        return {r["round"]: r for r in rows}

    def inprocess(system, m):
        r = best(records, system=system, model=m, mode="c1")
        return None if r is None else r["p50_us"]

    def cell(v):
        return "-" if v is None else us(v)

    def delta(v):
        return "-" if v is None else f"{v:+.1f}" if abs(v) < 100 else f"{v:+,.0f}"

    labels = {"json": ("REST, OIP JSON", "GET /v2/health/live"), "binary": ("REST, binary tensors", "GET /v2/health/live"),
              "grpc": ("gRPC", "ServerLive")}
    n = max(r["round"] for r in rounds)
    lines = [
        f"Concurrency 1, where the time goes (idn, p50 µs, median of {n} interleaved round(s): in each round the "
        "floors and every model and protocol, one after the other). The floor is a health call without inference "
        "(the round trip through the kernel, the load generator and the server's protocol stack, wake-ups included); "
        "infer − floor is what inference adds on the server at concurrency 1, taken round by round.",
        "",
        "Idle vCPUs: `halt` is the machine as it is (cpuidle halts an idle vCPU; waking it is an interrupt "
        "through the hypervisor); `poll` is the same round with a PM QoS request of 0 µs held "
        "(/dev/cpu_dma_latency), so that idle vCPUs spin and a wake-up finds them running.",
        "",
        "| model | protocol | idle vCPUs | floor p50 | infer p50 | infer − floor (server-side) | per round | in-process run "
        "| infer − in-process run (target ≤ 50 µs, mnist-mlp) | floor − in-process run |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    idles = list(dict.fromkeys(r.get("idle", "halt") for r in rounds))
    summary, notes = {}, []
    for m in models:
        run = inprocess("inprocess", m)
        summary[m] = {}
        for p, idle in ((p, idle) for p in ("json", "binary", "grpc") for idle in idles):
            infer = runs("idn", p, m, idle)
            floor = runs("idn-floor", "grpc" if p == "grpc" else "json", None, idle)
            if not infer:
                continue
            paired = [infer[k]["p50_us"] - floor[k]["p50_us"] for k in sorted(infer) if k in floor]
            f50 = median([r["p50_us"] for r in floor.values()])
            i50 = median([r["p50_us"] for r in infer.values()])
            server = median(paired)
            over = None if run is None else i50 - run
            key = p if idle == "halt" else f"{p}-idle-poll"
            summary[m][key] = {"floor_p50_us": f50, "infer_p50_us": i50, "infer_minus_floor_us": server,
                             "infer_minus_floor_per_round_us": paired, "inprocess_run_p50_us": run,
                             "infer_minus_inprocess_us": over,
                             "disturbed": any(r.get("disturbed") for r in list(infer.values()) + list(floor.values()))}
            verdict = "" if over is None or m != "mnist-mlp" else (" (met)" if over <= 50 else " (missed)")
            lines.append(
                f"| {m} | {labels[p][0]} | {idle} | {cell(f50)} ({labels[p][1]}) | {cell(i50)}{' ⚠' if summary[m][key]['disturbed'] else ''} "
                f"| {delta(server)} | {', '.join(delta(v) for v in paired) or '-'} | {cell(run)} "
                f"| {delta(over)}{verdict} | {delta(None if run is None or f50 is None else f50 - run)} |")
        codec, pool, x = inprocess("inprocess-codec", m), inprocess("inprocess-pool", m), summary[m].get("json")
        if x and x["infer_minus_floor_us"] is not None and None not in (run, codec, pool):
            rest = x["infer_minus_floor_us"] - (codec - run) - (pool - run) - run
            notes.append(
                f"- {m}, OIP JSON: {us(x['infer_p50_us'])} µs = the floor {us(x['floor_p50_us'])} + "
                f"{x['infer_minus_floor_us']:,.1f} µs server-side, of which in-process measures the model run "
                f"{run:.1f}, JSON decode, check and encode {codec - run:.1f}, the hand-off to an inference thread and "
                f"back {pool - run:.1f}, leaving {rest:+,.1f} µs that the in-process steps do not account for (a "
                "4.9 KB body instead of none on the socket, hyper's body handling, the extra wake-up of the "
                "inference thread over HTTP). Against in-process: "
                f"{x['infer_minus_inprocess_us']:,.1f} µs, of which the floor is {x['floor_p50_us'] - run:,.1f}.")
            x["server_side_split_us"] = {"run": run, "codec": codec - run, "handoff": pool - run, "unaccounted": rest}
        y = summary[m].get("json-idle-poll")
        if x and y and None not in (x["floor_p50_us"], y["floor_p50_us"], x["infer_p50_us"], y["infer_p50_us"]):
            notes.append(
                f"- {m}, OIP JSON, idle vCPUs polling instead of halting: floor {us(y['floor_p50_us'])} µs "
                f"({y['floor_p50_us'] - x['floor_p50_us']:+,.1f}), infer {us(y['infer_p50_us'])} µs "
                f"({y['infer_p50_us'] - x['infer_p50_us']:+,.1f}) against halting. On a quiet machine the difference is what "
                "waking halted vCPUs costs a request at concurrency 1; with other load the vCPUs seldom halt and "
                "it shrinks to noise.")
    if notes:
        lines += [""] + notes

    # The same difference for every server, from the single concurrency-1 runs (not interleaved:
    # read with the placement noise in mind).
    servers = [("idn", {}, "idn", "json"), ("idn", {}, "idn", "binary"), ("idn", {}, "idn", "grpc")]
    servers += [("triton", {"batching": b}, f"Triton, batching {b}", p)
                for b in dict.fromkeys(r["batching"] for r in records if r["system"] == "triton" and "batching" in r)
                for p in ("json", "binary", "grpc")]
    servers += [("mlserver", {}, "MLServer 1.7.1", "json")]
    rows = []
    for m in models:
        for system, match, label, p in servers:
            infer = best(records, system=system, model=m, mode="c1", protocol=p, **match)
            floor = best(records, system=f"{system}-floor", mode="c1", protocol="grpc" if p == "grpc" else "json")
            if infer is None or floor is None:
                continue
            rows.append(f"| {m} | {label} | {labels[p][0]} | {us(floor['p50_us'])} ({floor.get('endpoint', '-')}) "
                        f"| {us(infer['p50_us'])} | {delta(infer['p50_us'] - floor['p50_us'])} |")
    if rows:
        lines += ["", "Concurrency 1, infer − floor for every server (p50 µs, from the single concurrency-1 runs, "
                  "not interleaved; Triton's floor is measured once, with the first batching setting; " + TRITON_NOTE + "):",
                  "", "| model | server | protocol | floor p50 | infer p50 | infer − floor |", "|---|---|---|--:|--:|--:|"]
        lines += rows
    return lines, summary


def report(records_path, out_json, out_md):
    with open(records_path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    models = list(dict.fromkeys(r["model"] for r in records if r["system"] == "idn" and r["model"] != "-"))
    # MLServer: the parallel_workers setting with the best saturation throughput, per model; its
    # concurrency-1 numbers are taken with the same setting.
    mls_workers = {}
    for m in models:
        b = best(records, system="mlserver", model=m, mode="saturation", protocol="json")
        if b:
            mls_workers[m] = b["parallel_workers"]
    table = {}
    for m in models:
        for mode in ("c1", "saturation"):
            for system, _ in SYSTEMS:
                match = {"system": system, "model": m, "mode": mode}
                if system != "inprocess":
                    match["protocol"] = "json"
                if system == "mlserver" and m in mls_workers:
                    match["parallel_workers"] = mls_workers[m]
                table[(m, mode, system)] = best(records, **match)

    def setup(r):
        if r is None:
            return "-"
        if r["system"] == "inprocess":
            return f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}"
        s = load_label(r)
        s += f", workers={r['parallel_workers']}" if "parallel_workers" in r else ""
        s += f", batching {r['batching']}" if "batching" in r else ""
        return s + (f", {r['protocol']}" if r.get("protocol", "json") != "json" else "")

    def cell(r):
        if r is None:
            return "- | - | -"
        mark = " ⚠" if r.get("disturbed") else ""
        return f"{r['rps']:,.0f}{mark} | {us(r['p50_us'])} | {us(r['p99_us'])}"

    lines = [
        "| model | concurrency | in-process ORT req/s | p50 µs | p99 µs | idn req/s | p50 µs | p99 µs | MLServer req/s | p50 µs | p99 µs |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for m in models:
        for mode in ("c1", "saturation"):
            row = [table[(m, mode, s)] for s, _ in SYSTEMS]
            label = "1" if mode == "c1" else "saturation"
            lines.append(f"| {m} | {label} | " + " | ".join(cell(r) for r in row) + " |")
    lines += ["", "Load per cell (saturation: the best of the connection counts tried):", ""]
    lines += ["| model | concurrency | in-process ORT | idn | MLServer |", "|---|---|---|---|---|"]
    for m in models:
        for mode in ("c1", "saturation"):
            label = "1" if mode == "c1" else "saturation"
            lines.append(f"| {m} | {label} | " + " | ".join(setup(table[(m, mode, s)]) for s, _ in SYSTEMS) + " |")

    lines += ["", "| model | idn / MLServer req/s at saturation (target ≥ 10×) | idn p50 − in-process p50 at concurrency 1 (target ≤ 50 µs, tier-2) |", "|---|--:|--:|"]
    summary = {}
    for m in models:
        idn_s, mls_s = table[(m, "saturation", "idn")], table[(m, "saturation", "mlserver")]
        idn_1, ort_1 = table[(m, "c1", "idn")], table[(m, "c1", "inprocess")]
        ratio = idn_s["rps"] / mls_s["rps"] if idn_s and mls_s else None
        delta = idn_1["p50_us"] - ort_1["p50_us"] if idn_1 and ort_1 else None
        summary[m] = {"throughput_ratio_vs_mlserver": ratio, "p50_minus_inprocess_us": delta}
        verdict_r = "" if ratio is None else (" (met)" if ratio >= 10 else " (missed)")
        verdict_d = "" if delta is None or m != "mnist-mlp" else (" (met)" if delta <= 50 else " (missed)")
        lines.append(
            f"| {m} | {'-' if ratio is None else f'{ratio:.1f}×'}{verdict_r} | {'-' if delta is None else f'{delta:.1f} µs'}{verdict_d} |"
        )

    # Concurrency-1 breakdown of the idn request path (p50): the model alone, plus JSON codec,
    # plus the pool hand-off, then over HTTP; the HTTP floor is GET /v2/health/live.
    breakdown = [
        ("inprocess", "runtime::run alone (in-process)"),
        ("inprocess-codec", "decode JSON + check + run + encode JSON, one thread (in-process)"),
        ("inprocess-pool", "run through the agent's InferencePool: hand-off to a worker thread and back (in-process)"),
        ("idn-floor", "idn GET /v2/health/live over HTTP (no inference: the HTTP floor)"),
        ("idn", "idn POST /v2/models/{m}/infer over HTTP"),
        ("mlserver-floor", "MLServer GET /v2/health/live over HTTP"),
        ("mlserver", "MLServer POST /v2/models/{m}/infer over HTTP"),
    ]
    lines += ["", "Concurrency-1 breakdown (p50 / p99 µs):", "", "| step | " + " | ".join(models) + " |", "|---|" + "--:|" * len(models)]
    for system, label in breakdown:
        cells = []
        for m in models:
            match = {"system": system, "mode": "c1", "protocol": "json"}
            if not system.endswith("floor"):
                match["model"] = m
            if system.startswith("mlserver") and m in mls_workers:
                match["parallel_workers"] = mls_workers[m]
            r = best(records, **match)
            cells.append("-" if r is None else f"{us(r['p50_us'])} / {us(r['p99_us'])}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    c1_lines, summary_c1 = c1_where(records, models)
    if c1_lines:
        lines += [""] + c1_lines
        summary["c1_where_the_time_goes"] = summary_c1

    cpu_rows = [r for r in records if r.get("cpu_cores") and r["mode"] == "saturation"]
    if cpu_rows:
        lines += ["", "CPU during the reported saturation runs (cores busy, of %d):" % os.cpu_count(), ""]
        lines += ["| system | model | server | server threads | wrk | other processes | steal |", "|---|---|--:|---|--:|--:|--:|"]
        for m in models:
            for system in ("idn", "mlserver"):
                r = table[(m, "saturation", system)]
                if r and r.get("cpu_cores"):
                    c = r["cpu_cores"]
                    threads = ", ".join(f"{k} {v:.2f}" for k, v in sorted(c["server_threads"].items(), key=lambda kv: -kv[1]) if v >= 0.01)
                    lines.append(f"| {system} | {m} | {c['server']:.2f} | {threads} | {c['wrk']:.2f} | {c['other']:.2f} | {c['steal']:.2f} |")

    disturbed = [r for r in records if r.get("disturbed")]
    lines += [""]
    if disturbed:
        lines.append(
            f"⚠ {len(disturbed)} run(s) stayed disturbed by other processes after retries (more than "
            f"{os.environ.get('BENCH_MAX_OTHER', '0.3')} cores busy outside the bench): "
            + ", ".join(
                f"{r['system']} {r['model']} "
                + (f"at {r['node']} " if "node" in r else "")
                + (f"round {r['round']} " if "round" in r else "")
                + ("c1" if r["mode"] == "c1" else f"{r['mode']} ({setup(r)})")
                for r in disturbed
            )
        )
    else:
        lines.append("No run was disturbed by other processes (each used the machine alone, within the retry threshold).")
    retried = sum(1 for r in records if r.get("attempts", 1) > 1)
    if retried:
        lines.append(f"{retried} run(s) were repeated because other processes were busy during the first try.")

    peer_lines, peer_summary = peers(records, mls_workers)
    if peer_lines:
        lines += [""] + peer_lines
        summary["peers"] = peer_summary

    coop_lines, coop_summary = cooperation(records)
    if coop_lines:
        lines += [""] + coop_lines
        summary["cooperation"] = coop_summary

    markdown = "\n".join(lines)
    doc = {
        "machine": machine(),
        "mlserver_parallel_workers": mls_workers,
        "summary": summary,
        "records": records,
    }
    with open(out_json, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    with open(out_md, "w") as f:
        f.write(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    commands = {
        "body": body,
        "body-binary": body_binary,
        "grpc-body": grpc_body,
        "check": check,
        "cpu": lambda pid: cpu(int(pid)),
        "record": record,
        "quiet": quiet,
        "idle-poll": idle_poll,
        "report": report,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
