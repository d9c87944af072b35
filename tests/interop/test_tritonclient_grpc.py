"""Interop over gRPC with a real third-party OIP v2 client: NVIDIA's tritonclient[grpc].

Starts the example three-tier cascade (examples/node-agent/cascade) as idn-node-agent
processes, each also serving gRPC, with the links between them over gRPC too; then runs
tritonclient's gRPC client against a model and against the cascade service of the access node.
"""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from tritonclient.utils import InferenceServerException

from test_tritonclient import AGENT, ROOT, free_port, reference, sample, wait_ready  # noqa: F401 (sample: a fixture)

CASCADE = ROOT / "examples/node-agent/cascade"
TIERS = ["cloud", "edge", "access"]


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    """The access node's gRPC client; every node on free ports, linked over gRPC."""
    work = tmp_path_factory.mktemp("grpc-cascade")
    grpc_ports = {tier: free_port() for tier in TIERS}
    agents = []
    try:
        for tier in TIERS:  # upstreams first
            config = yaml.safe_load((CASCADE / f"{tier}.yaml").read_text())
            config["listen"] = f"127.0.0.1:{free_port()}"
            config["grpcListen"] = f"127.0.0.1:{grpc_ports[tier]}"
            for model in config["models"]:
                model["path"] = str((CASCADE / model["path"]).resolve())
            for upstream in config.get("upstreams", []):
                upstream_tier = upstream["name"].split("-")[0]
                upstream.pop("binaryData", None)
                upstream["url"] = f"http://127.0.0.1:{grpc_ports[upstream_tier]}"
                upstream["protocol"] = "grpc"
            path = work / f"{tier}.yaml"
            path.write_text(yaml.safe_dump(config))
            agent = subprocess.Popen([AGENT, "--config", path], stderr=subprocess.PIPE)
            agents.append(agent)
            client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_ports[tier]}")
            wait_ready(client, agent, tier)
        yield client  # the access node's
    finally:
        for agent in reversed(agents):
            agent.terminate()
        for agent in agents:
            assert agent.wait(timeout=30) == 0, "agent did not stop cleanly on SIGTERM"


def infer(client, model, images, **kwargs):
    inputs = [grpcclient.InferInput("input", list(images.shape), "FP32")]
    inputs[0].set_data_from_numpy(images)
    outputs = [grpcclient.InferRequestedOutput("probs")]
    return client.infer(model, inputs, outputs=outputs, **kwargs)


def test_metadata(cascade):
    assert cascade.is_server_live()
    meta = cascade.get_model_metadata("mnist-linear", as_json=True)
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "784"]}]
    assert cascade.is_model_ready("mnist-linear")
    with pytest.raises(InferenceServerException, match="not served"):
        cascade.is_model_ready("absent")


def test_a_model_gives_the_reference_answer(cascade, sample):
    images, labels = sample
    result = infer(cascade, "mnist-linear", images, request_id="tc-grpc-1")
    probs = result.as_numpy("probs")
    np.testing.assert_allclose(probs, reference("mnist-linear"), atol=1e-5)
    assert result.get_response().id == "tc-grpc-1"


def test_the_cascade_answers_over_grpc_with_provenance(cascade, sample):
    images, labels = sample
    result = infer(cascade, "mnist", images)
    probs = result.as_numpy("probs")
    assert probs.shape == (64, 10)
    parameters = result.get_response().parameters
    nodes = yaml.safe_load(parameters["idn_node"].string_param)
    assert set(nodes) == {"access-0", "edge-0", "cloud-0"}, "64 images reach every tier"
    # Each item is the answer of the node that served it, as that node's model gives it.
    models = {"access-0": "mnist-linear", "edge-0": "mnist-mlp", "cloud-0": "mnist-cnn"}
    for i, node in enumerate(nodes):
        np.testing.assert_allclose(probs[i], reference(models[node])[i], atol=1e-5)
    accuracy = float(np.mean(probs.argmax(axis=1) == labels))
    local = float(np.mean(reference("mnist-linear").argmax(axis=1) == labels))
    assert accuracy >= local, (accuracy, local)


def test_errors_reach_the_client_with_their_code(cascade, sample):
    images, _ = sample
    bad = [grpcclient.InferInput("input", [1, 783], "FP32")]
    bad[0].set_data_from_numpy(images[:1, :783])
    with pytest.raises(InferenceServerException) as refused:
        cascade.infer("mnist-linear", bad)
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "does not match the model's" in refused.value.message()
    with pytest.raises(InferenceServerException) as absent:
        cascade.infer("absent", bad)
    assert absent.value.status() == "StatusCode.NOT_FOUND"
