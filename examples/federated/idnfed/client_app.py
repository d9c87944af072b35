"""The ClientApp each access node's SuperNode runs: it trains both tiers from the deployed
weights on the node's local data, weighted as the mode says, and returns the new weights with
what each tier's weights weigh in the average.

The SuperNode's node config names the node and where its data and its running node-agent are:
    node="access-1" data="/path/access-1.npz" url="http://127.0.0.1:8400"
"""

import json
from pathlib import Path

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from idnfed import node as node_api
from idnfed import partition, tiers, weighting
from idnfed.revision import MODELS, by_tier, flat

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = msg.content["config"]
    name = str(context.node_config["node"])
    mode, tau = str(config["mode"]), float(config["tau-access"])
    deployed = by_tier({k: v.numpy() for k, v in msg.content["arrays"].items()})
    try:
        x, y = partition.load(Path(str(context.node_config["data"])), tiers.input_width(deployed["access"]))
    except ValueError as e:
        raise ValueError(f"node {name}: {e}") from e
    weighed = set(str(config["serving-tiers"]).split(",")) if mode == "serving" else set()
    confidence = None
    if "edge" in weighed:
        # Whether the access strategy forwards an item is decided by the deployed access model's
        # confidence in it; the node itself is asked.
        probs = node_api.probabilities(str(context.node_config["url"]), MODELS["access"], x)
        confidence = probs.max(axis=1)
    served = json.loads(str(config["serving"])).get(name, {})
    trained, metrics = {}, {"num-examples": len(x)}
    for tier in MODELS:
        tier_mode = "serving" if tier in weighed else "fedavg"
        weights = weighting.item_weights(tier_mode, tier, confidence, tau, float(config["floor"]))
        trained[tier] = tiers.train(
            tier, deployed[tier], x, y, weights,
            epochs=int(config["epochs"]), lr=float(config[f"lr-{tier}"]), seed=int(config["seed"]),
        )
        metrics[f"{tier}-weight"] = weighting.client_weight(
            tier_mode, tier, len(x), int(served.get("requests", 0)), int(served.get("forwarded", 0))
        )
    if confidence is not None:
        metrics["forward-share"] = float((confidence < tau).mean())
    arrays = ArrayRecord({k: Array(v) for k, v in flat(trained).items()})
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)
