"""Area under the ROC curve of "the local answer is right" for the learned gate and for p1 (the
largest probability), on the 1000-image sample: the gates' coefficients are read from
gate-ratio0.99-in-sample.txt (`idn calibrate ... --gate logistic` on the whole sample), the
probabilities from examples/data/reference. Run from the repository root:

    .venv/bin/python docs/results/gate_auc.py
"""
import pathlib
import re

import numpy as np

RESULTS = pathlib.Path(__file__).parent
DATA = RESULTS.parent.parent / "examples" / "data"
GATE = re.compile(r"gate of (\S+): sigmoid\((\S+) \+ (\S+) top1 \+ (\S+) margin \+ (\S+) entropy\)")


def auc(score: np.ndarray, right: np.ndarray) -> float:
    """Mann-Whitney U over average ranks (ties share their rank)."""
    order = np.argsort(score, kind="mergesort")
    values, ranks = score[order], np.empty(len(score))
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and values[end + 1] == values[start]:
            end += 1
        ranks[start:end + 1] = (start + end) / 2 + 1
        start = end + 1
    positives = right[order]
    n1, n0 = positives.sum(), len(positives) - positives.sum()
    return (ranks[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


labels = np.fromfile(DATA / "mnist-test-1000.labels.u8", dtype=np.uint8)
for model, *coefficients in GATE.findall((RESULTS / "gate-ratio0.99-in-sample.txt").read_text()):
    bias, w_top1, w_margin, w_entropy = map(float, coefficients)
    p = np.fromfile(DATA / "reference" / f"{model}.probs.f32", dtype="<f4").reshape(-1, 10).astype(np.float64)
    right = p.argmax(1) == labels
    ordered = np.sort(p, 1)[:, ::-1]
    top1, margin = ordered[:, 0], ordered[:, 0] - ordered[:, 1]
    entropy = -(p * np.log(np.where(p > 0, p, 1))).sum(1) / np.log(p.shape[1])
    gate = 1 / (1 + np.exp(-(bias + w_top1 * top1 + w_margin * margin + w_entropy * (1 - entropy))))
    print(f"{model}: AUC gate {auc(gate, right):.4f}, p1 {auc(top1, right):.4f}; gate at most {gate.max():.3f}")
