"""Two operator replicas on one Lease, as the chart's ServiceAccount: only the holder reconciles;
SIGKILL it and the other takes over within the lease duration, and a change made meanwhile is
reconciled (no reconcile is lost)."""

from __future__ import annotations

import json
import re
import secrets
import signal
import time
import urllib.request

import pytest

from kube import NETWORK, REPO, STRATEGY, Kube, condition, start_operator, stop, wait_for

pytestmark = pytest.mark.incremental

LEASE_DURATION_S = 15
# A standby tries for the lease every retry period (client-go's 2 s).
RETRY_PERIOD_S = 2
LEASE = ("idn-system", "idn-operator")


def metrics_url(log) -> str | None:
    match = re.search(r"serving /metrics, /healthz, /readyz addr=(\S+)", log.read_text())
    return f"http://{match.group(1)}/metrics" if match else None


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


class Replica:
    def __init__(self, identity, binary, kubeconfig, namespace, log):
        self.identity, self.log = identity, log
        self.process = start_operator(binary, kubeconfig, log, "--watch-namespace", namespace,
                                      "--lease-namespace", LEASE[0], "--lease-name", LEASE[1],
                                      "--identity", identity)

    def leading(self) -> bool:
        return "leading" in self.log.read_text()


@pytest.fixture(scope="module")
def kube(admin) -> Kube:
    kube = Kube(admin.kubeconfig, f"idn-leader-{secrets.token_hex(3)}")
    kube.create_namespace()
    kube.run("apply", "-f", str(REPO / "examples" / "mnist"))
    yield kube
    kube.run("delete", "namespace", kube.namespace, "--wait=false", check=False, namespaced=False)


@pytest.fixture(scope="module")
def replicas(kube, operator_binary, operator_kubeconfig, tmp_path_factory):
    logs = tmp_path_factory.mktemp("replicas")
    first = Replica("replica-a", operator_binary, operator_kubeconfig, kube.namespace, logs / "a.log")
    started = [first]
    try:
        wait_for("replica-a to lead", first.leading, kube, timeout=LEASE_DURATION_S * 3)
        second = Replica("replica-b", operator_binary, operator_kubeconfig, kube.namespace, logs / "b.log")
        started.append(second)
        yield first, second
    finally:
        for replica in started:
            stop(replica.process)
            print(f"--- {replica.identity} ---\n" + replica.log.read_text()[-3000:])


def holder(kube: Kube) -> str | None:
    lease = json.loads(kube.run("get", "lease", LEASE[1], "-n", LEASE[0], "-o", "json", namespaced=False))
    return lease["spec"].get("holderIdentity")


def test_only_the_lease_holder_reconciles(kube, replicas):
    first, second = replicas
    wait_for("the network to be reconciled", lambda: condition(kube.get(NETWORK, "mnist"), "Ready").get("status"), kube)
    assert holder(kube) == "replica-a"
    second_metrics = wait_for("replica-b's metrics endpoint", lambda: metrics_url(second.log), kube)
    first_metrics = metrics_url(first.log)
    time.sleep(2 * RETRY_PERIOD_S + 1)  # two tries of the standby: it must stay a standby
    assert not second.leading() and second.process.poll() is None
    assert metric(second_metrics, "idn_operator_leader") == 0
    assert metric(second_metrics, "idn_operator_reconciliations_total") == 0
    assert metric(first_metrics, "idn_operator_leader") == 1
    assert metric(first_metrics, "idn_operator_reconciliations_total") > 0


def test_the_standby_takes_over_when_the_leader_is_killed(kube, replicas):
    first, second = replicas
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    killed = time.monotonic()
    # A change while nobody leads: the new leader must still reconcile it.
    kube.patch(STRATEGY, "cascade-edge", {"spec": {"threshold": {"tau": 0.93}}})
    wait_for("replica-b to lead", second.leading, kube, timeout=LEASE_DURATION_S * 2)
    took = time.monotonic() - killed
    # The standby takes the lease once it has seen the last renewal unchanged for the lease
    # duration by its own clock: it sees the renewal at most a retry period after it is made, and
    # the expiry at most a retry period after it comes.
    bound = LEASE_DURATION_S + 2 * RETRY_PERIOD_S + 2
    assert took <= bound, f"takeover took {took:.1f} s (lease {LEASE_DURATION_S} s)"
    assert holder(kube) == "replica-b"
    wait_for("the change made during the takeover to be reconciled",
             lambda: "0.93" in json.dumps(kube.get("configmaps", "mnist-edge")["data"]), kube)
    assert second.process.poll() is None
