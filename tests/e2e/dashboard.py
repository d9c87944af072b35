"""The chart's Grafana dashboard (charts/idn-operator/dashboards/idn.json) as PromQL queries that a
plain Prometheus answers: every panel's expressions, with the dashboard's variables replaced by
values that select everything.

The ratio and upstream-latency panels read the chart's recording rules: the Prometheus they run
against must load charts/idn-operator/rules/idn.rules.yaml.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Iterator

REPO = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts" / "idn-operator" / "dashboards" / "idn.json"

# What each variable becomes: the label filters (`$node`, `$service`) match every value, and
# the rate window is one that 1-second scrapes fill (Grafana's $__rate_interval is at least
# four scrape intervals).
VALUES = {
    "node": ".*",
    "service": ".*",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}
# Filters whose `.*` selects everything only in a regex matcher: `node="$node"` would select
# the series of a node named `.*`, that is, none.
REGEX_ONLY = {"node", "service"}

# $name, ${name}, ${name:format} and the old [[name]]
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def load(path: pathlib.Path = DASHBOARD) -> dict:
    return json.loads(path.read_text())


def panels(dashboard: dict) -> Iterator[dict]:
    """Every panel but rows, including those folded into a collapsed row."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") != "row":
            yield panel
        yield from panel.get("panels", [])


def substitute(expr: str) -> str:
    """`expr` with its variables replaced; a variable this module does not know, or a label
    filter outside a regex matcher, is an error rather than a query that silently selects
    nothing."""

    def value(match: re.Match) -> str:
        name = next(g for g in match.groups() if g)
        if name not in VALUES:
            raise ValueError(f"{expr!r}: no value for variable {name!r}")
        if name in REGEX_ONLY and not expr[: match.start()].rstrip('"').endswith("=~"):
            raise ValueError(f"{expr!r}: ${name} is used outside a regex matcher (=~)")
        return VALUES[name]

    return VARIABLE.sub(value, expr)


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expression) of every query target of every panel, in the dashboard's
    order, variables replaced (`$datasource` appears only in datasource fields and is ignored)."""
    return [
        (panel.get("title", ""), substitute(target["expr"]))
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
