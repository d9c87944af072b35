"""The ServerApp: one round of FedAvg over every access node's SuperNode, from the deployed
weights of both tiers, each tier averaged with its own client weights.

It reads the round's plan (a JSON file named by the run config `plan`, written by
examples/federated/federate.py) and writes the candidate weights, or the error that stopped the
round, where the plan says. Every node must answer: a round where any node fails is a failed
round, so that no candidate is built from part of the federation.
"""

import json
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from idnfed.revision import MODELS, by_tier, flat

app = ServerApp()


# Replies lost on the way, as opposed to a ClientApp that failed: worth another round.
TRANSIENT = {ErrorCode.MESSAGE_UNAVAILABLE, ErrorCode.REPLY_MESSAGE_UNAVAILABLE, ErrorCode.NODE_UNAVAILABLE}


class RoundFailed(RuntimeError):
    """A node's reply was an error, or a node did not answer."""

    def __init__(self, reason: str, transient: bool = False):
        super().__init__(reason)
        self.transient = transient


class TieredFedAvg(FedAvg):
    """FedAvg per tier: the arrays `<tier>.*` of the replies are averaged (by FedAvg's own
    weighted mean) with the weights `<tier>-weight`. It fails the round instead of averaging
    over the nodes that did answer."""

    def __init__(self, nodes: int):
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=nodes,
            min_available_nodes=nodes,
            weighted_by_key="weight",
        )
        self.nodes = nodes

    def aggregate_train(self, server_round: int, replies):
        replies = list(replies)
        errors = [m.error for m in replies if m.has_error()]
        if errors:
            raise RoundFailed(
                "; ".join(sorted({e.reason for e in errors})),
                transient=all(e.code in TRANSIENT for e in errors),
            )
        if len(replies) < self.nodes:
            raise RoundFailed(f"{len(replies)} of {self.nodes} nodes answered", transient=True)
        averaged = {
            tier: dict(aggregate_arrayrecords([_tier_record(m, tier) for m in replies], "weight").items())
            for tier in MODELS
        }
        return ArrayRecord(flat(averaged)), None


def _tier_record(reply, tier: str) -> RecordDict:
    """A reply's content as FedAvg averages it for one tier: its arrays and its weight."""
    arrays = by_tier(dict(reply.content["arrays"].items()))[tier]
    weight = reply.content["metrics"][f"{tier}-weight"]
    return RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord({"weight": weight})})


@app.main()
def main(grid: Grid, context: Context) -> None:
    plan = json.loads(Path(str(context.run_config["plan"])).read_text())
    try:
        deployed = {}
        for tier in MODELS:
            with np.load(plan["deployed"][tier]) as data:
                deployed[tier] = {k: Array(data[k]) for k in data.files}
        config = ConfigRecord(
            {
                "mode": plan["mode"],
                "epochs": plan["epochs"],
                "lr-access": plan["lr"]["access"],
                "lr-edge": plan["lr"]["edge"],
                "seed": plan["seed"],
                "tau-access": plan["tauAccess"],
                "floor": plan["floor"],
                "serving": json.dumps(plan["serving"]),
                "serving-tiers": ",".join(plan["servingTiers"]),
            }
        )
        result = TieredFedAvg(plan["nodes"]).start(
            grid=grid,
            initial_arrays=ArrayRecord(flat(deployed)),
            num_rounds=1,
            train_config=config,
            timeout=plan["timeout"],
        )
        if result.arrays is None:
            raise RoundFailed("no weights came back")
        np.savez(plan["candidate"], **{k: v.numpy() for k, v in result.arrays.items()})
    except Exception as e:
        transient = isinstance(e, RoundFailed) and e.transient
        Path(plan["error"]).write_text(json.dumps({"error": str(e), "transient": transient}))
        raise
