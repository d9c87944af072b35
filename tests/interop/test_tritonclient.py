"""Interop with a real third-party OIP v2 client: NVIDIA's tritonclient[http].

Starts the idn-node-agent binary (built by `cargo build`) on the example models and runs
inference through tritonclient in binary (its default) and JSON modes.
"""

import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[2]
AGENT = Path(os.environ.get("IDN_NODE_AGENT", ROOT / "target/debug/idn-node-agent"))
DATA = ROOT / "examples/data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(client, agent, what, timeout=30):
    """Waits until `client` (tritonclient, HTTP or gRPC) finds `agent` ready; fails with the
    agent's log if it exits or takes longer than `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.is_server_ready():
                return
        except Exception:
            pass
        if agent.poll() is not None or time.monotonic() > deadline:
            agent.kill()
            pytest.fail(f"{what} did not become ready: {agent.stderr.read().decode()}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def client():
    port = free_port()
    agent = subprocess.Popen(
        [AGENT, "--config", ROOT / "examples/node-agent/mnist.yaml", "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
    )
    client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    wait_ready(client, agent, "agent")
    yield client
    agent.terminate()
    assert agent.wait(timeout=30) == 0, "agent did not stop cleanly on SIGTERM"


# Images of the sample the interop tests send.
SAMPLE = 64


def reference(model):
    """Python onnxruntime's probabilities for the first SAMPLE images (examples/data)."""
    probs = np.fromfile(DATA / f"reference/{model}.probs.f32", dtype="<f4").reshape(-1, 10)
    return probs[:SAMPLE]


@pytest.fixture(scope="module")
def sample():
    """The first SAMPLE test images, as pixel/255, and their labels."""
    images = np.fromfile(DATA / "mnist-test-1000.images.u8", dtype=np.uint8).reshape(-1, 784)
    labels = np.fromfile(DATA / "mnist-test-1000.labels.u8", dtype=np.uint8)
    return images[:SAMPLE].astype(np.float32) / np.float32(255), labels[:SAMPLE]


def infer(client, model, images, binary):
    inputs = [httpclient.InferInput("input", list(images.shape), "FP32")]
    inputs[0].set_data_from_numpy(images, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("probs", binary_data=binary)]
    return client.infer(model, inputs, outputs=outputs, request_id="tc-1")


def test_metadata(client):
    assert client.is_server_live()
    meta = client.get_model_metadata("mnist-cnn")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}]
    assert client.is_model_ready("mnist-cnn")
    assert not client.is_model_ready("absent")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", ["mnist-linear", "mnist-mlp", "mnist-cnn"])
def test_infer_gives_the_right_classes(client, sample, model, binary):
    images, labels = sample
    result = infer(client, model, images, binary)
    probs = result.as_numpy("probs")
    assert probs.shape == (64, 10)
    reference = np.fromfile(DATA / f"reference/{model}.probs.f32", dtype="<f4").reshape(-1, 10)[:64]
    np.testing.assert_allclose(probs, reference, atol=1e-5)
    assert (probs.argmax(axis=1) == reference.argmax(axis=1)).all()
    assert (probs.argmax(axis=1) == labels).mean() > 0.8
    assert result.get_response()["id"] == "tc-1"


def test_errors_reach_the_client(client, sample):
    images, _ = sample
    bad = [httpclient.InferInput("input", [1, 783], "FP32")]
    bad[0].set_data_from_numpy(images[:1, :783])
    with pytest.raises(InferenceServerException, match="does not match the model's"):
        client.infer("mnist-mlp", bad)
    with pytest.raises(InferenceServerException, match="not served"):
        client.infer("absent", bad)
