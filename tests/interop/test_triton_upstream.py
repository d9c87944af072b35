"""A third-party OIP v2 server as an upstream: the node-agent forwards to Triton Inference Server.

Triton Inference Server 2.51 is the tritonserver binary of the nvidia-pytriton 0.7.0 wheel,
installed by `make triton` into .venv-triton/ (IDN_TRITON_VENV points elsewhere). The wheel has
no ONNX Runtime backend, so Triton serves mnist-cnn through its Python backend: a small model
(bench/triton/model.py) that runs examples/models/mnist-cnn.onnx with onnxruntime.
bench/triton/repository.py writes the model repository and bench/triton/serve.sh starts the
binary on it (its Python backend stub needs the venv's libpython, see there), exactly as
`make bench` does. If Triton does not become ready the test fails with Triton's log.

One idn-node-agent then serves services that answer locally with mnist-linear when confident
(threshold) and forward the other items to `mnist-cnn` at Triton, over a `protocol: grpc` link
and over REST links (binary tensors, JSON tensors). Forwarded items must carry Triton's answer
(the reference probabilities of mnist-cnn) and the provenance of the Triton upstream. The last
test stops Triton: services with `onUpstreamFailure: fallback` answer locally, marked
`fallback`; services with `fail` return the link's error.
"""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml
from tritonclient.utils import InferenceServerException

from test_tritonclient import AGENT, ROOT, SAMPLE as N, free_port, reference, sample  # noqa: F401 (sample: a fixture)

TRITON_VENV = Path(os.environ.get("IDN_TRITON_VENV", ROOT / ".venv-triton"))
NODE = "edge-0"
TAU = 0.99  # mnist-linear is at least this confident on some of the sample images, not all

# Service -> the upstream link it forwards over (to mnist-cnn at Triton) and its failure policy.
SERVICES = {
    "mnist": ("triton-grpc", "fallback"),
    "mnist-rest": ("triton-rest", "fallback"),
    "mnist-rest-json": ("triton-rest-json", "fallback"),
    "mnist-strict": ("triton-grpc", "fail"),
    "mnist-rest-strict": ("triton-rest", "fail"),
}


def wait_ready(url, process, timeout):
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


class Triton:
    """A tritonserver process on free ports, serving mnist-cnn."""

    def __init__(self, work: Path):
        self.http, self.grpc, metrics = free_port(), free_port(), free_port()
        self.log = work / "triton.log"
        repository = work / "repository"
        subprocess.run(
            [sys.executable, ROOT / "bench/triton/repository.py", repository, "off", "1", "mnist-cnn"],
            check=True,
        )
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [ROOT / "bench/triton/serve.sh", TRITON_VENV, repository, work / "scratch",
                 str(self.http), str(self.grpc), str(metrics)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def stop(self):
        """Stops Triton and waits for it to exit (it unloads its models first)."""
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=90)


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    if not (TRITON_VENV / "bin/python").exists():
        pytest.fail(f"no Triton venv at {TRITON_VENV}: run `make triton` (or set IDN_TRITON_VENV)")
    server = Triton(tmp_path_factory.mktemp("triton"))
    try:
        # The Python backend starts one stub process per model instance: slow on a busy machine.
        if not wait_ready(f"http://127.0.0.1:{server.http}/v2/health/ready", server.process, 180):
            pytest.fail(f"Triton did not become ready; its log:\n{server.log.read_text()}")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def agent(triton, tmp_path_factory):
    """The REST and gRPC addresses of an agent whose services forward to Triton."""
    work = tmp_path_factory.mktemp("agent")
    rest, grpc = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    model = yaml.safe_load((ROOT / "examples/node-agent/mnist.yaml").read_text())["models"][0]
    assert model["name"] == "mnist-linear"
    model["path"] = str(ROOT / "examples/models/mnist-linear.onnx")
    # Generous limits: a slow answer must not turn into a fallback on a busy machine.
    link = {"timeoutMs": 30000}
    config = {
        "apiVersion": "idn.dev/v1alpha1",
        "kind": "NodeAgentConfig",
        "node": NODE,
        "tier": "edge",
        "listen": rest,
        "grpcListen": grpc,
        "models": [model],
        "upstreams": [
            {"name": "triton-grpc", "url": f"http://127.0.0.1:{triton.grpc}", "protocol": "grpc", **link},
            {"name": "triton-rest", "url": f"http://127.0.0.1:{triton.http}", "binaryData": True, **link},
            {"name": "triton-rest-json", "url": f"http://127.0.0.1:{triton.http}", **link},
        ],
        "services": [
            {
                "name": service,
                "strategy": {"threshold": {
                    "local": {"model": "mnist-linear"},
                    "forward": {"upstream": upstream, "service": "mnist-cnn"},
                    "tau": TAU,
                    "confidence": {"metric": "maxProbability"},
                }},
                "deadlineMs": 60000,
                "onUpstreamFailure": policy,
            }
            for service, (upstream, policy) in SERVICES.items()
        ] + [{
            "name": "mnist-absent",
            "strategy": {"forward": {"to": {"upstream": "triton-grpc", "service": "absent"}}},
            "deadlineMs": 60000,
            "onUpstreamFailure": "fail",
        }],
    }
    path = work / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    log = work / "agent.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([AGENT, "--config", path], stderr=out)
    try:
        if not wait_ready(f"http://{rest}/v2/health/ready", process, 30):
            pytest.fail(f"agent did not become ready: {log.read_text()}")
        yield {"rest": rest, "grpc": grpc}
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0, "agent did not stop cleanly on SIGTERM"


@pytest.fixture(scope="module")
def images(sample):
    return sample[0]


def infer(address, service, images, binary=True):
    client = httpclient.InferenceServerClient(address, network_timeout=120)
    inputs = [httpclient.InferInput("input", list(images.shape), "FP32")]
    inputs[0].set_data_from_numpy(images, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("probs", binary_data=binary)]
    result = client.infer(service, inputs, outputs=outputs)
    return result.as_numpy("probs"), result.get_response()["parameters"]


def per_item(parameters, key, nested=False):
    """A provenance parameter as one value per item (it is a single value when all agree)."""
    value = parameters[key]
    if isinstance(value, list) and len(value) == N and all(isinstance(v, list) == nested for v in value):
        return value
    return [value] * N


def test_triton_serves_the_reference_answer(triton, images):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{triton.grpc}")
    inputs = [grpcclient.InferInput("input", list(images.shape), "FP32")]
    inputs[0].set_data_from_numpy(images)
    probs = client.infer("mnist-cnn", inputs).as_numpy("probs")
    np.testing.assert_allclose(probs, reference("mnist-cnn"), atol=1e-4)


def check_forwarded_to_triton(probs, parameters, upstream):
    """Items the local model is not sure of carry Triton's answer and say so; the others are
    the local model's."""
    assert probs.shape == (N, 10)
    decisions = per_item(parameters, "idn_decision")
    assert set(decisions) == {"served", "forwarded"}, decisions
    nodes, models = per_item(parameters, "idn_node"), per_item(parameters, "idn_model")
    paths, hops = per_item(parameters, "idn_path", nested=True), per_item(parameters, "idn_hops")
    cnn, linear = reference("mnist-cnn"), reference("mnist-linear")
    for i, decision in enumerate(decisions):
        if decision == "forwarded":
            np.testing.assert_allclose(probs[i], cnn[i], atol=1e-4, err_msg=f"item {i}")
            assert (nodes[i], models[i], paths[i], hops[i]) == (upstream, "mnist-cnn", [NODE, upstream], 1)
        else:
            assert linear[i].max() >= TAU
            np.testing.assert_allclose(probs[i], linear[i], atol=1e-5, err_msg=f"item {i}")
            assert (nodes[i], models[i], paths[i], hops[i]) == (NODE, "mnist-linear", [NODE], 0)
    assert parameters["idn_degraded"] is False


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("service", ["mnist", "mnist-rest", "mnist-rest-json"],
                         ids=["grpc-link", "rest-binary-link", "rest-json-link"])
def test_forwarded_items_carry_tritons_answer(agent, images, service, binary):
    probs, parameters = infer(agent["rest"], service, images, binary)
    check_forwarded_to_triton(probs, parameters, SERVICES[service][0])


def test_every_link_gives_the_same_answer(agent, images):
    answers = {service: infer(agent["rest"], service, images)[0] for service in
               ("mnist", "mnist-rest", "mnist-rest-json")}
    np.testing.assert_array_equal(answers["mnist-rest"], answers["mnist"])
    np.testing.assert_array_equal(answers["mnist-rest-json"], answers["mnist"])


def test_grpc_end_to_end(agent, images):
    """A gRPC client, the agent's gRPC service, a gRPC link to Triton."""
    client = grpcclient.InferenceServerClient(agent["grpc"])
    inputs = [grpcclient.InferInput("input", list(images.shape), "FP32")]
    inputs[0].set_data_from_numpy(images)
    result = client.infer("mnist", inputs, outputs=[grpcclient.InferRequestedOutput("probs")])
    # Over gRPC a per-item parameter travels as JSON text.
    parameters = {key: yaml.safe_load(p.string_param) if p.HasField("string_param") else
                  p.bool_param if p.HasField("bool_param") else p.int64_param
                  for key, p in result.get_response().parameters.items()}
    check_forwarded_to_triton(result.as_numpy("probs"), parameters, "triton-grpc")


def test_tritons_own_errors_reach_the_caller(agent, images):
    with pytest.raises(InferenceServerException) as refused:
        infer(agent["rest"], "mnist-absent", images)
    assert refused.value.status() == "502"
    assert 'upstream "triton-grpc" answered gRPC NotFound' in refused.value.message()
    assert "unknown model" in refused.value.message(), "Triton's own reason"


# Stops Triton: keep it the module's last test.
def test_when_triton_stops_services_fall_back_or_fail(triton, agent, images):
    check_forwarded_to_triton(*infer(agent["rest"], "mnist", images), "triton-grpc")
    triton.stop()

    linear = reference("mnist-linear")
    for service in ("mnist", "mnist-rest"):
        probs, parameters = infer(agent["rest"], service, images)
        decisions = per_item(parameters, "idn_decision")
        assert set(decisions) == {"served", "fallback"}, (service, decisions)
        for i, decision in enumerate(decisions):
            assert (decision == "fallback") == (linear[i].max() < TAU)
        np.testing.assert_allclose(probs, linear, atol=1e-5)
        assert per_item(parameters, "idn_node") == [NODE] * N
        assert parameters["idn_degraded"] is True

    for service in ("mnist-strict", "mnist-rest-strict"):
        upstream = SERVICES[service][0]
        with pytest.raises(InferenceServerException) as failed:
            infer(agent["rest"], service, images)
        assert failed.value.status() == "502", service
        assert f'upstream "{upstream}" is unreachable' in failed.value.message()
