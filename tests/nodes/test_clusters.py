"""Two clusters: cluster B (a control plane and a real node of its own) runs the cloud tier;
cluster A's edge links to it through a remote endpoint at B's NodePort, and items A's tiers are
unsure of are answered in B, over REST and over gRPC, and answered by A itself, flagged, when B's
cloud is gone."""

from __future__ import annotations

import copy
import urllib.request

import pytest
import yaml
from conftest import REPO, helm_install, replay, serving
from kube import NETWORK, Kube, condition, wait_for

pytestmark = pytest.mark.incremental

EXAMPLE = REPO / "examples" / "mnist"
# B's cloud node, exposed to other clusters on these NodePorts of B's node.
REST_NODE_PORT, GRPC_NODE_PORT = 30800, 30801


def manifests() -> dict[str, list[dict]]:
    """The example's objects by kind."""
    by_kind: dict[str, list[dict]] = {}
    for path in sorted(EXAMPLE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def ready(kube: Kube, network: str):
    wait_for(f"network {network} Ready", lambda: condition(kube.get(NETWORK, network), "Ready").get("status") == "True",
             kube, timeout=240)


@pytest.fixture(scope="module")
def b(cluster_b, helm) -> Kube:
    """Cluster B with the operator from the chart and a namespace of the test's own."""
    helm_install(helm, cluster_b.kubeconfig)
    kube = Kube(cluster_b.kubeconfig, "remote")
    kube.create_namespace()
    return kube


@pytest.fixture(scope="module")
def a(admin, operator) -> Kube:
    kube = Kube(admin.kubeconfig, "linked")
    kube.create_namespace()
    return kube


def test_cluster_b_serves_the_cloud_tier_on_its_node_ports(b, cluster_b):
    objects = manifests()
    cnn = [m for m in objects["InferenceModel"] if m["metadata"]["name"] == "mnist-cnn"]
    serve = [s for s in objects["DeliveryStrategy"] if s["metadata"]["name"] == "serve-local"]
    b.apply(*cnn, *serve, {
        "apiVersion": "idn.dev/v1alpha1", "kind": "ModelPlacement", "metadata": {"name": "remote"},
        "spec": {"network": "remote", "nodes": [{"node": "cloud-b", "models": ["mnist-cnn"]}]},
    }, {
        "apiVersion": "idn.dev/v1alpha1", "kind": "InferenceDeliveryNetwork", "metadata": {"name": "remote"},
        "spec": {"nodes": [{"name": "cloud-b", "tier": "cloud",
                            "services": [{"name": "mnist", "strategy": "serve-local", "model": "mnist-cnn"}]}]},
    }, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "cloud-b-remote"},
        "spec": {"type": "NodePort",
                 "selector": {"idn.dev/network": "remote", "idn.dev/node": "cloud-b"},
                 "ports": [{"name": "http", "port": 8000, "targetPort": 8000, "nodePort": REST_NODE_PORT},
                           {"name": "grpc", "port": 8001, "targetPort": 8001, "nodePort": GRPC_NODE_PORT}]},
    })
    ready(b, "remote")


def remote_url(cluster_b, port: int) -> str:
    return f"http://{cluster_b.real_nodes[0].ip}:{port}"


def linked_network(cluster_b, protocol: str) -> dict:
    """Cluster A's access and edge nodes of the example, the edge's cloud link an endpoint in B."""
    (network,) = manifests()["InferenceDeliveryNetwork"]
    network = copy.deepcopy(network)
    network["metadata"]["name"] = "linked"
    nodes = [n for n in network["spec"]["nodes"] if n["name"] != "cloud"]
    port = GRPC_NODE_PORT if protocol == "grpc" else REST_NODE_PORT
    for node in nodes:
        if node["name"] == "edge":
            node["links"] = [{"name": "cloud", "protocol": protocol, "timeoutMs": 500,
                              "endpoint": {"url": remote_url(cluster_b, port)}}]
    network["spec"]["nodes"] = nodes
    return network


def test_cluster_a_forwards_what_its_tiers_are_unsure_of_to_cluster_b(a, b, cluster_b):
    objects = manifests()
    models = [m for m in objects["InferenceModel"] if m["metadata"]["name"] != "mnist-cnn"]
    placement = copy.deepcopy(objects["ModelPlacement"][0])
    placement["metadata"]["name"] = "linked"
    placement["spec"] = {"network": "linked",
                         "nodes": [n for n in placement["spec"]["nodes"] if n["node"] != "cloud"]}
    a.apply(*models, *objects["DeliveryStrategy"], placement, linked_network(cluster_b, "rest"))
    ready(a, "linked")
    summary = replay(access_url(a), "--concurrency", "4")
    # the same cascade as `make run`, its cloud in the other cluster
    assert summary["errors"] == 0 and summary["fallback"] == 0, summary
    assert summary["accuracy"] == pytest.approx(0.985, abs=1e-9), summary
    assert summary["answeredBy"] == pytest.approx({"access": 0.472, "edge": 0.482, "cloud-b": 0.046}, abs=1e-9)


def access_url(a: Kube) -> str:
    url = f"http://{a.get('service', 'linked-access')['spec']['clusterIP']}:8000"
    serving(a, url)
    return url


def test_the_link_to_cluster_b_over_grpc_answers_the_same(a, cluster_b):
    generation = a.get(NETWORK, "linked")["metadata"]["generation"]
    a.apply(linked_network(cluster_b, "grpc"))
    wait_for("the edge rolled to its gRPC link", lambda: edge_rolled(a, generation), a, timeout=120)
    summary = replay(access_url(a), "--concurrency", "4")
    assert summary["errors"] == 0 and summary["fallback"] == 0, summary
    assert summary["answeredBy"] == pytest.approx({"access": 0.472, "edge": 0.482, "cloud-b": 0.046}, abs=1e-9)


def edge_rolled(a: Kube, generation: int) -> bool:
    network = a.get(NETWORK, "linked")
    if network["metadata"]["generation"] == generation:
        return False
    if condition(network, "Ready").get("status") != "True":
        return False
    config = a.get("configmap", "linked-edge")["data"]["agent.yaml"]
    d = a.get("deployments.apps", "linked-edge")["status"]
    return "protocol: grpc" in config and d.get("updatedReplicas") == d.get("replicas") == d.get("readyReplicas") == 1


def test_with_cluster_b_down_cluster_a_answers_everything_itself_flagged(a, cluster_b):
    """B's node stopped: nothing is lost; what A's edge would have sent to B it answers itself,
    each such item flagged as a fallback."""
    for node in cluster_b.real_nodes:
        node.process.stop(timeout=30)
        node.cleanup()
    summary = replay(access_url(a), "--concurrency", "4")
    assert summary["errors"] == 0, summary
    assert "cloud-b" not in summary["answeredBy"], summary
    assert summary["fallback"] == pytest.approx(0.046, abs=1e-9), summary
    assert upstream_errors(a) > 0


def upstream_errors(a: Kube) -> float:
    """idn_upstream_errors_total of A's edge pod, every kind summed."""
    (edge,) = a.items("pods", "-l", "idn.dev/network=linked,idn.dev/node=edge")
    with urllib.request.urlopen(f"http://{edge['status']['podIP']}:8000/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("idn_upstream_errors_total{"))
