#!/usr/bin/env python3
"""Plots and tabulates federate.py runs side by side, round by round:

    .venv-fed/bin/python examples/federated/plot.py --out DIR RUN_DIR [RUN_DIR ...]

Each RUN_DIR holds a rounds.json; writes DIR/federated.{svg,md}: the live network's test
accuracy (from round 1) and its mean latency per round, one line per run (named by its mode).
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(run: Path) -> list[dict]:
    return json.loads((run / "rounds.json").read_text())


def plot(runs: dict[str, list[dict]], path: Path, title: str) -> None:
    fig, (acc, ms) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, rows in runs.items():
        rounds = [r["round"] for r in rows]
        line, = acc.plot(rounds, [100 * r["accuracy"] for r in rows], marker="o", ms=3, label=name)
        rejected = [r for r in rows if not r["accepted"]]
        acc.scatter([r["round"] for r in rejected], [100 * r["accuracy"] for r in rejected],
                    marker="x", color=line.get_color(), zorder=3)
        ms.plot(rounds, [r["meanMs"] for r in rows], marker="o", ms=3, label=name)
    trained = [100 * r["accuracy"] for rows in runs.values() for r in rows if r["round"] > 0]
    if trained:  # round 0 (untrained weights) would flatten the differences that matter
        acc.set_ylim(min(trained) - 1, 100)
    acc.set(xlabel="round", ylabel="test accuracy (%)", title="end to end accuracy (x: gate kept the old revision)")
    ms.set(xlabel="round", ylabel="ms", title="mean latency per request")
    for ax in (acc, ms):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})


def table(runs: dict[str, list[dict]]) -> str:
    lines = ["| run | round | rolled out | gate acc. | test acc. | access | edge | cloud | mean ms |",
             "|:--|--:|:--|--:|--:|--:|--:|--:|--:|"]
    for name, rows in runs.items():
        for r in rows:
            lines.append(
                f"| {name} | {r['round']} | {'yes' if r['accepted'] else 'no'} | {r['gateCandidate']:.2%} | "
                f"{r['accuracy']:.2%} | {r['access']:.1%} | {r['edge']:.1%} | {r['cloud']:.1%} | {r['meanMs']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default="federated", help="file name of the plot and table")
    p.add_argument("--title", default="")
    p.add_argument("runs", type=Path, nargs="+")
    a = p.parse_args()
    runs = {}
    for run in a.runs:
        rows = load(run)
        runs[rows[0]["name"]] = rows
    a.out.mkdir(parents=True, exist_ok=True)
    plot(runs, a.out / f"{a.name}.svg", a.title)
    (a.out / f"{a.name}.md").write_text(table(runs))
    print(f"wrote {a.out}/{a.name}.{{svg,md}}")


if __name__ == "__main__":
    main()
