#!/usr/bin/env python3
"""Federated retraining of the example IDN's access and edge tiers, with the delivery strategy
in the loop (see README.md):

    .venv-fed/bin/python examples/federated/federate.py --mode serving --rounds 10 --out DIR

Runs two `idn up` networks (live and staging) of five access nodes, an edge and a cloud node,
a Flower SuperLink and one SuperNode per access node, all on loopback; each round trains,
gates on staging, rolls out to live and measures. Writes rounds.{json,csv} to --out (plot.py
tabulates and plots runs side by side).
Exits 1 with the reason when a round fails; the deployed revision is then left as it was.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from idnfed import loop  # noqa: E402
from idnfed.revision import Budget  # noqa: E402

COLUMNS = ["name", "mode", "round", "accepted", "gateCandidate", "gateDeployed", "accuracy", "access",
           "edge", "cloud", "meanMs", "tauAccess", "tauEdge", "candidateAccess", "candidateEdge"]


def node_data(text: str) -> tuple[str, Path]:
    node, _, path = text.partition("=")
    if not node or not path:
        raise argparse.ArgumentTypeError("expected NODE=FILE.npz")
    return node, Path(path)


def tiers_list(text: str) -> list[str]:
    tiers = text.split(",")
    if not tiers or not set(tiers) <= {"access", "edge"}:
        raise argparse.ArgumentTypeError("expected access, edge or access,edge")
    return tiers


def parse(argv: list[str]) -> tuple[loop.Settings, Path]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=loop.MODES, default="serving",
                   help="pooled: central training on all nodes' data; fedavg: Flower FedAvg "
                        "weighted by data size; serving: Flower FedAvg weighted by what each tier serves")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--work", type=Path, required=True, help="working directory (data, models, manifests, logs)")
    p.add_argument("--out", type=Path, help="where rounds.{json,csv} go [default: --work]")
    p.add_argument("--nodes", type=int, default=5, help="access nodes")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label skew (small: more skew)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=1, help="local epochs per round")
    p.add_argument("--lr-access", type=float, default=0.2)
    p.add_argument("--lr-edge", type=float, default=0.2)
    p.add_argument("--budget-edge", type=float, default=0.3, help="share of requests the access tier forwards")
    p.add_argument("--budget-cloud", type=float, default=0.05, help="share of requests reaching the cloud")
    p.add_argument("--floor", type=float, default=0.1,
                   help="serving mode: weight of an item the access tier would answer itself, in the edge's training")
    p.add_argument("--gate-margin", type=float, default=0.0,
                   help="roll out a candidate whose gate accuracy is at most this much below the deployed one's")
    p.add_argument("--traffic", type=int, default=300, help="requests each node's users send per round")
    p.add_argument("--test-items", type=int, default=1000, help="held-out test requests per node")
    p.add_argument("--gate-items", type=int, default=2000)
    p.add_argument("--per-node", type=int, help="keep only this many training items per node (a small run)")
    p.add_argument("--node-data", type=node_data, action="append", default=[], metavar="NODE=FILE.npz",
                   help="a node's own local data (arrays x, y) instead of its MNIST share")
    p.add_argument("--serving-tiers", type=tiers_list, default=["access", "edge"], metavar="TIER,...",
                   help="serving mode: the tiers weighted by what they serve; the others as in fedavg")
    p.add_argument("--retries", type=int, default=1,
                   help="times a Flower round whose replies were lost is run again before the command gives up")
    p.add_argument("--base-port", type=int, default=8400,
                   help="live network from here, staging from +20, Flower from +60")
    p.add_argument("--idn", type=Path, help="the idn binary [default: target/release/idn, else target/debug/idn]")
    a = p.parse_args(argv)
    return loop.Settings(
        rounds=a.rounds, mode=a.mode, work=a.work.resolve(), nodes=a.nodes, alpha=a.alpha,
        seed=a.seed, epochs=a.epochs, lr={"access": a.lr_access, "edge": a.lr_edge},
        budget=Budget(edge=a.budget_edge, cloud=a.budget_cloud), floor=a.floor,
        gate_margin=a.gate_margin, traffic=a.traffic, test_items=a.test_items,
        gate_items=a.gate_items, per_node=a.per_node, node_data=dict(a.node_data),
        base_port=a.base_port, idn=a.idn, retries=a.retries, serving_tiers=a.serving_tiers,
    ), (a.out or a.work).resolve()


def write(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "rounds.json").write_text(json.dumps(rows, indent=1) + "\n")
    with open(out / "rounds.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str]) -> int:
    settings, out = parse(argv)
    rows: list[dict] = []

    def report(row: dict) -> None:
        rows.append(row)
        print(
            f"round {row['round']:>2} {row['name']}: gate {row['gateCandidate']:.2%} "
            f"({'rolled out' if row['accepted'] else 'kept the deployed revision'}), "
            f"test {row['accuracy']:.2%}, served access/edge/cloud "
            f"{row['access']:.1%}/{row['edge']:.1%}/{row['cloud']:.1%}, {row['meanMs']:.2f} ms",
            flush=True,
        )
        write(rows, out)

    try:
        loop.run(settings, report)
    except loop.RoundFailed as e:
        print(f"error: {e}; the deployed models are unchanged", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
