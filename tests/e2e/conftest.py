"""Fixtures of the end-to-end suite: a real Kubernetes control plane (tests/cluster: etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and kwok, built from their pinned Go
modules), shared by every module of the session, or the cluster of IDN_E2E_KUBECONFIG; the
binaries under test. (The "incremental" marker is tests/conftest.py's.)

Environment:
  IDN_E2E_KUBECONFIG    run against this cluster (kind, a real one) instead of starting one
  IDN_OPERATOR_BINARY   the operator binary (default target/debug/idn-operator)
  IDN_E2E_TIMEOUT       seconds each wait may take (default 90)
"""

from __future__ import annotations

import os
import pathlib
import secrets
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "cluster"))

import cluster as harness  # noqa: E402
from kube import Kube, install_crds, start_operator, stop, token_kubeconfig  # noqa: E402

# The chart's release that the operator under test authenticates as (its ServiceAccount, RBAC
# and Lease name): helm install idn-operator charts/idn-operator -n idn-system.
RELEASE, RELEASE_NAMESPACE = "idn-operator", "idn-system"

def pytest_collection_modifyitems(items):
    """The RBAC check reads the audit log of everything the other modules made the operator do:
    it runs last."""
    items.sort(key=lambda item: item.module.__name__ == "test_rbac")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """The harness's cluster, started once for the session (None with IDN_E2E_KUBECONFIG)."""
    if os.environ.get("IDN_E2E_KUBECONFIG"):
        yield None
        return
    with harness.Cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture(scope="session")
def kubeconfig(cluster) -> pathlib.Path:
    """An administrator's kubeconfig of the cluster under test."""
    if cluster is None:
        return pathlib.Path(os.environ["IDN_E2E_KUBECONFIG"])
    return cluster.kubeconfig


@pytest.fixture(scope="session")
def operator_binary() -> pathlib.Path:
    binary = pathlib.Path(os.environ.get("IDN_OPERATOR_BINARY") or REPO / "target" / "debug" / "idn-operator")
    assert binary.exists(), f"{binary} is not built (cargo build -p idn-operator)"
    return binary


@pytest.fixture(scope="session")
def tools() -> dict[str, pathlib.Path]:
    """Helm and Prometheus binaries, built from their Go modules when not cached."""
    dirs = harness.ensure_built(("helm", "prometheus"))
    return {"helm": dirs["helm"] / "helm", "prometheus": dirs["prometheus"] / "prometheus",
            "promtool": dirs["prometheus"] / "promtool"}


@pytest.fixture(scope="session")
def admin(kubeconfig) -> Kube:
    """kubectl as the cluster's administrator, with idn's CRDs installed."""
    kube = Kube(kubeconfig, "default")
    install_crds(kube)
    return kube


@pytest.fixture(scope="session")
def operator_kubeconfig(admin, tools, tmp_path_factory) -> pathlib.Path:
    """The chart installed with no operator replica (the tests run the binary as a local
    process), and a kubeconfig holding a token of the chart's ServiceAccount: the operator gets
    the chart's RBAC and nothing more."""
    helm = [str(tools["helm"]), "--kubeconfig", str(admin.kubeconfig)]
    subprocess.run([*helm, "upgrade", "--install", RELEASE, str(REPO / "charts" / "idn-operator"),
                    "--namespace", RELEASE_NAMESPACE, "--create-namespace", "--skip-crds",
                    "--set", "replicaCount=0", "--wait", "--timeout", "120s"],
                   check=True, capture_output=True, text=True)
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    return token_kubeconfig(admin, RELEASE, RELEASE_NAMESPACE, path)


@pytest.fixture(scope="module")
def kube(admin) -> Kube:
    """kubectl as the administrator in a fresh namespace of the module's own."""
    kube = Kube(admin.kubeconfig, f"idn-e2e-{secrets.token_hex(3)}")
    kube.create_namespace()
    yield kube
    kube.run("delete", "namespace", kube.namespace, "--wait=false", check=False, namespaced=False)


@pytest.fixture(scope="module")
def operator(kube, operator_binary, operator_kubeconfig, tmp_path_factory) -> subprocess.Popen:
    """`idn-operator` as the chart's ServiceAccount, watching the test's namespace."""
    kube.log = tmp_path_factory.mktemp("operator") / "operator.log"
    kube.process = start_operator(operator_binary, operator_kubeconfig, kube.log,
                                  "--watch-namespace", kube.namespace,
                                  "--lease-namespace", "idn-system", "--lease-name", "idn-operator")
    yield kube.process
    stop(kube.process)
    print(kube.log_tail(200))
