"""Distributed traces: the three-node cascade of examples/node-agent/cascade (access -> edge ->
cloud) exports its spans over OTLP to a real Jaeger v2, read back through Jaeger's query API;
and without OTEL_* settings the agents export nothing.

The node-agent binary is the one `cargo build --workspace --bins` leaves in target/debug.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AGENT = Path(os.environ.get("IDN_NODE_AGENT", ROOT / "target/debug/idn-node-agent"))
CASCADE = ROOT / "examples/node-agent/cascade"
DATA = ROOT / "examples/data"
TIERS = ["cloud", "edge", "access"]  # started upstream first
# MNIST test image 18: below the cascade's tau (0.9) on the access and the edge models, so
# both forward it and the cloud answers.
UNSURE_IMAGE = 18

sys.path.insert(0, str(ROOT / "tests/cluster"))
from cluster import free_port  # noqa: E402
from services import Jaeger  # noqa: E402


def configs(workdir: Path) -> dict[str, Path]:
    """The example configs on free ports, upstreams pointing at the next tier's port."""
    ports = {tier: free_port() for tier in TIERS}
    paths = {}
    for tier in TIERS:
        config = yaml.safe_load((CASCADE / f"{tier}.yaml").read_text())
        config["listen"] = f"127.0.0.1:{ports[tier]}"
        for model in config["models"]:
            model["path"] = str((CASCADE / model["path"]).resolve())
        for upstream in config.get("upstreams", []):
            upstream["url"] = f"http://127.0.0.1:{ports[upstream['name'].split('-')[0]]}"
        paths[tier] = workdir / f"{tier}.yaml"
        paths[tier].write_text(yaml.safe_dump(config))
    return paths


class Cascade:
    """The three agents, each with `env` (the OTEL_* variables of this process removed)."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.paths = configs(workdir)
        base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        self.agents = {}
        for tier in TIERS:
            log = open(workdir / f"{tier}.log", "wb")
            self.agents[tier] = subprocess.Popen(
                [AGENT, "--config", self.paths[tier]], stdout=log, stderr=subprocess.STDOUT,
                env={**base, **env},
            )
            self.wait_ready(tier)
        self.access = yaml.safe_load(self.paths["access"].read_text())["listen"]

    def wait_ready(self, tier):
        listen = yaml.safe_load(self.paths[tier].read_text())["listen"]
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{listen}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.agents[tier].poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{tier} agent did not become ready")
            time.sleep(0.05)

    def infer(self, headers=None) -> dict:
        """Asks the access node's service for the unsure image."""
        images = np.fromfile(DATA / "mnist-test-1000.images.u8", dtype=np.uint8).reshape(-1, 784)
        pixels = (images[UNSURE_IMAGE].astype(np.float32) / np.float32(255)).tolist()
        body = {"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": pixels}]}
        request = urllib.request.Request(
            f"http://{self.access}/v2/models/mnist/infer", json.dumps(body).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.load(r)

    def stop(self):
        """SIGTERM, as Kubernetes stops a pod: each agent flushes its spans on the way out."""
        for agent in self.agents.values():
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
        for tier, agent in self.agents.items():
            assert agent.wait(timeout=30) == 0, f"{tier} agent did not stop cleanly"


def tag(span, key):
    return next((t["value"] for t in span["tags"] if t["key"] == key), None)


def trace_spans(jaeger, trace_id, expected, timeout=30):
    """The spans of trace `trace_id` once `expected` of them arrived (Jaeger batches too)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            traces = jaeger.api(f"/api/traces/{trace_id}")["data"]
        except OSError:  # 404 until the first span arrives
            traces = []
        spans = traces[0]["spans"] if traces else []
        if len(spans) >= expected or time.monotonic() > deadline:
            processes = traces[0]["processes"] if traces else {}
            return [{**s, "service": processes[s["processID"]]["serviceName"]} for s in spans]
        time.sleep(0.25)


def parent(span):
    refs = [r for r in span["references"] if r["refType"] == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None


def assert_chain(spans, root_parent):
    """One server span per node and one client span per forward, each the parent of the next:
    access.infer -> access.upstream -> edge.infer -> edge.upstream -> cloud.infer."""
    infer = {tag(s, "node"): s for s in spans if s["operationName"] == "infer"}
    assert sorted(infer) == ["access-0", "cloud-0", "edge-0"], spans
    upstream = {tag(s, "upstream"): s for s in spans if s["operationName"] == "upstream"}
    assert sorted(upstream) == ["cloud-0", "edge-0"], spans
    assert len(spans) == 5, [s["operationName"] for s in spans]
    assert {s["service"] for s in spans} == {"idn-node-agent"}
    assert parent(infer["access-0"]) == root_parent
    assert parent(upstream["edge-0"]) == infer["access-0"]["spanID"]
    assert parent(infer["edge-0"]) == upstream["edge-0"]["spanID"]
    assert parent(upstream["cloud-0"]) == infer["edge-0"]["spanID"]
    assert parent(infer["cloud-0"]) == upstream["cloud-0"]["spanID"]
    # What each node did, summarized on its span.
    access = infer["access-0"]
    assert (tag(access, "model"), tag(access, "protocol"), tag(access, "status")) == ("mnist", "rest", 200)
    assert (tag(access, "batch_size"), tag(access, "answered_by")) == (1, "cloud-0")
    assert tag(access, "decision") == "forwarded"
    assert tag(infer["cloud-0"], "decision") == "served"
    assert 0 < tag(infer["cloud-0"], "confidence") <= 1
    assert tag(access, "span.kind") == "server"
    for call in upstream.values():
        assert (tag(call, "service"), tag(call, "outcome"), tag(call, "span.kind")) == ("mnist", "ok", "client")


def test_a_forwarded_request_is_one_trace_across_the_three_nodes(tmp_path):
    with Jaeger(tmp_path / "jaeger") as jaeger:
        cascade = Cascade(tmp_path, {
            "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_http,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        })
        try:
            # A caller that traces: its span is the access node's parent.
            caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
            answer = cascade.infer({"traceparent": f"00-{caller_trace}-{caller_span}-01"})
            assert answer["parameters"]["idn_path"] == ["access-0", "edge-0", "cloud-0"]
            # A caller that does not: the access node starts the trace.
            cascade.infer()
        finally:
            cascade.stop()
        assert_chain(trace_spans(jaeger, caller_trace, 5), caller_span)

        listed = jaeger.api("/api/traces", service="idn-node-agent", limit=20)["data"]
        started = [t["traceID"] for t in listed if t["traceID"] != caller_trace]
        assert len(started) == 1, listed
        assert_chain(trace_spans(jaeger, started[0], 5), None)


def test_without_otel_settings_nothing_is_exported(tmp_path):
    # An exporter configured by default would send to the OTLP/HTTP default, localhost:4318.
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 4318))
    except OSError:
        pytest.skip("127.0.0.1:4318 is in use")
    listener.listen(8)
    listener.setblocking(False)
    with listener:
        cascade = Cascade(tmp_path, {})
        try:
            answer = cascade.infer({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
            assert answer["parameters"]["idn_path"] == ["access-0", "edge-0", "cloud-0"]
        finally:
            cascade.stop()
        # The agents have exited, after flushing whatever they had to send.
        with pytest.raises(BlockingIOError):
            listener.accept()
