"""Schema validation of what idn sends to a cluster, with no cluster: the Helm chart, the objects
the operator renders, and the custom resources against their CRDs.

Tools: Helm's own template engine (helm-python-sdk, Helm v4 as a library, renders offline like
`helm template`), the Kubernetes OpenAPI schemas bundled with kubernetes-validate (strict mode:
an unknown field fails) and check-jsonschema. What schemas cannot see is left to an API server:
the CEL rules (x-kubernetes-validations) of the CRDs and name formats beyond the checks here.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/idn-operator"
CRDS = ROOT / "crds/idn.dev.yaml"
EXAMPLE = ROOT / "examples/mnist"
IDN = Path(os.environ.get("IDN_BIN", ROOT / "target/debug/idn"))

# The newest Kubernetes whose schemas kubernetes-validate bundles.
KUBERNETES = latest_version()

RELEASE = "idn"
RELEASE_NAMESPACE = "idn-system"
# <release>-<chart>, the chart's full name for this release.
FULLNAME = "idn-idn-operator"
UID = 65532

# Exactly what the operator does with each resource in the namespaces it watches.
WATCH_PERMISSIONS = {
    ("idn.dev", "inferencedeliverynetworks"): {"list", "watch"},
    ("idn.dev", "inferencedeliverynetworks/status"): {"patch"},
    ("idn.dev", "inferencemodels"): {"list", "watch"},
    ("idn.dev", "deliverystrategies"): {"list", "watch"},
    ("idn.dev", "modelplacements"): {"list", "watch"},
    ("", "configmaps"): {"list", "watch", "create", "patch", "delete"},
    ("", "services"): {"list", "watch", "create", "patch", "delete"},
    ("apps", "deployments"): {"list", "watch", "create", "patch", "delete"},
    ("autoscaling", "horizontalpodautoscalers"): {"list", "watch", "create", "patch", "delete"},
    ("policy", "poddisruptionbudgets"): {"list", "watch", "create", "patch", "delete"},
    ("", "secrets"): {"list", "watch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
LEASE_PERMISSIONS = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def render_chart(values):
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=RELEASE_NAMESPACE, is_install=True)
    return [
        doc
        for path, text in sorted(manifests.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def of_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def one(objects, kind):
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def validate(obj):
    """Strict validation against the Kubernetes OpenAPI schemas; fails with the field's path."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path)
        pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {path}: {error.message}", pytrace=False)


def check_names(obj):
    """Name and label rules the API server enforces but the schemas do not encode."""
    name = obj["metadata"]["name"]
    # Services need DNS-1035 labels; the other kinds here accept DNS-1123 labels.
    pattern = DNS_1035_LABEL if obj["kind"] == "Service" else DNS_LABEL
    assert len(name) <= 63 and pattern.match(name), f"{obj['kind']} name {name!r}"
    for value in obj["metadata"].get("labels", {}).values():
        assert len(value) <= 63 and LABEL_VALUE.match(value), f"label value {value!r}"


def permissions(role):
    """{(apiGroup, resource): verbs} granted by a Role or ClusterRole."""
    granted = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def operator_container(objects):
    deployment = one(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


CHART_VALUES = {
    "default": {},
    "namespaced": {"watchNamespaces": ["a", "b"]},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "no-leader-election": {"leaderElection": {"enabled": False}},
    "tracing": {"tracing": {"otlpEndpoint": "http://otel-collector.observability:4318"}},
}


def test_kubernetes_schemas_are_recent():
    assert tuple(int(n) for n in KUBERNETES.split(".")[:2]) >= (1, 30)


def test_chart_lints_clean():
    report = helm.lint(CHART, strict=True, namespace=RELEASE_NAMESPACE, kube_version=f"v{KUBERNETES}")
    assert report["errors"] == []
    # Severity 1 is informational (e.g. "icon is recommended").
    assert [m for m in report["messages"] if m["severity"] > 1] == []


@pytest.mark.parametrize("case", CHART_VALUES)
def test_chart_objects_are_valid(case):
    objects = render_chart(CHART_VALUES[case])
    for obj in objects:
        if obj["kind"] == "ServiceMonitor":
            # A Prometheus Operator CRD, not in the Kubernetes schemas: check that it scrapes
            # the metrics Service.
            service = one(objects, "Service")
            labels = service["metadata"]["labels"]
            assert obj["apiVersion"] == "monitoring.coreos.com/v1"
            assert obj["metadata"]["labels"]["release"] == "prom"
            assert obj["spec"]["selector"]["matchLabels"].items() <= labels.items()
            assert obj["spec"]["namespaceSelector"]["matchNames"] == [RELEASE_NAMESPACE]
            assert [e["port"] for e in obj["spec"]["endpoints"]] == ["metrics"]
        else:
            validate(obj)
        check_names(obj)
    assert bool(of_kind(objects, "ServiceMonitor")) == (case == "service-monitor")


def test_chart_cluster_wide_rbac():
    objects = render_chart({})
    cluster_role = one(objects, "ClusterRole")
    assert permissions(cluster_role) == WATCH_PERMISSIONS
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": cluster_role["metadata"]["name"],
    }
    account = one(objects, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": RELEASE_NAMESPACE}
    ]
    (lease_role,) = of_kind(objects, "Role")
    assert lease_role["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert permissions(lease_role) == LEASE_PERMISSIONS
    # Only create is unrestricted (a create request has no name to authorize); the operator
    # reads and renews just the Lease it is told to use.
    lease_name = next(
        a.split("=", 1)[1] for a in operator_container(objects)["args"] if a.startswith("--lease-name=")
    )
    for rule in lease_role["rules"]:
        if set(rule["verbs"]) != {"create"}:
            assert rule["resourceNames"] == [lease_name]
    (lease_binding,) = of_kind(objects, "RoleBinding")
    assert lease_binding["roleRef"]["name"] == lease_role["metadata"]["name"]
    assert lease_binding["subjects"] == binding["subjects"]


def test_chart_namespaced_rbac():
    objects = render_chart({"watchNamespaces": ["a", "b", "a"]})
    assert of_kind(objects, "ClusterRole") == [] and of_kind(objects, "ClusterRoleBinding") == []
    roles = {r["metadata"]["namespace"]: r for r in of_kind(objects, "Role")}
    assert sorted(roles) == ["a", "b", RELEASE_NAMESPACE]
    for namespace in ["a", "b"]:
        assert permissions(roles[namespace]) == WATCH_PERMISSIONS
    assert permissions(roles[RELEASE_NAMESPACE]) == LEASE_PERMISSIONS
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(objects, "RoleBinding")}
    assert sorted(bindings) == sorted(roles)
    for namespace, binding in bindings.items():
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["roleRef"]["name"] == roles[namespace]["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NAMESPACE}
        ]
    watched = [a for a in operator_container(objects)["args"] if a.startswith("--watch-namespace")]
    assert watched == ["--watch-namespace=a", "--watch-namespace=b"]


@pytest.mark.parametrize("case", CHART_VALUES)
def test_chart_rbac_has_no_wildcards(case):
    for obj in render_chart(CHART_VALUES[case]):
        for rule in obj.get("rules", []):
            for field in ["apiGroups", "resources", "verbs", "resourceNames"]:
                assert "*" not in rule.get(field, []), f"{obj['kind']} {obj['metadata']['name']}: {rule}"


def test_chart_without_leader_election():
    objects = render_chart(CHART_VALUES["no-leader-election"])
    assert of_kind(objects, "Role") == [] and of_kind(objects, "RoleBinding") == []
    args = operator_container(objects)["args"]
    assert "--no-leader-election" in args
    assert not any(a.startswith("--lease-name") for a in args)
    with pytest.raises(helm.HelmError, match="leaderElection"):
        render_chart({"leaderElection": {"enabled": False}, "replicaCount": 2})


def test_chart_tracing_sets_the_otel_environment():
    env = operator_container(render_chart(CHART_VALUES["tracing"]))["env"]
    otel = {e["name"]: e["value"] for e in env if e["name"].startswith("OTEL_")}
    assert otel == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "idn-operator",
    }


def test_chart_deployment_is_locked_down():
    objects = render_chart({})
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # The pod needs the API; nothing else using the account gets a token.
    assert pod["automountServiceAccountToken"] is True
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    container = operator_container(objects)
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["image"] == "idn-operator:0.1.0"
    assert container["args"] == [
        "--metrics-addr=0.0.0.0:8080",
        "--agent-image=idn-node-agent:0.1.0",
        "--fetch-image=curlimages/curl:8.11.1",
        "--log-format=json",
        "--log-level=info",
        f"--lease-name={FULLNAME}",
    ]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    service = one(objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    template_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= template_labels.items()


def test_chart_crds_are_the_generated_ones():
    assert (CHART / "crds/idn.dev.yaml").read_text() == CRDS.read_text(), "run `make crds`"


def load_crds():
    return {crd["spec"]["names"]["kind"]: crd for crd in yaml.safe_load_all(CRDS.read_text())}


def test_crds_are_valid():
    for crd in load_crds().values():
        validate(crd)


def test_operator_objects_for_the_example_are_valid():
    assert IDN.is_file(), f"{IDN} is missing: run `cargo build --workspace --bins` or set IDN_BIN"
    out = subprocess.run(
        [IDN, "render", "-f", EXAMPLE], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(out) if doc]
    # The cloud node runs two replicas, hence its disruption budget.
    assert sorted({o["kind"] for o in objects}) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]
    assert len(objects) == 10, "three nodes, three objects each, and the budget"
    for obj in objects:
        validate(obj)
        check_names(obj)


# Custom resources against their CRDs' openAPIV3Schema, with check-jsonschema.


@pytest.fixture(scope="module")
def schemas(tmp_path_factory):
    """Each CRD's schema as a JSON Schema file, by kind.

    The schemas are OpenAPI 3.0 schema objects, whose JSON Schema draft is 4 (e.g. a boolean
    `exclusiveMinimum`). OpenAPI's `nullable` has no draft 4 spelling and is left out: a null is
    rejected here where the API server would accept it; no example uses one.
    """
    directory = tmp_path_factory.mktemp("schemas")
    paths = {}
    for kind, crd in load_crds().items():
        (version,) = crd["spec"]["versions"]
        schema = {"$schema": "http://json-schema.org/draft-04/schema#", **version["schema"]["openAPIV3Schema"]}
        paths[kind] = directory / f"{kind}.json"
        paths[kind].write_text(json.dumps(schema))
    return paths


def example_resources():
    return [doc for path in sorted(EXAMPLE.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def check_jsonschema(schema, resources, directory):
    """Runs the check-jsonschema CLI; returns its errors as (path, message)."""
    instances = []
    for i, resource in enumerate(resources):
        instances.append(directory / f"{resource['kind']}-{i}.json")
        instances[-1].write_text(json.dumps(resource))
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--output-format", "json", "--schemafile", schema, *instances],
        capture_output=True,
        text=True,
    )
    report = json.loads(result.stdout)
    # Only a failed run reports parse errors.
    assert report.get("parse_errors", []) == [], result.stdout
    errors = [(e["path"], e["message"]) for e in report["errors"]]
    assert (result.returncode != 0) == bool(errors), result.stdout + result.stderr
    return errors


def test_examples_match_their_crds(schemas, tmp_path):
    resources = example_resources()
    assert {r["kind"] for r in resources} == set(schemas), "every CRD has an example"
    for kind, schema in schemas.items():
        assert check_jsonschema(schema, [r for r in resources if r["kind"] == kind], tmp_path) == []


def example(kind, name):
    return next(r for r in example_resources() if r["kind"] == kind and r["metadata"]["name"] == name)


def broken_tau(resource):
    resource["spec"]["threshold"]["tau"] = 1.3


def broken_tier(resource):
    resource["spec"]["nodes"][0]["tier"] = "moon"


def broken_node_name(resource):
    resource["spec"]["nodes"][1]["name"] = "Edge_1"


def broken_sha256(resource):
    resource["spec"]["source"]["sha256"] = "not-a-digest"


def missing_source(resource):
    del resource["spec"]["source"]


def missing_placement_network(resource):
    del resource["spec"]["network"]


# Unknown fields are not among them: structural schemas (these CRDs have no
# `additionalProperties: false`) make the API server prune them rather than reject them.
BROKEN = {
    "tau-above-1": ("DeliveryStrategy", "cascade-access", broken_tau, "$.spec.threshold.tau", "1.3 is greater than the maximum of 1.0"),
    "unknown-tier": ("InferenceDeliveryNetwork", "mnist", broken_tier, "$.spec.nodes[0].tier", "'moon' is not one of"),
    "node-name-not-dns": ("InferenceDeliveryNetwork", "mnist", broken_node_name, "$.spec.nodes[1].name", "does not match"),
    "sha256-not-hex": ("InferenceModel", "mnist-cnn", broken_sha256, "$.spec.source.sha256", "does not match"),
    "missing-source": ("InferenceModel", "mnist-mlp", missing_source, "$.spec", "'source' is a required property"),
    "missing-network": ("ModelPlacement", "mnist", missing_placement_network, "$.spec", "'network' is a required property"),
}


@pytest.mark.parametrize("kind, name, breaks, path, message", BROKEN.values(), ids=BROKEN.keys())
def test_broken_examples_are_rejected(schemas, tmp_path, kind, name, breaks, path, message):
    resource = example(kind, name)
    breaks(resource)
    errors = check_jsonschema(schemas[kind], [resource], tmp_path)
    assert len(errors) == 1 and errors[0][0] == path and message in errors[0][1], errors
