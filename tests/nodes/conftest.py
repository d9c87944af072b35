"""Fixtures of the real-node suite: a Kubernetes cluster whose nodes run containers for real
(tests/cluster: the control plane, and per node a kubelet, kube-proxy and containerd in their own
namespaces, CoreDNS for the cluster's names), with idn's images built from this checkout
(tests/cluster/images.py, from the Dockerfile) and imported into every node.

On a machine where real nodes cannot run (no root, no cgroup v1 hierarchies, missing host
tools) the suite is skipped with the reason; under CI (CI=true) that is a failure instead.

Environment:
  IDN_E2E_TIMEOUT       seconds each wait may take (default 90)
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import subprocess
import sys
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "cluster"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import cluster as harness  # noqa: E402
import images  # noqa: E402
import nodes as realnodes  # noqa: E402
from kube import Kube, wait_for  # noqa: E402

# Real nodes of the cluster: enough for pods of one network to talk across nodes.
REAL_NODES = 2
IDN = REPO / "target" / "debug" / "idn"


def require_real_nodes():
    why = realnodes.why_not_supported()
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"real nodes cannot run on this machine, and CI must run them: {why}")
    pytest.skip(f"real nodes cannot run on this machine: {why}")


@pytest.fixture(scope="session")
def image_tarballs(tmp_path_factory) -> dict[str, pathlib.Path]:
    """The Dockerfile's targets (node-agent, operator, models), built from this checkout's debug
    binaries without a Docker engine."""
    require_real_nodes()
    bins = harness.ensure_built(("crane",))
    return images.build_targets(None, profile="debug", out_dir=tmp_path_factory.mktemp("images"),
                                crane=bins["crane"] / "crane", cache=pathlib.Path.home() / ".cache" / "idn" / "images")


def start_cluster(workdir: pathlib.Path, index: int, tarballs) -> harness.Cluster:
    return harness.Cluster(workdir, nodes=0, real_nodes=REAL_NODES, index=index, images=list(tarballs)).start(timeout=180)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, image_tarballs):
    """Cluster A: the control plane and REAL_NODES real nodes, the images imported."""
    started = start_cluster(tmp_path_factory.mktemp("cluster-a"), 0, image_tarballs.values())
    yield started
    started.stop()


@pytest.fixture(scope="session")
def cluster_b(tmp_path_factory, image_tarballs, cluster):
    """Cluster B: a second control plane with a real node of its own, on the same machine (its
    nodes reach cluster A's, as two clusters on one network)."""
    started = harness.Cluster(tmp_path_factory.mktemp("cluster-b"), nodes=0, real_nodes=1, index=1,
                              images=list(image_tarballs.values())).start(timeout=180)
    yield started
    started.stop()


@pytest.fixture(scope="session")
def helm() -> pathlib.Path:
    return harness.ensure_built(("helm",))["helm"] / "helm"


@pytest.fixture(scope="session")
def admin(cluster) -> Kube:
    return Kube(cluster.kubeconfig, "default")


# The chart's release: the operator's own image as a pod, its CRDs, RBAC and Lease.
RELEASE, RELEASE_NAMESPACE = "idn-operator", "idn-system"


def helm_install(helm: pathlib.Path, kubeconfig: pathlib.Path):
    """helm install of the chart, waiting for the operator's Deployment to be Available."""
    done = subprocess.run([str(helm), "--kubeconfig", str(kubeconfig), "install", RELEASE,
                           str(REPO / "charts" / "idn-operator"), "--namespace", RELEASE_NAMESPACE,
                           "--create-namespace", "--set", "logFormat=text", "--wait", "--timeout", "180s"],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"helm install failed: {done.stderr}"


@pytest.fixture(scope="session")
def operator(cluster, helm) -> Kube:
    """The operator installed by the chart in cluster A; kubectl in its namespace."""
    helm_install(helm, cluster.kubeconfig)
    return Kube(cluster.kubeconfig, RELEASE_NAMESPACE)


@pytest.fixture(scope="module")
def kube(admin) -> Kube:
    """kubectl as the administrator in a fresh namespace of the module's own."""
    kube = Kube(admin.kubeconfig, f"idn-nodes-{secrets.token_hex(3)}")
    kube.create_namespace()
    yield kube
    kube.run("delete", "namespace", kube.namespace, "--wait=false", check=False, namespaced=False)


def serving(kube: Kube, url: str) -> None:
    """Waits until `url` answers ready: a new Service reaches the kube-proxies a moment after its
    network is Ready."""
    def ready():
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    wait_for(f"{url} to answer", ready, kube, timeout=60)


def replay(url: str, *args: str, timeout: float = 600) -> dict:
    """`idn replay` from the host into a Service's address: the summary of the one service."""
    done = subprocess.run([str(IDN), "replay", "--url", url, "--output", "json", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert done.returncode == 0, f"idn replay failed ({done.returncode}): {done.stderr[-3000:]}"
    summaries = json.loads(done.stdout)
    return summaries[0] if isinstance(summaries, list) else summaries
