"""End to end: the real `idn-operator` binary and the real `kubectl` against a Kubernetes API.

By default the API is the emulator of apiserver.py (kmock on loopback), started here; with
IDN_E2E_KUBECONFIG set, it is that cluster's (kind in .github/workflows/e2e-kind.yaml) and the
emulator is not started. The operator runs as a local process on the same kubeconfig.

The steps run in order on one operator and one namespace (a fresh `idn-e2e-<random>`):
the CRDs and the MNIST example are applied, the operator creates each node's ConfigMap,
Deployment and Service owned by the network and reports status; Deployments becoming ready
(kubelets, simulated on the emulator) make the network Ready; changing one DeliveryStrategy
rolls only the node that uses it; removing a node prunes its objects; an invalid network gets
InvalidSpec and a Warning event without taking the operator down, recovers when fixed, and
its objects are garbage-collected with it; the operator stops cleanly on SIGTERM. On a real
cluster without reachable model URLs the pods never get ready: there the readiness steps check
that the status agrees with the Deployments instead of waiting for Ready=True.

Environment:
  IDN_E2E_KUBECONFIG   use this cluster instead of the emulator
  IDN_E2E_AGENT_IMAGE  --agent-image for the operator (e.g. the image loaded into kind)
  IDN_E2E_FETCH_IMAGE  --fetch-image for the operator
  IDN_E2E_TIMEOUT      seconds each wait may take (default 60; 180 on a cluster)
  IDN_BINARY           the idn binary (default target/debug/idn)
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import subprocess
import time
from typing import Any, Callable

import pytest

pytestmark = pytest.mark.incremental

REPO = pathlib.Path(__file__).resolve().parents[2]
NETWORK = "inferencedeliverynetworks.idn.dev"
STRATEGY = "deliverystrategies.idn.dev"
PLACEMENT = "modelplacements.idn.dev"
DEPLOYMENT = "deployments.apps"
NODES = ("access", "edge", "cloud")
CONDITION_TYPES = {"Ready", "Progressing", "Degraded", "InvalidSpec"}
HASH = "idn.dev/config-hash"
REAL_CLUSTER = bool(os.environ.get("IDN_E2E_KUBECONFIG"))
TIMEOUT = float(os.environ.get("IDN_E2E_TIMEOUT") or (180 if REAL_CLUSTER else 60))


# --- helpers -------------------------------------------------------------------------------


class Kube:
    """kubectl on one kubeconfig and namespace."""

    def __init__(self, kubeconfig: pathlib.Path, namespace: str):
        self.kubeconfig, self.namespace = kubeconfig, namespace
        self.operator_log: pathlib.Path | None = None
        self.operator: subprocess.Popen | None = None

    def run(self, *args: str, input: str | None = None, check: bool = True, namespaced: bool = True) -> str:
        command = ["kubectl", f"--kubeconfig={self.kubeconfig}", *(["-n", self.namespace] if namespaced else []), *args]
        done = subprocess.run(command, input=input, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def get(self, kind: str, name: str) -> dict | None:
        out = self.run("get", kind, name, "-o", "json", "--ignore-not-found")
        return json.loads(out) if out.strip() else None

    def items(self, kind: str, *args: str) -> list[dict]:
        return json.loads(self.run("get", kind, "-o", "json", *args))["items"]

    def apply(self, *objects: dict) -> None:
        self.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))

    def patch(self, kind: str, name: str, patch: Any, type_: str = "merge", subresource: str | None = None) -> None:
        extra = [f"--subresource={subresource}"] if subresource else []
        self.run("patch", kind, name, f"--type={type_}", "-p", json.dumps(patch), *extra)

    def log_tail(self, lines: int = 40) -> str:
        if self.operator_log is None or not self.operator_log.exists():
            return ""
        text = re.sub(r"\x1b\[[0-9;]*m", "", self.operator_log.read_text(errors="replace"))  # colours
        tail = text.splitlines()[-lines:]
        return "\n--- operator log (tail) ---\n" + "\n".join(tail)


def wait_for(what: str, probe: Callable[[], Any], kube: Kube, timeout: float = TIMEOUT, interval: float = 0.3) -> Any:
    """Polls `probe` until it returns something truthy; fails with the last answer after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except AssertionError as error:  # a kubectl failure: keep trying until the deadline
            last = error
        if kube.operator is not None and kube.operator.poll() is not None:
            raise AssertionError(f"the operator exited ({kube.operator.returncode}) while waiting for {what}"
                                 f"{kube.log_tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}{kube.log_tail()}")
        time.sleep(interval)


def condition(network: dict | None, type_: str) -> dict:
    for c in ((network or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return {}


def config_hashes(kube: Kube, nodes=NODES) -> dict[str, str]:
    hashes = {}
    for node in nodes:
        deployment = kube.get(DEPLOYMENT, f"mnist-{node}")
        assert deployment is not None, f"Deployment mnist-{node} is missing"
        hashes[node] = deployment["spec"]["template"]["metadata"]["annotations"][HASH]
    return hashes


def deployment_ready(deployment: dict) -> bool:
    status = deployment.get("status") or {}
    wanted = deployment["spec"].get("replicas", 1)
    return (status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
            and status.get("readyReplicas", 0) >= wanted and status.get("updatedReplicas", 0) >= wanted)


def act_as_kubelets(kube: Kube, network: str = "mnist") -> None:
    """What the deployment controller and the kubelets would report once every pod is ready.
    On a real cluster they do it themselves: nothing is written there."""
    if REAL_CLUSTER:
        return
    for deployment in kube.items(DEPLOYMENT, "-l", f"idn.dev/network={network}"):
        if deployment_ready(deployment):
            continue
        replicas = deployment["spec"].get("replicas", 1)
        kube.patch(DEPLOYMENT, deployment["metadata"]["name"], {"status": {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }}, subresource="status")


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idn_binary() -> pathlib.Path:
    """The operator binary: without it (or kubectl) the module is skipped, or fails when a
    cluster run was asked for explicitly (IDN_E2E_KUBECONFIG)."""
    unavailable = pytest.fail if REAL_CLUSTER else pytest.skip
    binary = pathlib.Path(os.environ.get("IDN_OPERATOR_BINARY") or REPO / "target" / "debug" / "idn-operator")
    if not binary.exists():
        unavailable(f"{binary} is not built (cargo build -p idn-operator)")
    if shutil.which("kubectl") is None:
        unavailable("kubectl is not installed")
    return binary


@pytest.fixture(scope="module")
def kubeconfig(idn_binary, tmp_path_factory) -> pathlib.Path:
    """A real cluster's kubeconfig (IDN_E2E_KUBECONFIG), or the emulator's, which runs until the
    module ends."""
    if REAL_CLUSTER:
        yield pathlib.Path(os.environ["IDN_E2E_KUBECONFIG"])
        return
    import apiserver  # needs kmock, which a cluster run does not

    with apiserver.running(tmp_path_factory.mktemp("apiserver")) as path:
        yield path


@pytest.fixture(scope="module")
def kube(kubeconfig) -> Kube:
    """kubectl in a fresh namespace, with idn's CRDs installed (and established)."""
    kube = Kube(kubeconfig, f"idn-e2e-{secrets.token_hex(3)}")
    kube.run("apply", "-f", str(REPO / "crds"), namespaced=False)
    kube.run("wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds"), namespaced=False)
    kube.run("apply", "-f", "-", namespaced=False, input=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kube.namespace}}))
    yield kube
    if REAL_CLUSTER:
        kube.run("delete", "namespace", kube.namespace, "--wait=false", check=False, namespaced=False)


@pytest.fixture(scope="module")
def operator(idn_binary, kube, tmp_path_factory) -> subprocess.Popen:
    """`idn-operator` on the kubeconfig, watching the test's namespace; stopped with SIGTERM."""
    kube.operator_log = tmp_path_factory.mktemp("operator") / "operator.log"
    args = [str(idn_binary), "--no-leader-election", "--metrics-addr", "127.0.0.1:0",
            "--watch-namespace", kube.namespace]
    for flag, variable in (("--agent-image", "IDN_E2E_AGENT_IMAGE"), ("--fetch-image", "IDN_E2E_FETCH_IMAGE")):
        if os.environ.get(variable):
            args += [flag, os.environ[variable]]
    env = dict(os.environ, KUBECONFIG=str(kube.kubeconfig), NO_COLOR="1")
    with open(kube.operator_log, "w") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    kube.operator = process
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
    print(kube.log_tail(200))


def still_running(operator: subprocess.Popen, kube: Kube) -> None:
    assert operator.poll() is None, f"the operator exited with {operator.returncode}{kube.log_tail()}"


# --- the steps -----------------------------------------------------------------------------


def test_nodes_get_their_objects_owned_by_the_network(kube, operator):
    kube.run("apply", "-f", str(REPO / "examples" / "mnist"))
    network = kube.get(NETWORK, "mnist")
    for node in NODES:
        for kind in ("configmaps", DEPLOYMENT, "services"):
            obj = wait_for(f"{kind} mnist-{node}", lambda: kube.get(kind, f"mnist-{node}"), kube)
            owners = obj["metadata"].get("ownerReferences") or []
            assert [(o["kind"], o["name"], o["uid"], o.get("controller")) for o in owners] == [
                ("InferenceDeliveryNetwork", "mnist", network["metadata"]["uid"], True)
            ], f"{kind} mnist-{node} is not owned by the network: {owners}"
            labels = obj["metadata"].get("labels") or {}
            assert (labels.get("idn.dev/network"), labels.get("idn.dev/node")) == ("mnist", node)
    assert all(len(h) > 0 for h in config_hashes(kube).values())
    still_running(operator, kube)


def test_status_reports_generation_conditions_and_nodes(kube, operator):
    def reported():
        network = kube.get(NETWORK, "mnist")
        status = network.get("status") or {}
        types = {c["type"] for c in status.get("conditions") or []}
        if status.get("observedGeneration") == network["metadata"]["generation"] and CONDITION_TYPES <= types:
            return network

    network = wait_for("status with observedGeneration and every condition type", reported, kube)
    status = network["status"]
    assert [n["name"] for n in status["nodes"]] == list(NODES)
    assert condition(network, "InvalidSpec")["status"] == "False"
    assert status.get("readyNodes", "").endswith("/3")
    for c in status["conditions"]:
        assert c.get("reason") and c.get("lastTransitionTime"), f"incomplete condition {c}"
    cloud = next(n for n in status["nodes"] if n["name"] == "cloud")
    assert cloud["replicas"] == 2 and cloud["endpoint"].startswith("http://mnist-cloud.")


def test_network_is_ready_when_its_deployments_are(kube, operator):
    act_as_kubelets(kube)
    if REAL_CLUSTER and not all(deployment_ready(d) for d in kube.items(DEPLOYMENT, "-l", "idn.dev/network=mnist")):
        # Without reachable model URLs the pods never get ready: the status must still say so.
        def consistent():
            ready = sum(deployment_ready(d) for d in kube.items(DEPLOYMENT, "-l", "idn.dev/network=mnist"))
            network = kube.get(NETWORK, "mnist")
            return network if network["status"].get("readyNodes") == f"{ready}/3" else None

        network = wait_for("readyNodes to match the Deployments", consistent, kube)
        assert condition(network, "Ready")["status"] in ("True", "False")
        return

    def ready():
        network = kube.get(NETWORK, "mnist")
        if condition(network, "Ready").get("status") == "True" and network["status"].get("readyNodes") == "3/3":
            return network

    network = wait_for("Ready=True and readyNodes 3/3", ready, kube)
    assert condition(network, "Progressing")["status"] == "False"
    assert condition(network, "Degraded")["status"] == "False"
    assert all(n["readyReplicas"] == n["replicas"] for n in network["status"]["nodes"])


def test_changing_a_strategy_rolls_only_the_node_that_uses_it(kube, operator):
    before = config_hashes(kube)
    generations = {n: kube.get(DEPLOYMENT, f"mnist-{n}")["metadata"]["generation"] for n in NODES}
    kube.patch(STRATEGY, "cascade-edge", {"spec": {"threshold": {"tau": 0.9}}})

    wait_for("the mnist-edge config hash to change", lambda: config_hashes(kube)["edge"] != before["edge"], kube)
    wait_for("the mnist-edge ConfigMap to carry tau 0.9",
             lambda: "0.9" in json.dumps(kube.get("configmaps", "mnist-edge")["data"]), kube)
    # A negative: the other nodes must not roll, during a few reconciles' worth of time.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        after = config_hashes(kube)
        assert {n: after[n] for n in ("access", "cloud")} == {n: before[n] for n in ("access", "cloud")}, \
            f"a node that does not use cascade-edge rolled: {before} -> {after}"
        time.sleep(0.5)
    assert kube.get(DEPLOYMENT, "mnist-edge")["metadata"]["generation"] > generations["edge"]
    for node in ("access", "cloud"):
        assert kube.get(DEPLOYMENT, f"mnist-{node}")["metadata"]["generation"] == generations[node]

    act_as_kubelets(kube)  # the edge rollout completes
    if not REAL_CLUSTER:
        wait_for("Ready after the edge rollout", lambda: condition(kube.get(NETWORK, "mnist"), "Ready").get("status") == "True"
                 and condition(kube.get(NETWORK, "mnist"), "Progressing").get("status") == "False", kube)
    still_running(operator, kube)


def test_removing_a_node_prunes_its_objects(kube, operator):
    network = kube.get(NETWORK, "mnist")
    names = [n["name"] for n in network["spec"]["nodes"]]
    assert not any(l.get("node") == "access" for n in network["spec"]["nodes"] for l in n.get("links", [])), \
        "a node links to access: removing it would make the spec invalid"
    placement = kube.get(PLACEMENT, "mnist")
    entries = [e["node"] for e in placement["spec"]["nodes"]]
    kube.patch(PLACEMENT, "mnist", [{"op": "remove", "path": f"/spec/nodes/{entries.index('access')}"}], "json")
    kube.patch(NETWORK, "mnist", [{"op": "remove", "path": f"/spec/nodes/{names.index('access')}"}], "json")

    for kind in ("configmaps", DEPLOYMENT, "services"):
        wait_for(f"{kind} mnist-access to be deleted", lambda: kube.get(kind, "mnist-access") is None, kube)
        for node in ("edge", "cloud"):
            assert kube.get(kind, f"mnist-{node}") is not None, f"{kind} mnist-{node} was deleted too"

    def reported():
        network = kube.get(NETWORK, "mnist")
        status = network.get("status") or {}
        if (status.get("observedGeneration") == network["metadata"]["generation"]
                and [n["name"] for n in status.get("nodes", [])] == ["edge", "cloud"]):
            return network

    network = wait_for("the status to list edge and cloud only", reported, kube)
    assert condition(network, "InvalidSpec")["status"] == "False"
    if not REAL_CLUSTER:
        assert network["status"]["readyNodes"] == "2/2"
    still_running(operator, kube)


def test_an_invalid_network_gets_invalid_spec_and_a_warning(kube, operator):
    broken = {
        "apiVersion": "idn.dev/v1alpha1", "kind": "InferenceDeliveryNetwork", "metadata": {"name": "broken"},
        "spec": {"nodes": [{"name": "solo", "tier": "cloud",
                            "services": [{"name": "mnist", "strategy": "no-such-strategy"}]}]},
    }
    kube.apply(broken)

    def invalid():
        network = kube.get(NETWORK, "broken")
        if condition(network, "InvalidSpec").get("status") == "True":
            return network

    network = wait_for("InvalidSpec=True on the broken network", invalid, kube)
    message = condition(network, "InvalidSpec")["message"]
    assert "spec.nodes[0].services[0].strategy" in message and "no-such-strategy" in message, message
    assert condition(network, "Ready")["status"] == "False"

    def warning():
        return [e for e in kube.items("events.events.k8s.io")
                if (e.get("regarding") or {}).get("name") == "broken" and e.get("type") == "Warning"]

    events = wait_for("a Warning event about the broken network", warning, kube)
    assert any("no-such-strategy" in (e.get("note") or "") for e in events), events
    assert kube.get(DEPLOYMENT, "broken-solo") is None, "an invalid network must not be applied"
    still_running(operator, kube)
    # The valid network is untouched by its neighbour's problems.
    assert condition(kube.get(NETWORK, "mnist"), "InvalidSpec")["status"] == "False"


def test_a_fixed_network_recovers_and_its_objects_go_with_it(kube, operator):
    kube.apply({
        "apiVersion": "idn.dev/v1alpha1", "kind": "ModelPlacement", "metadata": {"name": "broken"},
        "spec": {"network": "broken", "nodes": [{"node": "solo", "models": ["mnist-cnn"]}]},
    })
    kube.patch(NETWORK, "broken", [{"op": "replace", "path": "/spec/nodes/0/services/0",
                                    "value": {"name": "mnist", "strategy": "serve-local", "model": "mnist-cnn"}}], "json")
    wait_for("InvalidSpec=False once fixed",
             lambda: condition(kube.get(NETWORK, "broken"), "InvalidSpec").get("status") == "False", kube)
    wait_for("the fixed network's Deployment", lambda: kube.get(DEPLOYMENT, "broken-solo"), kube)

    # Deleting the network deletes its objects through their owner references (garbage
    # collection of the API server, which the emulator also does).
    kube.run("delete", NETWORK, "broken", "--wait=false")
    for kind in ("configmaps", DEPLOYMENT, "services"):
        wait_for(f"{kind} broken-solo to be collected", lambda: kube.get(kind, "broken-solo") is None, kube)
    still_running(operator, kube)


def test_the_operator_stops_cleanly_on_sigterm(kube, operator):
    still_running(operator, kube)
    operator.send_signal(signal.SIGTERM)
    try:
        code = operator.wait(15)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the operator did not stop within 15 s of SIGTERM{kube.log_tail()}")
    assert code == 0, f"the operator exited with {code}{kube.log_tail()}"
