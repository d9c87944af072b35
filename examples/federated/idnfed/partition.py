"""The nodes' local data: a seeded Dirichlet label skew over MNIST's training split, and samples
of held-out data that follow each node's label mix."""

from pathlib import Path

import numpy as np


def dirichlet_split(labels: np.ndarray, nodes: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Indices of `labels` for each of `nodes` nodes: every class is shared out in proportions
    drawn from Dirichlet(alpha) (small alpha: each node sees few classes). Every index goes to
    exactly one node."""
    if nodes < 1 or alpha <= 0:
        raise ValueError(f"need at least one node and alpha > 0, got {nodes} and {alpha}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(nodes)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        shares = rng.dirichlet(np.full(nodes, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
        for part, chunk in zip(parts, np.split(idx, cuts)):
            part.append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def label_mix(labels: np.ndarray, classes: int = 10) -> np.ndarray:
    """Share of each class among `labels`."""
    counts = np.bincount(labels, minlength=classes).astype(float)
    return counts / counts.sum()


def sample_like(
    labels: np.ndarray, mix: np.ndarray, items: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices of `items` items of `labels` drawn with the class shares `mix` (with
    replacement within a class), shuffled: a node's traffic from held-out data."""
    per_class = rng.multinomial(items, mix)
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=n, replace=True)
        for c, n in enumerate(per_class)
        if n
    ]
    return rng.permutation(np.concatenate(picked))


def save(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """A sample as `idn replay --data` and the clients read it: x float32, y int64."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))


def load(path: Path, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A node's local data, checked against the model's input width."""
    try:
        with np.load(path) as data:
            x, y = data["x"], data["y"]
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a sample with arrays x and y ({e})") from e
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(
            f"{path}: items have shape {list(x.shape[1:])}, the model's input takes "
            f"[N, {width}] (float32 pixels / 255)"
        )
    if len(y) != len(x) or (len(y) and (y.min() < 0 or y.max() >= 10)):
        raise ValueError(f"{path}: {len(y)} labels in 0..9 are needed for {len(x)} items")
    return x.astype(np.float32), y.astype(np.int64)
