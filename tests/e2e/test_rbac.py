"""The chart's RBAC against what the operator actually asked for, read from the API server's
audit log after the other modules ran the operator (as the chart's ServiceAccount) through
every scenario: nothing it asked for was forbidden, and every verb the chart grants was used,
but for those listed in UNUSED with the reason they are granted anyway.

Runs after every other module (conftest.py orders it last)."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime

import pytest
import yaml

from conftest import RELEASE, RELEASE_NAMESPACE
from kube import REPO

ACCOUNT = f"system:serviceaccount:{RELEASE_NAMESPACE}:{RELEASE}"
# A restarted kube-apiserver serves requests before its RBAC caches are filled, and refuses
# them meanwhile (a second or two here); the operator retries. Refusals that soon after a
# restart are the server's, not the chart's.
WARM_UP_S = 10

# Granted but never in the audit log, and why they stay: server-side apply creates an object
# with a patch, which the API server authorizes as create as well (the log records the patch).
UNUSED = {(group, name, "create") for group, name in (
    ("", "configmaps"), ("", "services"), ("apps", "deployments"),
    ("autoscaling", "horizontalpodautoscalers"), ("policy", "poddisruptionbudgets"))}


def requests(cluster) -> list[dict]:
    events = [json.loads(line) for line in cluster.audit_log.read_text().splitlines() if line.strip()]
    return [e for e in events if e["user"]["username"] == ACCOUNT and "objectRef" in e]


def resource(event: dict) -> tuple[str, str]:
    ref = event["objectRef"]
    name = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    return ref.get("apiGroup", ""), name


def granted(tools) -> set[tuple[str, str, str]]:
    manifests = subprocess.run([str(tools["helm"]), "template", RELEASE, str(REPO / "charts" / "idn-operator"),
                                "--namespace", RELEASE_NAMESPACE], capture_output=True, text=True, check=True).stdout
    grants = set()
    for doc in yaml.safe_load_all(manifests):
        if doc and doc["kind"] in ("ClusterRole", "Role"):
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for name in rule["resources"]:
                        grants.update((group, name, verb) for verb in rule["verbs"])
    return grants


@pytest.fixture(scope="module")
def audit(cluster):
    if cluster is None:
        pytest.skip("the audit log is the suite's own cluster's (not IDN_E2E_KUBECONFIG)")
    seen = requests(cluster)
    assert seen, f"no request of {ACCOUNT} in the audit log: did the operator modules run?"
    return seen


def received(event: dict) -> float:
    return datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()


def test_the_operator_was_never_forbidden(audit, cluster):
    restarts = cluster.procs["kube-apiserver"].started[1:]
    warming_up = lambda e: any(0 <= received(e) - start <= WARM_UP_S for start in restarts)  # noqa: E731
    forbidden = sorted({(*resource(e), e["verb"]) for e in audit
                        if e.get("responseStatus", {}).get("code") == 403 and not warming_up(e)})
    assert not forbidden, f"the chart does not grant what the operator needs: {forbidden}"


def test_every_grant_of_the_chart_is_used(audit, tools):
    used = {(*resource(e), e["verb"]) for e in audit}
    unused = granted(tools) - used - UNUSED
    print("used:", *sorted(used), sep="\n  ")
    assert not unused, f"the chart grants what the operator never asked for: {sorted(unused)}"
