"""The images the real-node suite runs are the Dockerfile's: each target built without a Docker
engine (tests/cluster/images.py, crane) from this checkout, then read back from its tarball and
held against the Dockerfile's own lines: entrypoint, user, environment, ports, and every file
each COPY puts in place. A Dockerfile change the builder cannot follow fails here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

import images  # noqa: E402
from cluster import ensure_built  # noqa: E402

TARGETS = ("node-agent", "operator", "models")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    crane = ensure_built(("crane",))["crane"] / "crane"
    return images.build_targets(list(TARGETS), profile="debug", out_dir=tmp_path_factory.mktemp("images"),
                                crane=crane, cache=Path.home() / ".cache" / "idn" / "images")


def test_the_dockerfile_names_every_target_built():
    assert set(images.dockerfile_image_names()) == set(TARGETS)


@pytest.mark.parametrize("target", TARGETS)
def test_an_image_holds_what_its_dockerfile_stage_says(built, target):
    stage = images.dockerfile_stages()[target]
    config, paths = images.image_config(built[target])
    run = config["config"]
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert run.get("Entrypoint") == stage.entrypoint
    expected_user = stage.user or ("65532:65532" if "nonroot" in stage.base else None)
    assert run.get("User") == expected_user
    env = dict(e.split("=", 1) for e in run.get("Env") or [])
    assert {k: env.get(k) for k in stage.env} == stage.env
    assert sorted(run.get("ExposedPorts") or {}) == sorted(stage.exposed)
    for stage_from, src, dest in stage.copies:
        path = dest if not dest.endswith("/") else dest + Path(src).name
        assert path in paths, f"{target}: {src} should be at {path}"
    assert images.image_refs(built[target])[1] == images.normalized(images.dockerfile_image_names()[target])


def test_the_distroless_base_is_made_of_its_debian_packages(built):
    """What the node-agent needs to start: the dynamic loader, glibc, libgcc and libstdc++ (ONNX
    Runtime), the CA bundle (https links), and the non-root user."""
    _, paths = images.image_config(built["node-agent"])
    for path in ("/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6",
                 "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                 "/etc/ssl/certs/ca-certificates.crt", "/etc/passwd", "/home/nonroot"):
        assert path in paths, path


def test_a_final_stage_with_a_step_the_builder_cannot_reproduce_is_refused(tmp_path):
    text = images.DOCKERFILE.read_text().replace("USER 65532:65532\nEXPOSE 8000 8001",
                                                 "USER 65532:65532\nWORKDIR /srv\nEXPOSE 8000 8001")
    assert "WORKDIR /srv" in text
    crane = ensure_built(("crane",))["crane"] / "crane"
    with pytest.raises(images.ImageError, match="node-agent: WORKDIR cannot be reproduced"):
        images.build_targets(["node-agent"], profile="debug", out_dir=tmp_path, crane=crane,
                             cache=Path.home() / ".cache" / "idn" / "images", dockerfile=text)
