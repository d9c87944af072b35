"""Monitoring with the tools people run: a real Prometheus scrapes a running node-agent and the
operator (static targets on loopback) and evaluates the chart's rules; `promtool check metrics`
accepts both /metrics; the rules pass `promtool check rules` and their unit tests."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
import urllib.request

import pytest

from kube import REPO, Kube, _child_setup, free_port, start_operator, stop, wait_for

sys.path.insert(0, str(REPO / "tests" / "cluster"))
from services import Prometheus  # noqa: E402

RULES = REPO / "charts" / "idn-operator" / "rules" / "idn.rules.yaml"
AGENT = REPO / "target" / "debug" / "idn-node-agent"


def promtool(tools, *args: str, input: str | None = None) -> str:
    done = subprocess.run([str(tools["promtool"]), *args], input=input, capture_output=True, text=True,
                          timeout=60, cwd=REPO / "tests" / "prometheus")
    assert done.returncode == 0, f"promtool {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def test_the_rules_pass_promtool_check_and_their_unit_tests(tools):
    assert "SUCCESS" in promtool(tools, "check", "rules", str(RULES))
    assert "SUCCESS" in promtool(tools, "test", "rules", "idn.rules.test.yaml")


@pytest.fixture(scope="module")
def targets(admin, operator_binary, operator_kubeconfig, tmp_path_factory):
    """A node-agent on the example models and the operator, each on a free loopback port."""
    work = tmp_path_factory.mktemp("scrape")
    kube = Kube(admin.kubeconfig, f"idn-metrics-{secrets.token_hex(3)}")
    kube.create_namespace()
    agent_port = free_port()
    with open(work / "agent.log", "w") as log:
        agent = subprocess.Popen([str(AGENT), "-c", str(REPO / "examples" / "node-agent" / "mnist.yaml"),
                                  "--listen", f"127.0.0.1:{agent_port}", "--log-level", "warn"],
                                 stdout=subprocess.DEVNULL, stderr=log, cwd=REPO, preexec_fn=_child_setup)
    kube.log = work / "operator.log"
    kube.process = start_operator(operator_binary, operator_kubeconfig, kube.log,
                                  "--watch-namespace", kube.namespace, "--no-leader-election")
    try:
        operator_addr = wait_for(
            "the operator's metrics address",
            lambda: (m := re.search(r"addr=(127\.0\.0\.1:\d+)", kube.log.read_text())) and m.group(1), kube)
        wait_for("the node-agent", lambda: answers(f"http://127.0.0.1:{agent_port}/v2/health/ready"), kube)
        # One inference, so that the request series exist.
        body = b'{"inputs":[{"name":"input","shape":[1,784],"datatype":"FP32","data":[' + b",".join([b"0"] * 784) + b"]}]}"
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{agent_port}/v2/models/mnist-mlp/infer",
                                                      data=body, method="POST"), timeout=5)
        yield {"agent": f"127.0.0.1:{agent_port}", "operator": operator_addr, "work": work}
    finally:
        stop(agent)
        stop(kube.process)
        kube.run("delete", "namespace", kube.namespace, "--wait=false", check=False, namespaced=False)


def answers(url: str) -> bool:
    """Whether `url` answers 200 yet (an agent still loading its models refuses connections)."""
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False


def test_promtool_accepts_both_metrics_endpoints(tools, targets):
    for name in ("agent", "operator"):
        text = urllib.request.urlopen(f"http://{targets[name]}/metrics", timeout=5).read().decode()
        promtool(tools, "check", "metrics", input=text)


def test_prometheus_scrapes_both_and_loads_the_rules(tools, targets):
    rules = targets["work"] / "idn.rules.yaml"
    rules.write_text(RULES.read_text())
    config = f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [{rules}]
scrape_configs:
  - job_name: node-agent
    static_configs: [{{targets: ["{targets['agent']}"]}}]
  - job_name: operator
    static_configs: [{{targets: ["{targets['operator']}"]}}]
"""
    with Prometheus(targets["work"], config=config) as prometheus:
        deadline = time.monotonic() + 60
        while True:
            active = prometheus.api("/api/v1/targets")["data"]["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in active}
            if health == {"node-agent": "up", "operator": "up"}:
                break
            assert time.monotonic() < deadline, f"targets not up: {active}"
            time.sleep(0.5)
        ready = prometheus.query('idn_model_ready{job="node-agent"}')["result"]
        assert {r["metric"]["model"] for r in ready} == {"mnist-linear", "mnist-mlp", "mnist-cnn"}
        assert all(r["value"][1] == "1" for r in ready)
        requests = prometheus.query('idn_requests_total{job="node-agent",model="mnist-mlp",status="200"}')
        assert requests["result"] and requests["result"][0]["value"][1] == "1", requests
        assert prometheus.query('idn_operator_leader{job="operator"}')["result"], "no operator series"
        groups = prometheus.api("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) == 8 and all(r["health"] in ("ok", "unknown") for r in rules), rules
