"""What each training item and each client weighs, per training mode.

`fedavg`: every item weighs 1 and a client weighs its number of items (McMahan et al.).

`serving`: the weights follow what each tier serves, after Kaplan, Si Salem, Rodio, Xu and
Neglia, "Federated learning for cooperative inference systems: the case of early exit
networks" (arXiv 2405.04249), who weight training by serving rate; here the exits are separate models of a
cascade:
- the access tier answers every request that enters at its node first, so each item weighs 1
  and a client weighs the requests its node received (its traffic), not the data it holds;
- the edge tier sees only what the access strategy forwards, so an item weighs the probability
  that it reaches the edge under the thresholds serving now, 1 if its confidence at the
  deployed access model is below the access τ, else `floor` (a little, so the edge still
  learns the whole task), and a client weighs the requests its node forwarded.
"""

import numpy as np

def item_weights(
    mode: str, tier: str, confidence: np.ndarray | None, tau: float, floor: float
) -> np.ndarray | None:
    """Per-item loss weights (None: all 1). `confidence`: the deployed access model's max
    probability for each item (needed for the edge in `serving` mode)."""
    if mode == "fedavg" or tier == "access":
        return None
    if confidence is None:
        raise ValueError("the edge's serving weights need the access model's confidences")
    return np.where(confidence < tau, 1.0, floor)


def client_weight(mode: str, tier: str, items: int, requests: int, forwarded: int) -> float:
    """The client's share in the average, before normalisation (at least 1, so that a node
    without traffic still counts a little rather than dividing by zero)."""
    if mode == "fedavg":
        return float(items)
    return float(max(requests if tier == "access" else forwarded, 1))
