"""The operator across an API server restart (etcd kept): its watches recover and a change made
after the restart is reconciled; an invalid network, present all along, never takes it down."""

from __future__ import annotations

import json
import secrets

import pytest

from kube import NETWORK, REPO, STRATEGY, Kube, condition, start_operator, stop, wait_for

pytestmark = pytest.mark.incremental


@pytest.fixture(scope="module")
def kube(admin, cluster, operator_binary, operator_kubeconfig, tmp_path_factory):
    if cluster is None:
        pytest.skip("restarting the API server needs the suite's own cluster (not IDN_E2E_KUBECONFIG)")
    kube = Kube(admin.kubeconfig, f"idn-restart-{secrets.token_hex(3)}")
    kube.create_namespace()
    kube.run("apply", "-f", str(REPO / "examples" / "mnist"))
    kube.apply({"apiVersion": "idn.dev/v1alpha1", "kind": "InferenceDeliveryNetwork", "metadata": {"name": "broken"},
                "spec": {"nodes": [{"name": "solo", "services": [{"name": "mnist", "strategy": "missing"}]}]}})
    kube.log = tmp_path_factory.mktemp("restart") / "operator.log"
    kube.process = start_operator(operator_binary, operator_kubeconfig, kube.log,
                                  "--watch-namespace", kube.namespace, "--no-leader-election")
    yield kube
    stop(kube.process)
    print(kube.log_tail(120))
    kube.run("delete", "namespace", kube.namespace, "--wait=false", check=False, namespaced=False)


def test_before_the_restart(kube):
    wait_for("mnist Ready", lambda: condition(kube.get(NETWORK, "mnist"), "Ready").get("status") == "True", kube)
    wait_for("broken InvalidSpec",
             lambda: condition(kube.get(NETWORK, "broken"), "InvalidSpec").get("status") == "True", kube)


def test_a_change_after_an_api_server_restart_is_reconciled(kube, cluster):
    cluster.restart_apiserver(graceful=False)
    kube.patch(STRATEGY, "cascade-edge", {"spec": {"threshold": {"tau": 0.77}}})
    wait_for("the change after the restart to be reconciled",
             lambda: "0.77" in json.dumps(kube.get("configmaps", "mnist-edge")["data"]), kube, timeout=120)
    assert kube.process.poll() is None, f"the operator exited{kube.log_tail()}"
    assert condition(kube.get(NETWORK, "broken"), "InvalidSpec")["status"] == "True"
    # The broken network keeps being retried with backoff, not crash-looping the process.
    assert kube.log.read_text().count("idn_operator: serving /metrics") == 1
