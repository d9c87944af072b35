"""The two tiers trained here, as scikit-learn MLPs, their arrays and their ONNX form.

The access tier is multinomial logistic regression (an MLP with no hidden layer), the edge tier
an MLP with one hidden ReLU layer. Both take `input` float32 [N, 784] (pixel / 255) and return
`probs` float32 [N, 10], the signature of the example tiers in examples/models, so a node-agent
serves them as it serves those.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.neural_network import MLPClassifier

TIERS = {"access": (), "edge": (64,)}
FEATURES = 784
CLASSES = 10
OPSET = 17
BATCH = 128


def new_model(tier: str, lr: float, seed: int) -> MLPClassifier:
    """A model of `tier` trained by plain SGD, as FedAvg's clients train (no momentum, so the
    optimiser keeps no state between steps that a round would have to carry)."""
    return MLPClassifier(
        hidden_layer_sizes=TIERS[tier],
        solver="sgd",
        learning_rate_init=lr,
        momentum=0.0,
        batch_size=BATCH,
        alpha=1e-4,
        random_state=seed,
    )


def initial_arrays(tier: str, seed: int) -> dict[str, np.ndarray]:
    """Freshly initialised weights of `tier`: Glorot-uniform weights, zero biases."""
    rng = np.random.default_rng(seed)
    widths = [FEATURES, *TIERS[tier], CLASSES]
    arrays = {}
    for i, (fan_in, fan_out) in enumerate(zip(widths, widths[1:])):
        bound = np.sqrt(6 / (fan_in + fan_out))
        arrays[f"W{i}"] = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)
        arrays[f"b{i}"] = np.zeros(fan_out, dtype=np.float32)
    return arrays


def to_arrays(model: MLPClassifier) -> dict[str, np.ndarray]:
    """The model's weights by layer: W0, b0, W1, b1, ..."""
    arrays = {}
    for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_)):
        arrays[f"W{i}"] = np.asarray(w, dtype=np.float32)
        arrays[f"b{i}"] = np.asarray(b, dtype=np.float32)
    return arrays


def layers(arrays: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) per layer, in order; checks that the arrays form a chain of layers."""
    count = len(arrays) // 2
    pairs = [(arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(count)]
    for i, (w, b) in enumerate(pairs):
        if w.ndim != 2 or b.shape != (w.shape[1],):
            raise ValueError(f"layer {i}: weights {w.shape} and bias {b.shape} do not fit")
        if i and pairs[i - 1][0].shape[1] != w.shape[0]:
            raise ValueError(f"layer {i} takes {w.shape[0]} inputs, layer {i - 1} gives more")
    return pairs


def input_width(arrays: dict[str, np.ndarray]) -> int:
    """How many features an item must have."""
    return int(arrays["W0"].shape[0])


def train(
    tier: str,
    arrays: dict[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray,
    epochs: int,
    lr: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """`epochs` passes of SGD over (x, y) from `arrays`, each item's loss scaled by its weight."""
    model = new_model(tier, lr, seed)
    # The first partial_fit builds the layers and fixes the ten classes (a node may hold only
    # some of them); its step on one blank item is then overwritten by the given weights.
    model.set_params(batch_size=1)
    model.partial_fit(np.zeros((1, x.shape[1])), [0], classes=np.arange(CLASSES))
    model.set_params(batch_size=BATCH)
    given = layers(arrays)
    built = [w.shape for w in model.coefs_]
    if [w.shape for w, _ in given] != built:
        raise ValueError(f"{tier}: weights of shapes {[w.shape for w, _ in given]}, expected {built}")
    model.coefs_ = [w.astype(np.float64) for w, _ in given]
    model.intercepts_ = [b.astype(np.float64) for _, b in given]
    for _ in range(epochs):
        model.partial_fit(x, y, sample_weight=sample_weight)
    if not all(np.isfinite(w).all() for w in model.coefs_):
        raise ValueError(f"{tier}: training diverged (non-finite weights); lower the learning rate")
    return to_arrays(model)


def probabilities(arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Class probabilities, computed as the ONNX graph computes them."""
    h = x.astype(np.float32)
    pairs = layers(arrays)
    for i, (w, b) in enumerate(pairs):
        h = h @ w + b
        if i < len(pairs) - 1:
            h = np.maximum(h, 0)
    h = h - h.max(axis=1, keepdims=True)
    e = np.exp(h)
    return e / e.sum(axis=1, keepdims=True)


def to_onnx(arrays: dict[str, np.ndarray], name: str) -> bytes:
    """The model as ONNX: MatMul, Add, Relu between layers, Softmax at the end."""
    pairs = layers(arrays)
    nodes, initializers, h = [], [], "input"
    for i, (w, b) in enumerate(pairs):
        initializers += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [
            helper.make_node("MatMul", [h, f"W{i}"], [f"z{i}"]),
            helper.make_node("Add", [f"z{i}", f"b{i}"], [f"a{i}"]),
        ]
        h = f"a{i}"
        if i < len(pairs) - 1:
            nodes.append(helper.make_node("Relu", [h], [f"h{i}"]))
            h = f"h{i}"
    nodes.append(helper.make_node("Softmax", [h], ["probs"], axis=-1))
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", input_width(arrays)])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", pairs[-1][0].shape[1]])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
