"""What the training job asks of a running node-agent: the deployed model's confidences on a
node's local data (OIP v2 with binary tensors) and the node's serving counts (its /metrics)."""

import json
import re
import urllib.error
import urllib.request
from email.message import Message

import numpy as np

BATCH = 1000  # items per request, within the node-agent's batch limit


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[bytes, Message]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read(), response.headers
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{url}: {e.code} {e.read().decode(errors='replace')}") from e
    except urllib.error.URLError as e:
        raise RuntimeError(f"{url}: {e.reason}") from e


def probabilities(base: str, model: str, x: np.ndarray) -> np.ndarray:
    """`model`'s `probs` for every row of `x`, asked of the node at `base` in batches."""
    url = f"{base.rstrip('/')}/v2/models/{model}/infer"
    out = []
    for start in range(0, len(x), BATCH):
        batch = np.ascontiguousarray(x[start : start + BATCH], dtype="<f4")
        raw = batch.tobytes()
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": list(batch.shape),
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": len(raw)},
                    }
                ],
                "outputs": [{"name": "probs", "parameters": {"binary_data": True}}],
            }
        ).encode()
        body, headers = _post(
            url,
            header + raw,
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(len(header)),
            },
        )
        size = int(headers.get("Inference-Header-Content-Length", len(body)))
        answer = json.loads(body[:size])
        (output,) = [o for o in answer["outputs"] if o["name"] == "probs"]
        if size < len(body):
            probs = np.frombuffer(body[size:], dtype="<f4")
        else:
            probs = np.asarray(output["data"], dtype=np.float32)
        out.append(probs.reshape(output["shape"]))
    return np.concatenate(out)


_DECISION = re.compile(r'^idn_decisions_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$')


def serving_counts(metrics_text: str, service: str) -> dict[str, float]:
    """Items of `service` by decision (served, forwarded, ...) in a node's metrics."""
    counts: dict[str, float] = {}
    for line in metrics_text.splitlines():
        match = _DECISION.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("service") == service:
            decision = labels.get("decision", "")
            counts[decision] = counts.get(decision, 0.0) + float(match["value"])
    return counts


def metrics(base: str) -> str:
    """The node's Prometheus metrics."""
    with urllib.request.urlopen(f"{base.rstrip('/')}/metrics", timeout=10) as response:
        return response.read().decode()
