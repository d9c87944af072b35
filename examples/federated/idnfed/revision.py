"""A revision of the network: the tiers' ONNX files, their thresholds at the forward budget, and
the manifests `idn up` (or `kubectl apply`) takes. Writing a revision is the rollout."""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from idnfed import tiers

SERVICE = "digits"
MODELS = {"access": "fed-access", "edge": "fed-edge"}
CLAIM = "idn-federated-models"  # where a cluster keeps the revisions' files
LINK_MS = {"edge": 5, "cloud": 40}


def by_tier(flat: dict) -> dict[str, dict]:
    """`{"access.W0": a, "edge.W0": b}` → `{"access": {"W0": a}, "edge": {"W0": b}}`: both
    tiers' arrays travel in one record, their names prefixed by the tier."""
    split: dict[str, dict] = {tier: {} for tier in MODELS}
    for key, value in flat.items():
        tier, _, name = key.partition(".")
        split[tier][name] = value
    return split


def flat(per_tier: dict[str, dict]) -> dict:
    """The inverse of `by_tier`."""
    return {f"{tier}.{name}": v for tier, arrays in per_tier.items() for name, v in arrays.items()}


@dataclass(frozen=True)
class Budget:
    """Shares of all requests that may leave the access tier and reach the cloud."""

    edge: float
    cloud: float

    def __post_init__(self):
        if not 0 < self.cloud <= self.edge <= 1:
            raise ValueError(f"need 0 < cloud share <= edge share <= 1, got {self}")


def thresholds(p_access: np.ndarray, p_edge: np.ndarray, budget: Budget) -> tuple[float, float]:
    """τ of the access and edge tiers (answer locally when max probability ≥ τ) such that, on
    the calibration items whose max probabilities these are, `budget.edge` of them are
    forwarded by the access tier and `budget.cloud` of them reach the cloud."""
    n = len(p_access)
    k_access = int(round(budget.edge * n))
    tau_access = _cut(p_access, k_access)
    forwarded = p_access < tau_access
    tau_edge = _cut(p_edge[forwarded], int(round(budget.cloud * n)))
    return tau_access, tau_edge


def _cut(p: np.ndarray, k: int) -> float:
    """The τ below which exactly the `k` least confident of `p` fall (ties aside)."""
    ordered = np.sort(p)
    if k <= 0:
        return 0.0
    if k >= len(ordered):
        return 1.0 + 1e-9 if len(ordered) else 1.0
    return float(ordered[k])


@dataclass(frozen=True)
class Revision:
    """One rollout: each tier's weights, file and sha256, and the thresholds."""

    arrays: dict[str, dict[str, np.ndarray]]
    sha256: dict[str, str]
    tau: dict[str, float]

    def short(self, tier: str) -> str:
        return self.sha256[tier][:12]


def build(
    arrays: dict[str, dict[str, np.ndarray]],
    calibration: np.ndarray,
    budget: Budget,
    models_dir: Path,
) -> Revision:
    """Exports both tiers to `models_dir` (named by their sha256, so files are never
    overwritten) and calibrates their thresholds on `calibration`."""
    sha = {}
    models_dir.mkdir(parents=True, exist_ok=True)
    for tier, name in MODELS.items():
        onnx = tiers.to_onnx(arrays[tier], name)
        sha[tier] = hashlib.sha256(onnx).hexdigest()
        path = models_dir / f"{name}-{sha[tier][:12]}.onnx"
        if not path.exists():
            _write_atomically(path, onnx)
    p_access = tiers.probabilities(arrays["access"], calibration).max(axis=1)
    p_edge = tiers.probabilities(arrays["edge"], calibration).max(axis=1)
    tau_access, tau_edge = thresholds(p_access, p_edge, budget)
    return Revision(arrays, sha, {"access": tau_access, "edge": tau_edge})


def save_arrays(revision: Revision, path: Path) -> None:
    """The revision's weights, one .npz per tier (`<path>.<tier>.npz`), for the next round."""
    for tier, arrays in revision.arrays.items():
        np.savez(path.with_name(f"{path.name}.{tier}.npz"), **arrays)


def manifests(revision: Revision, nodes: int, cloud_sha256: str) -> str:
    """The network's custom resources for this revision: models, strategies, network,
    placement. `nodes` access nodes forward to one edge node, which forwards to the cloud."""
    access = [f"access-{i + 1}" for i in range(nodes)]
    docs = [
        _model(MODELS["access"], "access", f"{MODELS['access']}-{revision.short('access')}.onnx", revision.sha256["access"]),
        _model(MODELS["edge"], "edge", f"{MODELS['edge']}-{revision.short('edge')}.onnx", revision.sha256["edge"]),
        _model("mnist-cnn", "cloud", "mnist-cnn.onnx", cloud_sha256),
        _threshold("access-cascade", revision.tau["access"]),
        _threshold("edge-cascade", revision.tau["edge"]),
        "apiVersion: idn.dev/v1alpha1\nkind: DeliveryStrategy\nmetadata:\n  name: serve-local\n"
        "spec:\n  local: {}\n",
        _network(access),
        _placement(access),
    ]
    return "---\n".join(docs)


def _model(name: str, tier: str, path: str, sha256: str) -> str:
    return f"""apiVersion: idn.dev/v1alpha1
kind: InferenceModel
metadata:
  name: {name}
  labels:
    idn.dev/tier: {tier}
spec:
  source:
    volume: {{claimName: {CLAIM}, path: {path}}}
    sha256: {sha256}
  inputs: [input]
  outputs: [probs]
  labels: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
"""


def _threshold(name: str, tau: float) -> str:
    return f"""apiVersion: idn.dev/v1alpha1
kind: DeliveryStrategy
metadata:
  name: {name}
spec:
  threshold:
    tau: {tau!r}
    confidence: {{metric: maxProbability}}
  deadlineMs: 1000
  onUpstreamFailure: fallback
"""


def _header(kind: str) -> list[str]:
    return ["apiVersion: idn.dev/v1alpha1", f"kind: {kind}", "metadata:", "  name: federated", "spec:"]


def _network(access: list[str]) -> str:
    lines = [*_header("InferenceDeliveryNetwork"), "  nodes:"]
    for name in access:
        lines += [
            f"    - name: {name}",
            "      tier: access",
            f"      links: [{{name: edge, node: edge, latencyMs: {LINK_MS['edge']}, timeoutMs: 500}}]",
            f"      services: [{{name: {SERVICE}, strategy: access-cascade, model: {MODELS['access']}, link: edge}}]",
        ]
    lines += [
        "    - name: edge",
        "      tier: edge",
        f"      links: [{{name: cloud, node: cloud, latencyMs: {LINK_MS['cloud']}, timeoutMs: 500}}]",
        f"      services: [{{name: {SERVICE}, strategy: edge-cascade, model: {MODELS['edge']}, link: cloud}}]",
        "    - name: cloud",
        "      tier: cloud",
        f"      services: [{{name: {SERVICE}, strategy: serve-local, model: mnist-cnn}}]",
    ]
    return "\n".join(lines) + "\n"


def _placement(access: list[str]) -> str:
    lines = [*_header("ModelPlacement"), "  network: federated", "  nodes:"]
    lines += [f"    - {{node: {name}, models: [{MODELS['access']}]}}" for name in access]
    lines += [
        f"    - {{node: edge, models: [{MODELS['edge']}]}}",
        "    - {node: cloud, models: [mnist-cnn]}",
    ]
    return "\n".join(lines) + "\n"


def write_manifests(text: str, directory: Path) -> None:
    """Replaces the network's manifests in `directory` in one step (a watching `idn up` never
    reads half a file)."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomically(directory / "network.yaml", text.encode())


def _write_atomically(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)
