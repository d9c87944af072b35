#!/usr/bin/env python3
"""Writes a Triton model repository for bench/run.sh and tests/interop/test_triton_upstream.py
(standard library only).

    repository.py DIR BATCHING INSTANCES MODEL...

DIR/<model>/config.pbtxt and DIR/<model>/1/model.py (bench/triton/model.py) for each MODEL of
examples/models/<model>.onnx (input `input` [N, 784] FP32, output `probs` [N, 10] FP32).
BATCHING is `on` (dynamic batching, no queue delay: whatever is queued when an instance is free
goes in one batch) or `off` (one request per execute call). INSTANCES: model instances (each a
Python stub process with its own onnxruntime session).
"""

import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MAX_BATCH = 64

CONFIG = """name: "{name}"
backend: "python"
max_batch_size: {max_batch}
input [{{ name: "input", data_type: TYPE_FP32, dims: [ 784 ] }}]
output [{{ name: "probs", data_type: TYPE_FP32, dims: [ 10 ] }}]
instance_group [{{ kind: KIND_CPU, count: {instances} }}]
parameters {{ key: "onnx_path", value: {{ string_value: "{onnx}" }} }}
{batching}"""


def main(out, batching, instances, *models):
    if batching not in ("on", "off"):
        sys.exit(f"BATCHING must be on or off, not {batching!r}")
    for name in models:
        onnx = os.path.join(ROOT, "examples/models", f"{name}.onnx")
        if not os.path.exists(onnx):
            sys.exit(f"no model {onnx}")
        os.makedirs(os.path.join(out, name, "1"), exist_ok=True)
        shutil.copy(os.path.join(HERE, "model.py"), os.path.join(out, name, "1", "model.py"))
        with open(os.path.join(out, name, "config.pbtxt"), "w") as f:
            f.write(CONFIG.format(
                name=name, max_batch=MAX_BATCH, instances=int(instances), onnx=onnx,
                batching="dynamic_batching { max_queue_delay_microseconds: 0 }\n" if batching == "on" else "",
            ))


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
