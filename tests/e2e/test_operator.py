"""End to end: the real `idn-operator` binary against a real control plane (tests/cluster), as
the chart's ServiceAccount, driven with the real kubectl.

The steps run in order on one operator and one fresh namespace: the MNIST example is applied;
the operator creates each node's objects, owned by the network; the real deployment controller
and scheduler, with kwok as the kubelets, make the pods Ready and the Deployments Available,
and only then is the network Ready; `kubectl get` and `kubectl explain` show the printer
columns and the doc comments; a strategy change rolls exactly one Deployment (one new
ReplicaSet); edits to managed fields are undone; a learning strategy gets its settings and a
writable place for its learned state, and a bad learning setting is an InvalidSpec; removing a node deletes its objects; an
invalid network gets InvalidSpec and a Warning event without taking the operator down; deleting
a network lets the garbage collector remove every child; SIGTERM stops the operator cleanly.

Fields the operator owns under server-side apply (field manager `idn-operator`, checked in
test_edits_to_managed_fields_are_undone): of each node's Deployment `spec.replicas` (unless the
node is autoscaled), `spec.selector` and the whole pod template it renders; of its ConfigMap
`data`; of its Service `spec.selector` and `spec.ports`; labels and owner references of all.
Fields it does not render (a Deployment's `spec.strategy`, annotations other tools add) stay
with whoever set them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from kube import (DEPLOYMENT, HASH, NETWORK, PLACEMENT, REPLICASET, REPO, STRATEGY, Kube, condition, still_running,
                  wait_for)

pytestmark = pytest.mark.incremental

NODES = ("access", "edge", "cloud")
CONDITION_TYPES = {"Ready", "Progressing", "Degraded", "InvalidSpec"}
MODELS_IMAGE = "idn-example-models:0.1.0"


def config_hashes(kube: Kube, nodes=NODES) -> dict[str, str]:
    hashes = {}
    for node in nodes:
        deployment = kube.get(DEPLOYMENT, f"mnist-{node}")
        assert deployment is not None, f"Deployment mnist-{node} is missing"
        hashes[node] = deployment["spec"]["template"]["metadata"]["annotations"][HASH]
    return hashes


def replica_sets(kube: Kube, node: str) -> set[str]:
    return {r["metadata"]["name"] for r in kube.items(REPLICASET, "-l", f"idn.dev/network=mnist,idn.dev/node={node}")}


def available(deployment: dict | None) -> bool:
    status = (deployment or {}).get("status") or {}
    return any(c["type"] == "Available" and c["status"] == "True" for c in status.get("conditions") or [])


def test_the_example_applies(kube, operator):
    kube.run("apply", "-f", str(REPO / "examples" / "mnist"))
    assert kube.get(NETWORK, "mnist") is not None


def test_each_node_gets_owned_objects_with_the_models_image(kube, operator):
    network = wait_for("the network", lambda: kube.get(NETWORK, "mnist"), kube)
    for node in NODES:
        for kind in ("configmaps", DEPLOYMENT, "services"):
            obj = wait_for(f"{kind} mnist-{node}", lambda: kube.get(kind, f"mnist-{node}"), kube)
            owners = obj["metadata"].get("ownerReferences") or []
            assert [(o["kind"], o["name"], o["uid"], o.get("controller")) for o in owners] == [
                ("InferenceDeliveryNetwork", "mnist", network["metadata"]["uid"], True)
            ], f"{kind} mnist-{node} is not owned by the network: {owners}"
            labels = obj["metadata"].get("labels") or {}
            assert (labels.get("idn.dev/network"), labels.get("idn.dev/node")) == ("mnist", node)
        # The example's models come from the image of the Dockerfile's `models` target.
        pod = kube.get(DEPLOYMENT, f"mnist-{node}")["spec"]["template"]["spec"]
        images = [v["image"]["reference"] for v in pod["volumes"] if "image" in v]
        assert images == [MODELS_IMAGE] and not pod.get("initContainers"), pod["volumes"]
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert any(m.startswith("/models/images/") for m in mounts), mounts
    wait_for("the cloud node's disruption budget", lambda: kube.get("poddisruptionbudgets", "mnist-cloud"), kube)
    assert kube.get("poddisruptionbudgets", "mnist-edge") is None, "a single replica needs no budget"
    still_running(kube)


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
    for c in status["conditions"]:
        assert c.get("reason") and c.get("lastTransitionTime"), f"incomplete condition {c}"
    cloud = next(n for n in status["nodes"] if n["name"] == "cloud")
    assert cloud["replicas"] == 2 and cloud["endpoint"].startswith(f"http://mnist-cloud.{kube.namespace}.svc")


def test_the_network_is_ready_only_once_its_deployments_are_available(kube, operator):
    def ready():
        network = kube.get(NETWORK, "mnist")
        if condition(network, "Ready").get("status") == "True":
            return network

    network = wait_for("Ready=True", ready, kube)
    # Ready was reported from the Deployments the real controllers and kwok brought up.
    for node in NODES:
        assert available(kube.get(DEPLOYMENT, f"mnist-{node}")), f"mnist-{node} is not Available yet"
    pods = kube.items("pods", "-l", "idn.dev/network=mnist")
    assert len(pods) == 4 and all(p["status"]["phase"] == "Running" for p in pods), [p["status"] for p in pods]
    assert all(p["spec"].get("nodeName") for p in pods), "pods not scheduled"
    assert network["status"]["readyNodes"] == "3/3"
    assert condition(network, "Progressing")["status"] == "False"
    assert condition(network, "Degraded")["status"] == "False"


def test_kubectl_shows_printer_columns_and_doc_comments(kube, operator):
    table = kube.run("get", "infnet", "mnist").splitlines()
    assert table[0].split() == ["NAME", "NODES", "READY", "REASON", "AGE"], table
    assert table[1].split()[:4] == ["mnist", "3/3", "True", "AllNodesReady"], table
    assert "mnist" in kube.run("get", "idn")  # the category lists every idn kind
    explained = kube.run("explain", "inferencedeliverynetwork.spec.nodes.services", namespaced=False)
    assert "Services this node offers; names are unique." in explained, explained
    assert "strategy" in explained and "DeliveryStrategy" in explained, explained


def test_a_strategy_change_rolls_exactly_the_deployment_that_uses_it(kube, operator):
    before = config_hashes(kube)
    sets = {node: replica_sets(kube, node) for node in NODES}
    generations = {n: kube.get(DEPLOYMENT, f"mnist-{n}")["metadata"]["generation"] for n in NODES}
    kube.patch(STRATEGY, "cascade-edge", {"spec": {"threshold": {"tau": 0.9}}})

    wait_for("the mnist-edge config hash to change", lambda: config_hashes(kube)["edge"] != before["edge"], kube)
    wait_for("a new ReplicaSet for mnist-edge", lambda: len(replica_sets(kube, "edge") - sets["edge"]) == 1, kube)
    # A negative: the other nodes must not roll, during a few reconciles' worth of time.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        for node in ("access", "cloud"):
            assert replica_sets(kube, node) == sets[node], f"{node} got a new ReplicaSet"
            assert config_hashes(kube)[node] == before[node], f"{node} rolled"
        time.sleep(0.5)
    for node in ("access", "cloud"):
        assert kube.get(DEPLOYMENT, f"mnist-{node}")["metadata"]["generation"] == generations[node]
    assert "0.9" in json.dumps(kube.get("configmaps", "mnist-edge")["data"])
    wait_for("Ready after the edge rollout",
             lambda: condition(kube.get(NETWORK, "mnist"), "Ready").get("status") == "True"
             and condition(kube.get(NETWORK, "mnist"), "Progressing").get("status") == "False", kube)
    still_running(kube)


def test_edits_to_managed_fields_are_undone(kube, operator):
    deployment = json.loads(kube.run("get", DEPLOYMENT, "mnist-edge", "-o", "json", "--show-managed-fields"))
    owned = next(m for m in deployment["metadata"]["managedFields"]
                 if m["manager"] == "idn-operator" and m["operation"] == "Apply")
    spec = owned["fieldsV1"]["f:spec"]
    assert {"f:replicas", "f:selector", "f:template"} <= set(spec), sorted(spec)

    kube.run("scale", DEPLOYMENT, "mnist-edge", "--replicas=3")
    kube.patch("configmaps", "mnist-edge", {"data": {"agent.yaml": "edited by hand"}})
    wait_for("the operator to restore mnist-edge's replicas",
             lambda: kube.get(DEPLOYMENT, "mnist-edge")["spec"]["replicas"] == 1, kube)
    wait_for("the operator to restore mnist-edge's config",
             lambda: "NodeAgentConfig" in kube.get("configmaps", "mnist-edge")["data"]["agent.yaml"], kube)
    # A field it does not render is left alone.
    kube.patch(DEPLOYMENT, "mnist-edge", {"spec": {"revisionHistoryLimit": 3}})
    kube.patch(STRATEGY, "cascade-edge", {"spec": {"threshold": {"tau": 0.91}}})
    wait_for("the next reconcile", lambda: "0.91" in json.dumps(kube.get("configmaps", "mnist-edge")["data"]), kube)
    assert kube.get(DEPLOYMENT, "mnist-edge")["spec"]["revisionHistoryLimit"] == 3
    still_running(kube)


def test_a_learning_strategy_keeps_its_state_and_bad_learning_settings_are_invalid_specs(kube, operator):
    before = config_hashes(kube)
    kube.patch(STRATEGY, "cascade-access", {"spec": {
        "threshold": {"adapt": {"method": "hedge", "forwardCost": 0.05}},
        "hardExamples": {"capacity": 100}}})
    wait_for("the mnist-access config hash to change", lambda: config_hashes(kube)["access"] != before["access"], kube)
    agent = kube.get("configmaps", "mnist-access")["data"]["agent.yaml"]
    assert "method: hedge" in agent and "forwardCost: 0.05" in agent, agent
    assert "learnedStateFile: /var/lib/idn/learned.json" in agent and "capacity: 100" in agent, agent
    pod = kube.get(DEPLOYMENT, "mnist-access")["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "learned")
    assert mount["mountPath"] == "/var/lib/idn" and not mount.get("readOnly"), mount
    assert any(v["name"] == "learned" and "emptyDir" in v for v in pod["volumes"]), pod["volumes"]
    assert "learnedStateFile" not in kube.get("configmaps", "mnist-edge")["data"]["agent.yaml"]

    # A learning setting the agent would refuse: InvalidSpec and a Warning, nothing applied.
    rendered = kube.get("configmaps", "mnist-access")["data"]
    kube.patch(STRATEGY, "cascade-access", {"spec": {"threshold": {"adapt": {"alpha": 0}}}})

    network = invalid_spec(kube, "mnist", "InvalidSpec=True for alpha 0")
    message = condition(network, "InvalidSpec")["message"]
    assert "adapt.alpha: 0 must be a finite number > 0" in message, message
    events = wait_for("a Warning event naming adapt.alpha", lambda: [
        e for e in kube.items("events.events.k8s.io")
        if (e.get("regarding") or {}).get("name") == "mnist" and e.get("type") == "Warning"
        and "adapt.alpha" in (e.get("note") or "")], kube)
    assert events
    assert kube.get("configmaps", "mnist-access")["data"] == rendered, "an invalid spec must not be applied"

    kube.patch(STRATEGY, "cascade-access", {"spec": {"threshold": {"adapt": None}, "hardExamples": None}})
    wait_for("the access config back to before", lambda: config_hashes(kube)["access"] == before["access"], kube)
    wait_for("Ready with a valid spec again",
             lambda: condition(kube.get(NETWORK, "mnist"), "InvalidSpec").get("status") == "False"
             and condition(kube.get(NETWORK, "mnist"), "Ready").get("status") == "True", kube)
    still_running(kube)


def invalid_spec(kube: Kube, name: str, what: str) -> dict:
    """Waits until network `name` has InvalidSpec=True, and returns it."""

    def invalid():
        network = kube.get(NETWORK, name)
        if condition(network, "InvalidSpec").get("status") == "True":
            return network

    return wait_for(what, invalid, kube)


def node_index(kube: Kube, name: str) -> int:
    return [n["name"] for n in kube.get(NETWORK, "mnist")["spec"]["nodes"]].index(name)


def test_an_autoscaled_node_hands_its_replicas_to_its_autoscaler(kube, operator):
    edge, cloud = node_index(kube, "edge"), node_index(kube, "cloud")
    kube.patch(NETWORK, "mnist", [{"op": "add", "path": f"/spec/nodes/{edge}/autoscaling",
                                   "value": {"minReplicas": 1, "maxReplicas": 3}}], "json")
    hpa = wait_for("mnist-edge's autoscaler", lambda: kube.get("horizontalpodautoscalers", "mnist-edge"), kube)
    assert (hpa["spec"]["scaleTargetRef"]["name"], hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
        "mnist-edge", 1, 3)
    wait_for("mnist-edge's disruption budget", lambda: kube.get("poddisruptionbudgets", "mnist-edge"), kube)

    def released() -> bool:
        deployment = json.loads(kube.run("get", DEPLOYMENT, "mnist-edge", "-o", "json", "--show-managed-fields"))
        applied = [m for m in deployment["metadata"]["managedFields"]
                   if m["manager"] == "idn-operator" and m["operation"] == "Apply"]
        return bool(applied) and "f:replicas" not in applied[0]["fieldsV1"]["f:spec"]

    wait_for("the operator to stop applying mnist-edge's replica count", released, kube)

    # Back to one replica each: the budgets and the autoscaler go.
    kube.patch(NETWORK, "mnist", [{"op": "remove", "path": f"/spec/nodes/{edge}/autoscaling"},
                                  {"op": "replace", "path": f"/spec/nodes/{cloud}/replicas", "value": 1}], "json")
    for kind, name in (("horizontalpodautoscalers", "mnist-edge"), ("poddisruptionbudgets", "mnist-edge"),
                       ("poddisruptionbudgets", "mnist-cloud")):
        wait_for(f"{kind} {name} to be deleted", lambda: kube.get(kind, name) is None, kube)
    still_running(kube)


def test_removing_a_node_deletes_its_objects(kube, operator):
    network = kube.get(NETWORK, "mnist")
    names = [n["name"] for n in network["spec"]["nodes"]]
    placement = kube.get(PLACEMENT, "mnist")
    entries = [e["node"] for e in placement["spec"]["nodes"]]
    kube.patch(PLACEMENT, "mnist", [{"op": "remove", "path": f"/spec/nodes/{entries.index('access')}"}], "json")
    kube.patch(NETWORK, "mnist", [{"op": "remove", "path": f"/spec/nodes/{names.index('access')}"}], "json")

    for kind in ("configmaps", DEPLOYMENT, "services"):
        wait_for(f"{kind} mnist-access to be deleted", lambda: kube.get(kind, "mnist-access") is None, kube)
        for node in ("edge", "cloud"):
            assert kube.get(kind, f"mnist-{node}") is not None, f"{kind} mnist-{node} was deleted too"
    wait_for("mnist-access's pods to go", lambda: not kube.items("pods", "-l", "idn.dev/node=access"), kube)

    def reported():
        network = kube.get(NETWORK, "mnist")
        status = network.get("status") or {}
        if (status.get("observedGeneration") == network["metadata"]["generation"]
                and [n["name"] for n in status.get("nodes", [])] == ["edge", "cloud"]):
            return network

    network = wait_for("the status to list edge and cloud only", reported, kube)
    assert condition(network, "InvalidSpec")["status"] == "False"
    still_running(kube)


def test_an_invalid_network_gets_invalid_spec_and_a_warning(kube, operator):
    broken = {
        "apiVersion": "idn.dev/v1alpha1", "kind": "InferenceDeliveryNetwork", "metadata": {"name": "broken"},
        "spec": {"nodes": [{"name": "solo", "tier": "cloud",
                            "services": [{"name": "mnist", "strategy": "no-such-strategy"}]}]},
    }
    kube.apply(broken)

    network = invalid_spec(kube, "broken", "InvalidSpec=True on the broken network")
    message = condition(network, "InvalidSpec")["message"]
    assert "spec.nodes[0].services[0].strategy" in message and "no-such-strategy" in message, message
    assert condition(network, "Ready")["status"] == "False"

    def warning():
        return [e for e in kube.items("events.events.k8s.io")
                if (e.get("regarding") or {}).get("name") == "broken" and e.get("type") == "Warning"]

    events = wait_for("a Warning event about the broken network", warning, kube)
    assert any("no-such-strategy" in (e.get("note") or "") for e in events), events
    assert kube.get(DEPLOYMENT, "broken-solo") is None, "an invalid network must not be applied"
    still_running(kube)
    assert condition(kube.get(NETWORK, "mnist"), "InvalidSpec")["status"] == "False"


def test_specs_that_pass_admission_but_do_not_resolve_are_invalid_specs(kube, operator):
    def node(name: str, **extra) -> dict:
        return {"name": name, "tier": "edge", **extra}

    cascade = {"name": "mnist", "strategy": "cascade-edge", "model": "mnist-mlp", "link": "up"}
    cases = {
        "unknown-model": ([node("a", services=[{"name": "mnist", "strategy": "serve-local",
                                                 "model": "no-such-model"}])], "no-such-model"),
        "cycle": ([node("a", links=[{"name": "up", "node": "b"}], services=[cascade]),
                   node("b", links=[{"name": "up", "node": "a"}], services=[cascade])], "cycle"),
        "secret": ([node("a", links=[{"name": "up", "endpoint": {
            "url": "https://other.example", "tokenSecret": {"name": "absent", "key": "token"}}}],
            services=[cascade])], "absent"),
    }
    for name, (nodes, _) in cases.items():
        kube.apply({"apiVersion": "idn.dev/v1alpha1", "kind": "InferenceDeliveryNetwork",
                    "metadata": {"name": name}, "spec": {"nodes": nodes}})
    for name, (_, expected) in cases.items():
        network = invalid_spec(kube, name, f"InvalidSpec on {name}")
        assert expected in condition(network, "InvalidSpec")["message"], condition(network, "InvalidSpec")
        kube.run("delete", NETWORK, name)
    still_running(kube)


def test_a_fixed_network_recovers_and_the_garbage_collector_removes_its_children(kube, operator):
    kube.apply({
        "apiVersion": "idn.dev/v1alpha1", "kind": "ModelPlacement", "metadata": {"name": "broken"},
        "spec": {"network": "broken", "nodes": [{"node": "solo", "models": ["mnist-cnn"]}]},
    })
    kube.patch(NETWORK, "broken", [{"op": "replace", "path": "/spec/nodes/0/services/0",
                                    "value": {"name": "mnist", "strategy": "serve-local", "model": "mnist-cnn"}}], "json")
    kube.patch(NETWORK, "broken", [{"op": "add", "path": "/spec/nodes/0/replicas", "value": 2}], "json")
    wait_for("InvalidSpec=False once fixed",
             lambda: condition(kube.get(NETWORK, "broken"), "InvalidSpec").get("status") == "False", kube)
    wait_for("the fixed network's pods", lambda: len(kube.items("pods", "-l", "idn.dev/network=broken")) == 2, kube)
    assert kube.get("poddisruptionbudgets", "broken-solo") is not None

    # No finalizer of the operator's: the API server's garbage collector follows the owner
    # references down to the ReplicaSets and pods.
    kube.run("delete", NETWORK, "broken", "--wait=false")
    for kind in ("configmaps", DEPLOYMENT, "services", "poddisruptionbudgets"):
        wait_for(f"{kind} broken-solo to be collected", lambda: kube.get(kind, "broken-solo") is None, kube)
    wait_for("its ReplicaSets and pods to be collected",
             lambda: not kube.items(REPLICASET, "-l", "idn.dev/network=broken")
             and not kube.items("pods", "-l", "idn.dev/network=broken"), kube)
    still_running(kube)


def test_the_operator_stops_cleanly_on_sigterm_and_was_never_forbidden(kube, operator):
    still_running(kube)
    operator.send_signal(signal.SIGTERM)
    try:
        code = operator.wait(15)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the operator did not stop within 15 s of SIGTERM{kube.log_tail()}")
    assert code == 0, f"the operator exited with {code}{kube.log_tail()}"
    log = kube.log.read_text()
    assert "forbidden" not in log.lower(), f"the chart's RBAC refused the operator something{kube.log_tail(80)}"
