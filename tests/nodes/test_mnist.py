"""The example network on real nodes: the operator from the chart, `kubectl apply -f
examples/mnist/`, and MNIST answered by the node-agent pods the operator deployed, through a
rollout and through the loss of a pod."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest
import dashboard
from conftest import IDN, RELEASE, REPO, replay, serving
from kube import NETWORK, STRATEGY, condition, wait_for
from services import Prometheus

pytestmark = pytest.mark.incremental

# What `make run` measures for the declared cascade on the same 1000 images (README): the
# strategies are deterministic, so the cluster must answer exactly the same.
MAKE_RUN = {"accuracy": 0.985, "access": 0.472, "edge": 0.482, "cloud": 0.046}


def get_json(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def service_url(kube, node: str) -> str:
    url = f"http://{kube.get('service', f'mnist-{node}')['spec']['clusterIP']}:8000"
    serving(kube, url)
    return url


def test_operator_runs_from_the_chart(operator, cluster):
    """helm install: the operator's own image runs as a pod under the chart's ServiceAccount,
    passes its probes and takes the Lease."""
    pods = operator.items("pods", "-l", "app.kubernetes.io/name=idn-operator")
    assert len(pods) == 1
    pod = pods[0]
    assert pod["spec"]["nodeName"] in cluster.real_node_names
    assert pod["spec"]["serviceAccountName"] == RELEASE
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])
    lease = wait_for("the operator to hold its Lease",
                     lambda: (operator.get("leases.coordination.k8s.io", RELEASE) or {}).get("spec", {}).get("holderIdentity"),
                     operator)
    assert lease == pod["metadata"]["name"]


def test_example_network_goes_ready(kube, cluster, operator):
    """kubectl apply -f examples/mnist/: three node-agent pods on real nodes, each serving the
    model whose sha256 the InferenceModel declares, and the network Ready."""
    kube.run("apply", "-f", str(REPO / "examples" / "mnist"))
    wait_for("network mnist Ready", lambda: condition(kube.get(NETWORK, "mnist"), "Ready").get("status") == "True",
             kube, timeout=240)
    declared = {m["metadata"]["name"]: m["spec"]["source"]["sha256"] for m in kube.items("inferencemodels.idn.dev")}
    pods = kube.items("pods", "-l", "idn.dev/network=mnist")
    assert sorted(p["metadata"]["labels"]["idn.dev/node"] for p in pods) == ["access", "cloud", "cloud", "edge"]
    for pod in pods:
        assert pod["spec"]["nodeName"] in cluster.real_node_names
        assert pod["status"]["phase"] == "Running"
        model = {"access": "mnist-linear", "edge": "mnist-mlp", "cloud": "mnist-cnn"}[pod["metadata"]["labels"]["idn.dev/node"]]
        meta = get_json(f"http://{pod['status']['podIP']}:8000/v2/models/{model}")
        assert meta["parameters"]["sha256"] == declared[model], (pod["metadata"]["name"], meta)


def test_replay_answers_as_make_run(kube):
    """idn replay from the host into the access node's Service: the answers of `make run`."""
    summary = replay(service_url(kube, "access"), "--concurrency", "4")
    assert summary["errors"] == 0, summary
    assert summary["accuracy"] == pytest.approx(MAKE_RUN["accuracy"], abs=1e-9), summary
    shares = summary["answeredBy"]
    for node in ("access", "edge", "cloud"):
        assert shares[node] == pytest.approx(MAKE_RUN[node], abs=1e-9), summary


class Replay:
    """`idn replay` at a steady rate in the background, for what happens while it runs."""

    def __init__(self, url: str, *, rate: int, repeat: int):
        self.process = subprocess.Popen(
            [str(IDN), "replay", "--url", url, "--output", "json", "--rate", str(rate), "--repeat", str(repeat)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        self.started = time.monotonic()

    def running(self) -> bool:
        return self.process.poll() is None

    def summary(self, timeout: float = 300) -> dict:
        out, err = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0, f"idn replay failed ({self.process.returncode}): {err[-3000:]}"
        summaries = json.loads(out)
        return summaries[0] if isinstance(summaries, list) else summaries


def test_a_threshold_change_rolls_the_access_node_without_a_failed_request(kube):
    """τ of the access node raised while 100 requests/s arrive: its Deployment rolls (readiness,
    surge, drain within the grace period) and not one request fails; afterwards the access node
    answers fewer items itself."""
    url = service_url(kube, "access")
    before = kube.get("deployments.apps", "mnist-access")["metadata"]["generation"]
    load = Replay(url, rate=100, repeat=3)  # 3000 requests, 30 s
    time.sleep(5)
    kube.patch(STRATEGY, "cascade-access", {"spec": {"threshold": {"tau": 0.99}}})
    wait_for("the access node rolled out", lambda: rolled_out(kube, "mnist-access", before), kube, timeout=120)
    assert load.running(), "the rollout should finish while the load still runs"
    summary = load.summary()
    assert summary["requests"] == 3000 and summary["errors"] == 0, summary
    after = replay(url, "--concurrency", "4")
    assert after["errors"] == 0
    assert after["answeredBy"]["access"] < MAKE_RUN["access"] - 0.05, after


def rolled_out(kube, name: str, generation_before: int) -> bool:
    d = kube.get("deployments.apps", name)
    s = d.get("status", {})
    return (d["metadata"]["generation"] > generation_before
            and s.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and s.get("updatedReplicas") == s.get("replicas") == s.get("readyReplicas") == d["spec"]["replicas"])


def replace_edge_pod_under_load(kube, *delete_args: str) -> dict:
    """Deletes the edge pod while 100 requests/s arrive at the access node; waits for its
    replacement to be Ready; returns the replay's summary."""
    url = service_url(kube, "access")
    (old,) = kube.items("pods", "-l", "idn.dev/network=mnist,idn.dev/node=edge")
    load = Replay(url, rate=100, repeat=3)
    time.sleep(5)
    kube.run("delete", "pod", old["metadata"]["name"], "--wait=false", *delete_args)
    wait_for("a new edge pod Ready", lambda: [
        p for p in kube.items("pods", "-l", "idn.dev/network=mnist,idn.dev/node=edge")
        if p["metadata"]["uid"] != old["metadata"]["uid"]
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))], kube)
    summary = load.summary()
    assert summary["requests"] == 3000 and summary["errors"] == 0, summary
    after = replay(url, "--concurrency", "4")
    assert after["errors"] == 0 and after["fallback"] == 0, after
    assert after["answeredBy"].get("edge", 0) > 0.2, f"forwarding to the new edge pod: {after}"
    return summary


def test_an_edge_pod_deleted_mid_replay_hands_over_without_a_degraded_answer(kube):
    """A deleted edge pod goes on serving for its drain delay while its replacement starts: no
    request is lost and none is answered by a fallback."""
    summary = replace_edge_pod_under_load(kube)
    assert summary["fallback"] == 0, summary


def test_an_edge_pod_killed_mid_replay_loses_no_request_and_flags_the_degraded_ones(kube):
    """The edge pod killed at once (no grace): the access node answers what it cannot forward
    with its own model, each such item flagged as a fallback, until the replacement is Ready;
    then forwarding resumes."""
    summary = replace_edge_pod_under_load(kube, "--grace-period=0", "--force")
    assert summary["fallback"] > 0, summary


def test_prometheus_scrapes_the_pods_and_the_charts_rules_give_the_forward_ratio(kube, cluster, tmp_path_factory):
    """The Prometheus built here finds the node-agent pods through Kubernetes service discovery,
    scrapes them at their pod addresses, and the chart's recording rules turn real traffic into
    the access node's forward ratio, as the replay itself measured it."""
    rules = REPO / "charts" / "idn-operator" / "rules" / "idn.rules.yaml"
    config = json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{
            "job_name": "idn-node-agents",
            "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(cluster.kubeconfig),
                                       "namespaces": {"names": [kube.namespace]}}],
            "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_pod_label_idn_dev_network"], "regex": ".+", "action": "keep"},
                {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "http", "action": "keep"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            ],
        }],
    })
    pods = {p["metadata"]["name"] for p in kube.items("pods", "-l", "idn.dev/network=mnist")}
    with Prometheus(tmp_path_factory.mktemp("prometheus"), config=config) as prometheus:
        wait_for("Prometheus to scrape every node-agent pod", lambda: {
            r["metric"]["pod"] for r in prometheus.query('up{job="idn-node-agents"} == 1')["result"]} == pods,
            kube, timeout=60)
        summary = replay(service_url(kube, "access"), "--rate", "50", "--limit", "1000")
        forwarded = 1 - summary["answeredBy"]["access"]

        def ratio():
            result = prometheus.query('idn:forward_ratio:rate5m{node="access",service="mnist"}')["result"]
            return float(result[0]["value"][1]) if result else None
        measured = wait_for("the forward ratio of the access node", ratio, kube, timeout=30)
        assert measured == pytest.approx(forwarded, abs=0.05), (measured, summary)

        # The chart's Grafana dashboard on the same data: every panel's query has data.
        empty = [(title, expr) for title, expr in dashboard.panel_queries(dashboard.load())
                 if not prometheus.query(expr)["result"]]
        assert not empty, f"dashboard panels without data: {empty}"
