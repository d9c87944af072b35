#!/usr/bin/env python3
"""gRPC checks for bench/run.sh, with the OIP v2 gRPC messages of tritonclient (runs in the
Triton venv, which has grpcio and tritonclient).

    grpc_check.py live ADDRESS [SECONDS]   exit 0 once ServerLive answers live=true at ADDRESS
                                           (host:port), 1 if it does not within SECONDS (5)
    grpc_check.py check ADDRESS MODEL BODY [images=N] [record=RECORDS label=NAME]
                                           send BODY (the ModelInferRequest ghz sends, protobuf
                                           JSON) once, and images 1..N-1 encoded the same way;
                                           fail unless every answer has the reference probs and
                                           class of examples/data/reference/MODEL.probs.f32
"""

import base64
import json
import os
import struct
import sys
import time

import grpc
from google.protobuf import json_format
from tritonclient.grpc import service_pb2, service_pb2_grpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "examples/data/mnist-test-1000.images.u8")


def stub(address):
    return service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address))


def live(address, seconds="5"):
    deadline = time.monotonic() + float(seconds)
    while True:
        try:
            if stub(address).ServerLive(service_pb2.ServerLiveRequest(), timeout=1).live:
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.2)


def probs_of(response):
    """The `probs` output's 10 floats, from raw_output_contents or typed contents."""
    for i, output in enumerate(response.outputs):
        if output.name == "probs":
            if response.raw_output_contents:
                raw = response.raw_output_contents[i]
                return list(struct.unpack("<%df" % (len(raw) // 4), raw))
            return list(output.contents.fp32_contents)
    return None


def argmax(values):
    return max(range(len(values)), key=lambda i: values[i])


def check(address, model, body_path, *pairs):
    options = dict(p.split("=", 1) for p in pairs)
    images = int(options.get("images", "1"))
    with open(body_path) as f:
        template = json.load(f)
    with open(os.path.join(ROOT, "examples/data/reference", f"{model}.probs.f32"), "rb") as f:
        reference = f.read()
    client, worst = stub(address), 0.0
    for index in range(images):
        request = dict(template)
        if index:
            with open(IMAGES, "rb") as f:
                f.seek(784 * index)
                pixels = f.read(784)
            raw = struct.pack("<784f", *[p / 255.0 for p in pixels])
            request["raw_input_contents"] = [base64.b64encode(raw).decode()]
        message = json_format.ParseDict(request, service_pb2.ModelInferRequest())
        try:
            probs = probs_of(client.ModelInfer(message, timeout=10))
        except grpc.RpcError as e:
            sys.exit(f"grpc check {address} {model}: image {index}: {e.code()}: {e.details()}")
        want = struct.unpack_from("<10f", reference, 40 * index)
        diff = None if not probs or len(probs) != 10 else max(abs(a - b) for a, b in zip(probs, want))
        if diff is None or diff > 1e-4 or argmax(probs) != argmax(want):
            sys.exit(f"grpc check {address} {model}: image {index}: probs {probs}, reference class "
                     f"{argmax(want)}, max diff {diff}")
        worst = max(worst, diff)
    print(f"grpc check {address} {model}: probs and classes of {images} image(s) match the reference "
          f"(max diff {worst:.1e})")
    if options.get("record"):
        rec = {"system": "check", "mode": "check", "label": options.get("label"), "url": f"grpc://{address}",
               "model": model, "images": images, "protocol": "grpc", "max_diff": worst, "parameters": {}}
        with open(options["record"], "a") as f:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    commands = {"live": live, "check": check}
    if len(sys.argv) < 3 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
