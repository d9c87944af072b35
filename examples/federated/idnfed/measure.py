"""Replays through a running network with `idn replay`, and what they say per tier."""

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from idnfed.revision import SERVICE


@dataclass(frozen=True)
class Measured:
    """A replay's figures: accuracy, share answered per tier, mean latency."""

    requests: int
    errors: int
    accuracy: float
    mean_ms: float
    tiers: dict[str, float]

    @staticmethod
    def combine(parts: list["Measured"]) -> "Measured":
        """The figures of several replays taken together, weighted by their requests."""
        total = sum(p.requests for p in parts)
        share = lambda f: sum(f(p) * p.requests for p in parts) / total  # noqa: E731
        names = sorted({t for p in parts for t in p.tiers})
        return Measured(
            requests=total,
            errors=sum(p.errors for p in parts),
            accuracy=share(lambda p: p.accuracy),
            mean_ms=share(lambda p: p.mean_ms),
            tiers={t: share(lambda p, t=t: p.tiers.get(t, 0.0)) for t in names},
        )


def tier_of(node: str) -> str:
    """The tier of a node of the example network: access-1 → access."""
    return node.split("-", 1)[0]


def replay(idn: Path, url: str, sample: Path, concurrency: int = 2) -> Measured:
    """Sends `sample` (.npz) to the service at the node `url` and reads the summary."""
    done = subprocess.run(
        [str(idn), "replay", "--url", url, "--service", SERVICE, "--data", str(sample),
         "--output", "json", "--concurrency", str(concurrency)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"idn replay to {url} failed: {done.stderr.strip()[-1500:]}")
    (report,) = json.loads(done.stdout)
    tiers: dict[str, float] = {}
    for node, share in report["answeredBy"].items():
        tiers[tier_of(node)] = tiers.get(tier_of(node), 0.0) + share
    return Measured(
        requests=report["requests"],
        errors=report["errors"],
        accuracy=report["accuracy"],
        mean_ms=report["meanMs"],
        tiers=tiers,
    )
