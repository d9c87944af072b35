"""A user's first commands, with the real Helm (built from helm.sh/helm/v4) on the real API
server: `helm lint`; `helm template` accepted by `kubectl apply --dry-run=server`; `helm install`
with the chart's CRDs, its Deployment becoming Available; `helm uninstall` leaving nothing of
the release behind (CRDs stay, as Helm keeps them by design)."""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest

from kube import DEPLOYMENT, REPO, Kube, install_crds, wait_for

pytestmark = pytest.mark.incremental

CHART = REPO / "charts" / "idn-operator"
RELEASE = "idn-helm"
KINDS = "deployments,services,serviceaccounts,roles,rolebindings,configmaps,secrets"
CLUSTER_KINDS = "clusterroles,clusterrolebindings"


@pytest.fixture(scope="module")
def kube(admin) -> Kube:
    kube = Kube(admin.kubeconfig, f"idn-helm-{secrets.token_hex(3)}")
    yield kube
    install_crds(admin)  # the install step removed them; the next modules need them whatever happened


@pytest.fixture(scope="module")
def helm(tools, kube):
    def run(*args: str) -> str:
        done = subprocess.run([str(tools["helm"]), "--kubeconfig", str(kube.kubeconfig), *args],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"helm {' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout
    return run


def released(kube: Kube) -> list[str]:
    selector = f"app.kubernetes.io/instance={RELEASE}"
    names = kube.run("get", KINDS, "-l", selector, "-o", "name").split()
    return names + kube.run("get", CLUSTER_KINDS, "-l", selector, "-o", "name", namespaced=False).split()


def test_helm_lint(helm):
    out = helm("lint", str(CHART), "--strict")
    assert "0 chart(s) failed" in out, out
    for values in (["--set", "watchNamespaces={a,b}"], ["--set", "metrics.prometheusRule.enabled=true"]):
        assert "0 chart(s) failed" in helm("lint", str(CHART), *values)


def test_helm_template_passes_server_side_dry_run(helm, kube):
    kube.create_namespace()
    for values in ([], ["--set", "watchNamespaces={" + kube.namespace + "}"]):
        manifests = helm("template", RELEASE, str(CHART), "--namespace", kube.namespace, *values)
        done = kube.call("apply", "--dry-run=server", "-f", "-", input=manifests)
        assert done.returncode == 0, done.stderr
        assert "serverside-applied" in done.stdout or "created (server dry run)" in done.stdout, done.stdout


def test_helm_install_brings_the_operator_up(helm, kube):
    # The CRDs must come from the chart: remove those other modules installed.
    kube.run("delete", "-f", str(REPO / "crds"), "--ignore-not-found", "--wait=true", namespaced=False)
    helm("install", RELEASE, str(CHART), "--namespace", kube.namespace, "--wait", "--timeout", "120s")
    status = json.loads(helm("status", RELEASE, "--namespace", kube.namespace, "-o", "json"))
    assert status["info"]["status"] == "deployed", status["info"]
    for crd in ("inferencedeliverynetworks", "inferencemodels", "deliverystrategies", "modelplacements"):
        kube.run("wait", "--for=condition=Established", f"crd/{crd}.idn.dev", namespaced=False)
    deployment = wait_for("the chart's Deployment", lambda: kube.get(DEPLOYMENT, f"{RELEASE}-idn-operator"), kube)
    assert deployment["status"].get("availableReplicas") == 1, deployment["status"]
    notes = helm("get", "notes", RELEASE, "--namespace", kube.namespace)
    assert kube.namespace in notes


def test_helm_uninstall_leaves_nothing_of_the_release(helm, kube):
    assert released(kube), "the release created nothing?"
    helm("uninstall", RELEASE, "--namespace", kube.namespace, "--wait", "--timeout", "120s")
    wait_for("the release's objects to be gone", lambda: not released(kube), kube)
    assert not kube.items("pods", "-l", f"app.kubernetes.io/instance={RELEASE}")
    kube.run("delete", "namespace", kube.namespace, "--wait=false", namespaced=False)
