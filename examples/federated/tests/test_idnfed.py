"""The pure parts of the federated loop: partitions, thresholds, weights, the tiers and their
ONNX form, manifests. Run with .venv-fed/bin/python -m pytest examples/federated/tests."""

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from onnx.reference import ReferenceEvaluator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from idnfed import measure, node, partition, revision, tiers, weighting  # noqa: E402


def labels(n=2000, seed=0):
    return np.random.default_rng(seed).integers(0, 10, n)


def test_dirichlet_split_gives_every_item_to_one_node_and_skews_with_small_alpha():
    y = labels()
    parts = partition.dirichlet_split(y, 5, 0.5, seed=1)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(y)))
    assert [p.tolist() for p in parts] == [p.tolist() for p in partition.dirichlet_split(y, 5, 0.5, 1)]

    def skew(alpha):
        return np.mean([partition.label_mix(y[p]).max() for p in partition.dirichlet_split(y, 5, alpha, 1)])

    assert skew(0.1) > skew(1.0) > skew(100.0)
    with pytest.raises(ValueError, match="alpha > 0"):
        partition.dirichlet_split(y, 5, 0.0, 1)


def test_samples_follow_the_node_mix():
    y = labels(5000)
    mix = np.array([0.5, 0.5] + [0.0] * 8)
    picked = partition.sample_like(y, mix, 1000, np.random.default_rng(0))
    assert len(picked) == 1000
    assert set(y[picked].tolist()) == {0, 1}


def test_local_data_that_does_not_fit_the_model_is_refused_with_its_shape(tmp_path):
    partition.save(tmp_path / "bad.npz", np.zeros((3, 100)), np.zeros(3))
    with pytest.raises(ValueError, match=r"items have shape \[100\], the model's input takes \[N, 784\]"):
        partition.load(tmp_path / "bad.npz", 784)
    partition.save(tmp_path / "labels.npz", np.zeros((3, 784)), np.array([0, 1, 12]))
    with pytest.raises(ValueError, match="labels in 0..9"):
        partition.load(tmp_path / "labels.npz", 784)
    (tmp_path / "junk.npz").write_text("not numpy")
    with pytest.raises(ValueError, match="not a sample with arrays x and y"):
        partition.load(tmp_path / "junk.npz", 784)


def test_thresholds_forward_exactly_the_budget():
    rng = np.random.default_rng(0)
    p_access, p_edge = rng.uniform(0.1, 1, 1000), rng.uniform(0.1, 1, 1000)
    budget = revision.Budget(edge=0.3, cloud=0.05)
    tau_a, tau_e = revision.thresholds(p_access, p_edge, budget)
    forwarded = p_access < tau_a
    assert forwarded.mean() == pytest.approx(0.3)
    assert (forwarded & (p_edge < tau_e)).mean() == pytest.approx(0.05)
    with pytest.raises(ValueError):
        revision.Budget(edge=0.1, cloud=0.2)


def test_serving_weights_follow_what_each_tier_serves():
    confidence = np.array([0.2, 0.9, 0.5])
    assert weighting.item_weights("fedavg", "edge", confidence, 0.6, 0.1) is None
    assert weighting.item_weights("serving", "access", confidence, 0.6, 0.1) is None
    assert weighting.item_weights("serving", "edge", confidence, 0.6, 0.1).tolist() == [1.0, 0.1, 1.0]
    assert weighting.client_weight("fedavg", "edge", 500, 300, 90) == 500
    assert weighting.client_weight("serving", "access", 500, 300, 90) == 300
    assert weighting.client_weight("serving", "edge", 500, 300, 90) == 90
    assert weighting.client_weight("serving", "edge", 500, 300, 0) == 1


def separable(n=600, seed=0):
    """Items whose class is the position of their brightest block of pixels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.uniform(0, 0.2, (n, tiers.FEATURES)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, c * 78 : (c + 1) * 78] += 0.8
    return x, y


@pytest.mark.parametrize("tier", ["access", "edge"])
def test_training_learns_and_the_onnx_graph_computes_the_same_probabilities(tier):
    x, y = separable()
    start = tiers.initial_arrays(tier, seed=0)
    trained = tiers.train(tier, start, x, y, None, epochs=3, lr=0.2, seed=0)
    before = (tiers.probabilities(start, x).argmax(1) == y).mean()
    after = (tiers.probabilities(trained, x).argmax(1) == y).mean()
    assert after > 0.9 > before
    graph = ReferenceEvaluator(tiers.to_onnx(trained, f"fed-{tier}"))
    (probs,) = graph.run(None, {"input": x[:50]})
    np.testing.assert_allclose(probs, tiers.probabilities(trained, x[:50]), atol=1e-5)


def test_item_weights_steer_training():
    x, y = separable()
    weights = np.where(y == 3, 1.0, 0.0)
    start = tiers.initial_arrays("access", seed=0)
    trained = tiers.train("access", start, x, y, weights, epochs=3, lr=0.2, seed=0)
    answers = tiers.probabilities(trained, x).argmax(1)
    assert (answers == 3).mean() > 0.5  # only class 3 counted, so it is answered everywhere


def test_weights_of_another_architecture_are_refused():
    x, y = separable(50)
    with pytest.raises(ValueError, match="expected"):
        tiers.train("edge", tiers.initial_arrays("access", 0), x, y, None, 1, 0.1, 0)


def test_a_revision_names_its_files_by_sha256_and_its_manifests_carry_them(tmp_path):
    x, _ = separable(200)
    arrays = {t: tiers.initial_arrays(t, 0) for t in revision.MODELS}
    rev = revision.build(arrays, x, revision.Budget(0.3, 0.05), tmp_path)
    for tier, model in revision.MODELS.items():
        assert (tmp_path / f"{model}-{rev.short(tier)}.onnx").is_file()
    docs = list(yaml.safe_load_all(revision.manifests(rev, 5, "ab" * 32)))
    kinds = [d["kind"] for d in docs]
    assert kinds.count("InferenceModel") == 3 and "InferenceDeliveryNetwork" in kinds
    access = next(d for d in docs if d["metadata"]["name"] == "fed-access")
    assert access["spec"]["source"]["sha256"] == rev.sha256["access"]
    strategy = next(d for d in docs if d["metadata"]["name"] == "access-cascade")
    assert strategy["spec"]["threshold"]["tau"] == rev.tau["access"]
    network = next(d for d in docs if d["kind"] == "InferenceDeliveryNetwork")
    assert [n["name"] for n in network["spec"]["nodes"]] == [
        "access-1", "access-2", "access-3", "access-4", "access-5", "edge", "cloud"]


def test_serving_counts_are_read_from_metrics():
    text = "\n".join([
        '# TYPE idn_decisions counter',
        'idn_decisions_total{node="access-1",service="digits",decision="served"} 70',
        'idn_decisions_total{node="access-1",service="digits",decision="forwarded"} 30',
        'idn_decisions_total{node="access-1",service="other",decision="served"} 5',
    ])
    assert node.serving_counts(text, "digits") == {"served": 70.0, "forwarded": 30.0}


def test_replays_combine_by_their_requests():
    a = measure.Measured(100, 0, 0.9, 2.0, {"access": 1.0})
    b = measure.Measured(300, 1, 0.5, 4.0, {"access": 0.5, "cloud": 0.5})
    both = measure.Measured.combine([a, b])
    assert both.requests == 400 and both.errors == 1
    assert both.accuracy == pytest.approx(0.6)
    assert both.tiers == pytest.approx({"access": 0.625, "cloud": 0.375})


def test_a_round_is_run_again_only_when_its_replies_were_lost(tmp_path):
    from idnfed import loop

    error, candidate = tmp_path / "error.json", tmp_path / "candidate.npz"
    assert loop._failure(error, candidate) == ("the ServerApp wrote no candidate", True)
    candidate.write_bytes(b"")
    assert loop._failure(error, candidate) == ("", False)
    error.write_text('{"error": "node access-3: bad shape", "transient": false}')
    assert loop._failure(error, candidate) == ("node access-3: bad shape", False)


def test_runs_are_named_by_mode_and_weighted_tiers(tmp_path):
    from idnfed import loop

    assert loop.Settings(1, "fedavg", tmp_path).name() == "fedavg"
    assert loop.Settings(1, "serving", tmp_path).name() == "serving"
    assert loop.Settings(1, "serving", tmp_path, serving_tiers=["edge"]).name() == "serving-edge"
