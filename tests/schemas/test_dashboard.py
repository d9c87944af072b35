"""The chart's Grafana dashboard, with no cluster and no Grafana: the ConfigMap that Grafana's
dashboard sidecar loads (as kube-prometheus-stack sets it up: label grafana_dashboard: "1"), the
dashboard's shape, and every panel's query: accepted by promtool (the real Prometheus's parser,
built from its pinned Go module like the end-to-end suite's) and reading only series that the
node-agents export or the chart's rules record.

Whether each query returns data from a running cascade is for an end-to-end test against a real
Prometheus (tests/e2e/dashboard.py gives it the queries).
"""

import json
import re
import subprocess
import sys

import pytest
import yaml

from test_schemas import CHART, ROOT, check_names, render_chart, validate

sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "tests" / "cluster"))
import cluster as harness  # noqa: E402
from dashboard import DASHBOARD, VARIABLE, panel_queries, panels  # noqa: E402

RULES = CHART / "rules" / "idn.rules.yaml"
# Every series of the node-agent, as its metrics unit test pins them.
GOLDEN = ROOT / "node-agent" / "tests" / "golden" / "metrics.txt"
SERIES = re.compile(r"\bidn[a-z0-9_:]*")


def dashboard_configmaps(objects, label="grafana_dashboard"):
    return [o for o in objects if o["kind"] == "ConfigMap" and label in o["metadata"].get("labels", {})]


def test_the_chart_ships_the_dashboard_to_grafanas_sidecar():
    (configmap,) = dashboard_configmaps(render_chart({}))
    validate(configmap)
    check_names(configmap)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "idn-system"
    assert "annotations" not in configmap["metadata"]
    assert list(configmap["data"]) == ["idn.json"]
    assert json.loads(configmap["data"]["idn.json"]) == json.loads(DASHBOARD.read_text())


def test_the_dashboards_label_and_annotations_are_values():
    objects = render_chart(
        {"dashboards": {"label": "team_dashboard", "labelValue": 1, "annotations": {"grafana_folder": "idn"}}}
    )
    assert dashboard_configmaps(objects) == []
    (configmap,) = dashboard_configmaps(objects, "team_dashboard")
    # A number given with --set is still a string label value.
    assert configmap["metadata"]["labels"]["team_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "idn"}
    assert dashboard_configmaps(render_chart({"dashboards": {"enabled": False}})) == []


@pytest.fixture(scope="module")
def dashboard():
    return json.loads(DASHBOARD.read_text())


def test_the_dashboard_selects_its_datasource_node_and_service(dashboard):
    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "node", "service"}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("node", "service"):
        variable = variables[name]
        assert variable["type"] == "query" and variable["datasource"]["uid"] == "${datasource}"
        assert re.fullmatch(rf"label_values\(idn_decisions_total(\{{.*\}})?, {name}\)", variable["definition"])
        assert variable["query"]["query"] == variable["definition"]
        # "All" is a regex that also matches a series without the label.
        assert variable["includeAll"] and variable["allValue"] == ".*"
    rows_and_panels = [*dashboard["panels"], *(p for row in dashboard["panels"] for p in row.get("panels", []))]
    ids = [p["id"] for p in rows_and_panels]
    assert len(ids) == len(set(ids)), ids


def test_every_panel_queries_prometheus(dashboard):
    assert len(list(panels(dashboard))) >= 14
    for panel in panels(dashboard):
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], f"{title}: no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{title}: an empty query"
            assert target["datasource"] == panel["datasource"], title
            # Rates over Grafana's window, which follows the scrape interval and the zoom.
            for window in re.findall(r"\[([^\]]*)\]", target["expr"]):
                assert window == "$__rate_interval", f"{title}: range [{window}]"
            for name in {m.group(1) or m.group(2) or m.group(3) for m in VARIABLE.finditer(target["expr"])}:
                assert name in ("node", "service", "__rate_interval"), f"{title}: ${name}"


def recording_rules():
    """{record: expr} of the chart's recording rules."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["record"]: r["expr"] for g in groups for r in g["rules"] if "record" in r}


def exported_series():
    """Names of the node-agent's series and of the chart's recording rules."""
    samples = {line.split("{")[0].split(" ")[0] for line in GOLDEN.read_text().splitlines() if line.startswith("idn")}
    return samples | set(recording_rules())


def family(series):
    return re.sub(r"_(bucket|sum|count)$", "", series)


def test_the_queries_read_only_series_that_exist(dashboard):
    exported = exported_series()
    queried = set()
    for title, expr in panel_queries(dashboard):
        for name in SERIES.findall(expr):
            assert name in exported, f"{title}: {name} is neither exported by the node-agent nor recorded"
            queried.add(name)
    for variable in dashboard["templating"]["list"]:
        queried.update(SERIES.findall(variable.get("definition", "")))
    assert queried <= exported
    # Every recording rule and every family of the node-agent is on the dashboard, directly or
    # through a rule; the forward ratio since start is left to the rule's ratio over 5 minutes.
    rules = recording_rules()
    read = queried | {name for rule in queried & set(rules) for name in SERIES.findall(rules[rule])}
    assert {family(name) for name in exported} - {family(name) for name in read} == {"idn_forward_ratio"}


@pytest.fixture(scope="module")
def promtool():
    return harness.ensure_built(("prometheus",))["prometheus"] / "promtool"


def check_rules(promtool, exprs, path):
    """`promtool check rules` on a file with one recording rule per expression: promtool has no
    command that checks an expression alone."""
    groups = [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]}]
    path.write_text(yaml.safe_dump({"groups": groups}))
    return subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_every_query(dashboard, promtool, tmp_path):
    queries = panel_queries(dashboard)
    done = check_rules(promtool, [expr for _, expr in queries], tmp_path / "dashboard.rules.yaml")
    assert done.returncode == 0, "\n".join(f"query_{i} {t}: {e}" for i, (t, e) in enumerate(queries)) + done.stdout + done.stderr
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout, done.stdout
    # The check is not vacuous: a broken query fails it.
    broken = check_rules(promtool, ["sum(rate(idn_requests_total[1m])"], tmp_path / "broken.rules.yaml")
    assert broken.returncode != 0 and "unclosed left parenthesis" in broken.stdout + broken.stderr
