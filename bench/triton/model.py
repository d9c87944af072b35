"""Triton Python-backend model for bench/run.sh and tests/interop: one ONNX model run by
onnxruntime.

Triton Inference Server from the nvidia-pytriton wheel has no ONNX Runtime backend, so this
model is how Triton serves the example ONNX models. The model config (config.pbtxt, written
by bench/triton/repository.py) gives the .onnx path as parameter `onnx_path`. With dynamic
batching Triton hands several queued requests to one execute() call; they are run as one batch.

The backend's stub process ignores PYTHONPATH, so the venv's site-packages (numpy for
triton_python_backend_utils, onnxruntime) come from BENCH_TRITON_SITE_PACKAGES, which
bench/triton/serve.sh sets.
"""

import json
import os
import sys

_site = os.environ.get("BENCH_TRITON_SITE_PACKAGES")
if _site and _site not in sys.path:
    sys.path.insert(0, _site)

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = config["parameters"]["onnx_path"]["string_value"]
        options = ort.SessionOptions()
        # One thread per session, as the node-agent's and MLServer's sessions in this bench.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, "input").as_numpy() for r in requests]
        batch = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
        probs = self.session.run(["probs"], {"input": batch})[0]
        responses, start = [], 0
        for x in inputs:
            end = start + x.shape[0]
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("probs", probs[start:end])]))
            start = end
        return responses
