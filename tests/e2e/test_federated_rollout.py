"""End to end: each round of the federated example (examples/federated) rolls exactly the node
Deployments whose model or threshold it changed.

A round's rollout is `kubectl apply` of the manifests `idnfed.revision.manifests` writes for
its revision. The steps apply them in order into one fresh namespace under one operator, with
made-up file digests and thresholds (no training): the first revision comes up Ready; a new
access model rolls every access node and nothing else; a new edge model and threshold roll the
edge node only; a revision whose digest is not a sha256 is refused by the API server and
changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time

import pytest

from kube import DEPLOYMENT, HASH, NETWORK, REPO, Kube, condition, still_running, wait_for

pytestmark = pytest.mark.incremental

ACCESS = {"access-1", "access-2", "access-3"}
NODES = ACCESS | {"edge", "cloud"}
MODEL = "inferencemodels.idn.dev"
CLAIM = "idn-federated-models"  # the claim the example's models name
# The example needs numpy, onnx and scikit-learn: its own environment writes the manifests.
FED_PYTHON = REPO / ".venv-fed" / "bin" / "python"
WRITE_MANIFESTS = """import json, sys
from idnfed.revision import Revision, manifests
r = json.loads(sys.argv[1])
print(manifests(Revision({}, r["sha256"], r["tau"]), r["nodes"], r["cloud"]))"""


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


FIRST = {"sha256": {"access": digest("access 1"), "edge": digest("edge 1")}, "tau": {"access": 0.8, "edge": 0.6}}
NEW_ACCESS = {**FIRST, "sha256": {**FIRST["sha256"], "access": digest("access 2")}}
NEW_EDGE = {"sha256": {**NEW_ACCESS["sha256"], "edge": digest("edge 3")}, "tau": {**NEW_ACCESS["tau"], "edge": 0.65}}
NOT_A_SHA = {**NEW_EDGE, "sha256": {**NEW_EDGE["sha256"], "access": "not-a-sha"}}


def manifests(revision: dict) -> str:
    """The example's manifests of `revision` (sha256 and τ per tier)."""
    assert FED_PYTHON.exists(), f"{FED_PYTHON} is missing (make federated-env)"
    arg = json.dumps({**revision, "nodes": len(ACCESS), "cloud": digest("cloud")})
    done = subprocess.run([str(FED_PYTHON), "-c", WRITE_MANIFESTS, arg], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO / "examples" / "federated")))
    assert done.returncode == 0, f"the example's manifests failed: {done.stderr}"
    return done.stdout


def rollout(kube: Kube, revision: dict) -> subprocess.CompletedProcess:
    return kube.call("apply", "-f", "-", input=manifests(revision))


def deployments(kube: Kube) -> dict[str, tuple[str, int]]:
    """Each node's config hash and Deployment generation."""
    return {d["metadata"]["labels"]["idn.dev/node"]: (d["spec"]["template"]["metadata"]["annotations"][HASH],
                                                      d["metadata"]["generation"])
            for d in kube.items(DEPLOYMENT, "-l", "idn.dev/network=federated")}


def agent_config(kube: Kube, node: str) -> str:
    return kube.get("configmaps", f"federated-{node}")["data"]["agent.yaml"]


def settled(kube: Kube) -> bool:
    """Ready, and every Deployment's rollout done (not only the hash changed)."""
    network = kube.get(NETWORK, "federated")
    if [condition(network, c).get("status") for c in ("Ready", "Progressing")] != ["True", "False"]:
        return False
    items = kube.items(DEPLOYMENT, "-l", "idn.dev/network=federated")
    return len(items) == len(NODES) and all(
        d["status"].get("observedGeneration") == d["metadata"]["generation"]
        and d["status"].get("updatedReplicas") == d["spec"]["replicas"] == d["status"].get("availableReplicas")
        for d in items)


def unchanged_for_a_while(kube: Kube, before: dict, nodes: set[str]) -> None:
    """A negative: `nodes` keep their config hash and generation for a few reconciles' worth
    of time."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        now = deployments(kube)
        for node in nodes:
            assert now[node] == before[node], f"{node} rolled: {before[node]} -> {now[node]}"
        time.sleep(0.5)


def rolls_exactly(kube: Kube, revision: dict, rolled: set[str]) -> None:
    """Applies `revision`; asserts that exactly the `rolled` nodes roll, and that the network
    settles again."""
    before = deployments(kube)
    done = rollout(kube, revision)
    assert done.returncode == 0, done.stderr
    wait_for(f"{sorted(rolled)} to roll", lambda: all(deployments(kube)[n][0] != before[n][0] for n in rolled), kube)
    now = deployments(kube)
    assert all(now[n][1] > before[n][1] for n in rolled), (before, now)
    unchanged_for_a_while(kube, before, NODES - rolled)
    wait_for("the network to settle after the rollout", lambda: settled(kube), kube)
    still_running(kube)


@pytest.fixture(scope="module")
def models_claim(kube, admin):
    """The claim the models name, bound to a volume of its own (nothing reads the files: kwok
    runs no containers)."""
    volume = f"{CLAIM}-{kube.namespace}"
    admin.apply_cluster({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"], "storageClassName": "",
                 "hostPath": {"path": f"/tmp/{volume}"},
                 "claimRef": {"namespace": kube.namespace, "name": CLAIM}}})
    kube.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": CLAIM},
                "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "", "volumeName": volume,
                         "resources": {"requests": {"storage": "1Gi"}}}})
    yield
    admin.run("delete", "persistentvolume", volume, "--wait=false", check=False, namespaced=False)


def test_the_first_revision_comes_up_ready(kube, operator, models_claim):
    done = rollout(kube, FIRST)
    assert done.returncode == 0, done.stderr
    wait_for("the network to be Ready", lambda: settled(kube), kube)
    assert set(deployments(kube)) == NODES
    for node in ACCESS:
        pod = kube.get(DEPLOYMENT, f"federated-{node}")["spec"]["template"]["spec"]
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert claims == [CLAIM], pod["volumes"]
        assert FIRST["sha256"]["access"] in agent_config(kube, node)
    still_running(kube)


def test_a_new_access_model_rolls_every_access_node_and_nothing_else(kube, operator):
    rolls_exactly(kube, NEW_ACCESS, ACCESS)
    for node in ACCESS:
        config = agent_config(kube, node)
        assert NEW_ACCESS["sha256"]["access"] in config and FIRST["sha256"]["access"] not in config, config


def test_a_new_edge_model_and_threshold_roll_the_edge_node_only(kube, operator):
    rolls_exactly(kube, NEW_EDGE, {"edge"})
    config = agent_config(kube, "edge")
    assert NEW_EDGE["sha256"]["edge"] in config and "0.65" in config, config


def test_a_digest_that_is_not_a_sha256_is_refused_and_changes_nothing(kube, operator):
    before = deployments(kube)
    done = rollout(kube, NOT_A_SHA)
    # The CRD's pattern refuses it at admission: the operator never sees it.
    assert done.returncode != 0, done.stdout
    assert "fed-access" in done.stderr and "spec.source.sha256" in done.stderr, done.stderr
    assert "^[0-9a-fA-F]{64}$" in done.stderr, done.stderr
    assert kube.get(MODEL, "fed-access")["spec"]["source"]["sha256"] == NEW_EDGE["sha256"]["access"]
    unchanged_for_a_while(kube, before, NODES)
    assert condition(kube.get(NETWORK, "federated"), "InvalidSpec")["status"] == "False"
    still_running(kube)
