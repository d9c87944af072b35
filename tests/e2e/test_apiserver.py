"""The API emulator of apiserver.py behaves as the end-to-end test needs, through the real
kubectl and raw HTTP (as kube-rs talks to it). These run without the operator."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
STRATEGIES = "/apis/idn.dev/v1alpha1/namespaces/default/deliverystrategies"

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import apiserver

    with apiserver.running(tmp_path_factory.mktemp("apiserver")) as kubeconfig:
        url = json.loads(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        yield kubeconfig, url


def kubectl(server, *args: str, input: str | None = None) -> str:
    done = subprocess.run(["kubectl", f"--kubeconfig={server[0]}", *args], input=input,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def http(server, method: str, path: str, body: dict | None = None, content_type: str = "application/json"):
    request = urllib.request.Request(server[1] + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_kubectl_applies_crds_and_custom_resources(server):
    kubectl(server, "apply", "-f", str(REPO / "crds"))
    kubectl(server, "wait", "--for=condition=Established", "-f", str(REPO / "crds"))
    assert "inferencedeliverynetwork.idn.dev/mnist created" in kubectl(server, "apply", "-f", str(REPO / "examples/mnist"))
    assert "unchanged" in kubectl(server, "apply", "-f", str(REPO / "examples/mnist/40-network.yaml"))
    network = json.loads(kubectl(server, "get", "inferencedeliverynetworks.idn.dev", "mnist", "-o", "json"))
    meta = network["metadata"]
    assert meta["generation"] == 1 and meta["uid"] and meta["creationTimestamp"] and int(meta["resourceVersion"]) > 0


def test_generation_moves_with_the_spec_only(server):
    def meta():
        return json.loads(kubectl(server, "get", "inferencedeliverynetworks.idn.dev", "mnist", "-o", "json"))["metadata"]

    before = meta()
    kubectl(server, "annotate", "inferencedeliverynetworks.idn.dev", "mnist", "touched=yes")
    after_annotation = meta()
    assert after_annotation["generation"] == before["generation"]
    assert int(after_annotation["resourceVersion"]) > int(before["resourceVersion"])
    kubectl(server, "patch", "inferencedeliverynetworks.idn.dev", "mnist", "--subresource=status", "--type=merge",
            "-p", '{"status": {"readyNodes": "0/3"}, "spec": {"image": "ignored"}}')
    status_written = json.loads(kubectl(server, "get", "inferencedeliverynetworks.idn.dev", "mnist", "-o", "json"))
    assert status_written["status"] == {"readyNodes": "0/3"} and "image" not in status_written["spec"]
    assert status_written["metadata"]["generation"] == before["generation"]
    kubectl(server, "patch", "inferencedeliverynetworks.idn.dev", "mnist", "--type=merge",
            "-p", '{"spec": {"image": "agent:2"}, "status": {"readyNodes": "ignored"}}')
    spec_written = json.loads(kubectl(server, "get", "inferencedeliverynetworks.idn.dev", "mnist", "-o", "json"))
    assert spec_written["metadata"]["generation"] == before["generation"] + 1
    assert spec_written["status"] == {"readyNodes": "0/3"}


def test_server_side_apply_creates_merges_and_prunes(server):
    path = "/api/v1/namespaces/default/configmaps/applied?fieldManager=e2e&force=true"
    apply = "application/apply-patch+yaml"
    code, created = http(server, "PATCH", path, {"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "applied", "labels": {"a": "1", "b": "2"}},
                                                 "data": {"x": "1"}}, apply)
    assert code == 201 and created["metadata"]["uid"]
    kubectl(server, "label", "configmap", "applied", "other=kept")
    code, updated = http(server, "PATCH", path, {"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "applied", "labels": {"a": "1"}},
                                                 "data": {"x": "2"}}, apply)
    assert code == 200 and updated["metadata"]["labels"] == {"a": "1", "other": "kept"} and updated["data"] == {"x": "2"}
    # The same apply again changes nothing, not even the resourceVersion.
    _, again = http(server, "PATCH", path, {"apiVersion": "v1", "kind": "ConfigMap",
                                            "metadata": {"name": "applied", "labels": {"a": "1"}}, "data": {"x": "2"}}, apply)
    assert again["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"]
    code, error = http(server, "PATCH", path.split("?")[0], {"apiVersion": "v1", "kind": "ConfigMap"}, apply)
    assert code == 400 and error["kind"] == "Status"


def test_selectors_watch_resume_and_garbage_collection(server):
    _, listed = http(server, "GET", STRATEGIES)
    since = listed["metadata"]["resourceVersion"]
    kubectl(server, "label", "deliverystrategies.idn.dev", "cascade-edge", "pick=me")
    kubectl(server, "label", "deliverystrategies.idn.dev", "cascade-edge", "pick-")
    assert [i["metadata"]["name"] for i in http(server, "GET", STRATEGIES + "?labelSelector=pick%3Dme")[1]["items"]] == []

    # A watch from the list's resourceVersion replays what happened since, as a selector sees it.
    watch = urllib.request.urlopen(
        f"{server[1]}{STRATEGIES}?watch=true&resourceVersion={since}&labelSelector=pick%3Dme&timeoutSeconds=2", timeout=10)
    events = [json.loads(line) for line in watch.read().splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "cascade-edge"), ("DELETED", "cascade-edge")]
    assert all(int(e["object"]["metadata"]["resourceVersion"]) > int(since) for e in events)

    # Live events reach a watch in progress.
    received = []
    reader = threading.Thread(target=lambda: received.extend(urllib.request.urlopen(
        f"{server[1]}{STRATEGIES}?watch=true&resourceVersion={events[-1]['object']['metadata']['resourceVersion']}"
        "&timeoutSeconds=3", timeout=10).read().splitlines()))
    reader.start()
    kubectl(server, "annotate", "deliverystrategies.idn.dev", "serve-local", "live=1")
    reader.join()
    assert [json.loads(line)["type"] for line in received] == ["MODIFIED"]

    owner = json.loads(kubectl(server, "get", "inferencedeliverynetworks.idn.dev", "mnist", "-o", "json"))["metadata"]
    kubectl(server, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned", "ownerReferences": [
            {"apiVersion": "idn.dev/v1alpha1", "kind": "InferenceDeliveryNetwork", "name": "mnist",
             "uid": owner["uid"], "controller": True}]}}))
    kubectl(server, "delete", "inferencedeliverynetworks.idn.dev", "mnist")
    assert kubectl(server, "get", "configmap", "owned", "--ignore-not-found") == ""


def test_leases_events_and_conflicts(server):
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "idn-operator"},
             "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
    leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    code, created = http(server, "POST", leases, lease)
    assert code == 201
    assert http(server, "POST", leases, lease)[1]["reason"] == "AlreadyExists"
    created["spec"]["holderIdentity"] = "b"
    code, replaced = http(server, "PUT", f"{leases}/idn-operator", created)
    assert code == 200 and replaced["spec"]["holderIdentity"] == "b"
    code, conflict = http(server, "PUT", f"{leases}/idn-operator", created)  # a stale resourceVersion
    assert code == 409 and conflict["reason"] == "Conflict"

    events = "/apis/events.k8s.io/v1/namespaces/default/events"
    code, _ = http(server, "POST", events, {"apiVersion": "events.k8s.io/v1", "kind": "Event",
                                            "metadata": {"name": "mnist.1"}, "type": "Warning", "reason": "InvalidSpec",
                                            "regarding": {"kind": "InferenceDeliveryNetwork", "name": "mnist"}})
    assert code == 201
    code, _ = http(server, "PATCH", f"{events}/mnist.1", {"series": {"count": 2}}, "application/merge-patch+json")
    assert code == 200
    assert "InvalidSpec" in kubectl(server, "get", "events.events.k8s.io", "-o", "json")
    assert http(server, "GET", "/apis/nothing.example/v1/things")[0] == 404
