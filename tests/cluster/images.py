"""Container images without a Docker engine, for the real nodes of the test clusters.

The project's images are read off the repository's Dockerfile: each final stage's COPY, ENV,
USER, EXPOSE and ENTRYPOINT, with the builder stages' outputs taken from this checkout
(`/out/<binary>` is `target/<profile>/<binary>`, `/src/<path>` and build-context paths are the
repository's files). The `distroless/cc` base is assembled from the same Debian packages it is
made of (libc6, libgcc-s1, libstdc++6, ca-certificates) plus its non-root user; `scratch` is no
base at all. crane (go-containerregistry, built by build.sh) pushes the layers and the config to
a registry of its own on loopback and saves the image as a tarball, which the nodes'
containerd imports (`Cluster.import_image`). No registry outside this machine is involved.

    python3 tests/cluster/images.py [--profile debug|release] [--out DIR] [TARGET ...]

builds the Dockerfile's targets (default: all) and prints each tarball.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DOCKERFILE = REPO / "Dockerfile"
PAUSE_IMAGE = "idn.test/pause:1"
# What the distroless/cc base is made of, from Debian's packages.
BASE_PACKAGES = ("libc6", "libgcc-s1", "libstdc++6", "ca-certificates")
NONROOT = 65532


class ImageError(RuntimeError):
    pass


# ------------------------------------------------------------------ the Dockerfile
@dataclass
class Stage:
    """A final stage of the Dockerfile: what an image of it holds and how it starts."""
    name: str
    base: str
    copies: list[tuple[str, str, str]] = field(default_factory=list)  # (from stage or "", source, destination)
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    exposed: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    # instructions this builder does not reproduce (RUN, WORKDIR, ...): fine in a builder stage,
    # an error in a target it builds, so that the images cannot silently drift from the file
    others: list[str] = field(default_factory=list)


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    return lines


def dockerfile_stages(text: str | None = None) -> dict[str, Stage]:
    """Every stage of the Dockerfile, by name (the instructions an image needs; RUN is the
    builders' business)."""
    text = DOCKERFILE.read_text() if text is None else text
    stages: dict[str, Stage] = {}
    stage = None
    for line in _logical_lines(text):
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            if not m:
                raise ImageError(f"Dockerfile: cannot read {line!r}")
            stage = Stage(name=m.group(2) or m.group(1), base=m.group(1))
            stages[stage.name] = stage
        elif stage is None:
            continue
        elif op == "COPY":
            words = shlex.split(rest)
            source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), "")
            paths = [w for w in words if not w.startswith("--")]
            for src in paths[:-1]:
                stage.copies.append((source_stage, src, paths[-1]))
        elif op == "ENV":
            key, _, value = rest.partition("=")
            stage.env[key.strip()] = value.strip()
        elif op == "USER":
            stage.user = rest.strip()
        elif op == "EXPOSE":
            stage.exposed += [p if "/" in p else f"{p}/tcp" for p in rest.split()]
        elif op == "ENTRYPOINT":
            stage.entrypoint = json.loads(rest)
        else:
            stage.others.append(op)
    return stages


def source_path(stage_from: str, src: str, profile: str) -> Path:
    """Where a COPY's source is in this checkout: the builders put binaries in /out and work in
    /src; the build context is the repository."""
    if src.startswith("/out/"):
        return REPO / "target" / profile / src.removeprefix("/out/")
    if src.startswith("/src/"):
        return REPO / src.removeprefix("/src/")
    if stage_from:
        raise ImageError(f"Dockerfile: no local equivalent of {src} from stage {stage_from}")
    return REPO / src


# ------------------------------------------------------------------ layers
def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755):
    info = tarfile.TarInfo(name.strip("/"))
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
    tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644):
    info = tarfile.TarInfo(name.strip("/"))
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def _parents(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def files_layer(out: Path, files: list[tuple[Path, str]]):
    """A layer of files (source, destination), each with its parent folders, owned by root."""
    with tarfile.open(out, "w") as tar:
        seen = set()
        for src, dest in sorted(files, key=lambda f: f[1]):
            for d in _parents(dest):
                if d not in seen:
                    seen.add(d)
                    _add_dir(tar, d)
            mode = 0o755 if src.stat().st_mode & 0o111 else 0o644
            _add_bytes(tar, dest, src.read_bytes(), mode)


def base_layer(out: Path, cache: Path):
    """The distroless/cc equivalent: glibc, libgcc, libstdc++ and CA certificates from Debian's
    packages, and the `nonroot` user (65532) with its home."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not all(any(debs.glob(f"{p}_*.deb")) for p in BASE_PACKAGES):
        download = ["apt-get", "download", *BASE_PACKAGES]
        r = subprocess.run(download, cwd=debs, capture_output=True, text=True)
        if r.returncode != 0:  # a machine whose package lists were never fetched
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            r = subprocess.run(download, cwd=debs, capture_output=True, text=True)
        if r.returncode != 0:
            raise ImageError(f"apt-get download {' '.join(BASE_PACKAGES)}: {r.stderr.strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        for junk in ("usr/share/doc", "usr/share/man", "usr/share/lintian", "usr/share/locale",
                     "usr/lib/x86_64-linux-gnu/gconv", "usr/share/gcc", "usr/sbin", "usr/bin", "sbin", "bin"):
            shutil.rmtree(root / junk, ignore_errors=True)
        certs = sorted((root / "usr/share/ca-certificates").rglob("*.crt"))
        bundle = b"".join(c.read_bytes() for c in certs)
        etc = {
            "etc/passwd": f"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n",
            "etc/group": f"root:x:0:\nnonroot:x:{NONROOT}:\n",
            "etc/nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
        }
        with tarfile.open(out, "w") as tar:
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(root).as_posix()
                info = tar.gettarinfo(str(path), rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isfile():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
            _add_dir(tar, "etc/ssl/certs")
            _add_bytes(tar, "etc/ssl/certs/ca-certificates.crt", bundle)
            for name, text in etc.items():
                _add_bytes(tar, name, text.encode())
            _add_dir(tar, "tmp", 0o1777)
            info = tarfile.TarInfo("home/nonroot")
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o700, NONROOT, NONROOT
            tar.addfile(info)


# ------------------------------------------------------------------ crane
@contextlib.contextmanager
def registry(crane: Path):
    """crane's own registry on a free loopback port, in memory, for the length of a build."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(crane), "registry", "serve", "--address", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ImageError("crane registry serve did not start")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _crane(crane: Path, *args: str):
    r = subprocess.run([str(crane), *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise ImageError(f"crane {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def assemble(crane: Path, reg: str, name: str, layers: list[Path], out: Path, *, entrypoint: list[str],
             user: str | None = None, env: dict[str, str] | None = None, exposed: list[str] = ()) -> Path:
    """Pushes the layers and the config as `name` to the loopback registry and saves it as the
    tarball `out` (tagged with `name`'s path on that registry; import_name() gives the name a
    node knows it by)."""
    ref = f"{reg}/{repository(name)}"
    args = ["append", "--oci-empty-base", "-t", ref]
    for layer in layers:
        args += ["-f", str(layer)]
    _crane(crane, *args)
    mutate = ["mutate", ref, "-t", ref, "--set-platform", "linux/amd64"]
    if entrypoint:
        mutate += ["--entrypoint", ",".join(entrypoint)]
    if user:
        mutate += ["--user", user]
    for key, value in (env or {}).items():
        mutate += ["-e", f"{key}={value}"]
    if exposed:
        mutate += ["--exposed-ports", ",".join(exposed)]
    _crane(crane, *mutate)
    out.parent.mkdir(parents=True, exist_ok=True)
    _crane(crane, "pull", ref, str(out))
    (out.with_suffix(".json")).write_text(json.dumps({"name": normalized(name), "ref": ref}))
    return out


def repository(name: str) -> str:
    """`name` without a registry host, as pushed to the loopback registry."""
    first, _, rest = name.partition("/")
    return rest if rest and ("." in first or ":" in first) else name


def normalized(name: str) -> str:
    """The fully qualified name containerd stores (what a pod's `image: name` resolves to)."""
    first, _, rest = name.partition("/")
    if not rest:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return name


def image_refs(tarball: Path) -> tuple[str, str]:
    """(the reference inside the tarball, the name the nodes should know it by)."""
    meta = json.loads(tarball.with_suffix(".json").read_text())
    return meta["ref"], meta["name"]


def image_config(tarball: Path) -> tuple[dict, list[str]]:
    """An image tarball's config and the paths of all its layers' files, to check it against the
    Dockerfile."""
    with tarfile.open(tarball) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]
        config = json.load(outer.extractfile(manifest["Config"]))
        paths = []
        for layer in manifest["Layers"]:
            data = outer.extractfile(layer).read()
            with tarfile.open(fileobj=io.BytesIO(data)) as inner:
                paths += ["/" + m.name.lstrip("./") for m in inner.getmembers()]
    return config, paths


# ------------------------------------------------------------------ the images
def pause_image(pause: Path, crane: Path, out_dir: Path) -> Path:
    """The sandbox image of every pod: our pause (build.sh) alone."""
    out = out_dir / "pause.tar"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory() as tmp, registry(crane) as reg:
        layer = Path(tmp) / "pause.tar"
        files_layer(layer, [(pause / "pause", "pause")])
        return assemble(crane, reg, PAUSE_IMAGE, [layer], out, entrypoint=["/pause"], user=f"{NONROOT}:{NONROOT}")


def dockerfile_image_names(text: str | None = None) -> dict[str, str]:
    """Image name of each target, from the Dockerfile's header (`docker build --target T -t N`)."""
    text = DOCKERFILE.read_text() if text is None else text
    return dict(re.findall(r"--target\s+(\S+)\s+-t\s+(\S+)", text))


def build_targets(targets: list[str] | None, *, profile: str, out_dir: Path, crane: Path,
                  cache: Path, dockerfile: str | None = None) -> dict[str, Path]:
    """Builds the Dockerfile's final targets (default: all named in its header) from this
    checkout's build output; returns each target's tarball."""
    stages = dockerfile_stages(dockerfile)
    names = dockerfile_image_names(dockerfile)
    targets = targets or list(names)
    built = {}
    with tempfile.TemporaryDirectory() as tmp, registry(crane) as reg:
        tmp = Path(tmp)
        base = None
        for target in targets:
            stage = stages[target]
            if stage.others:
                raise ImageError(f"Dockerfile target {target}: {', '.join(stage.others)} cannot be reproduced "
                                 "without a Docker engine (tests/cluster/images.py)")
            layers = []
            if stage.base.startswith("gcr.io/distroless/cc"):
                if base is None:
                    base = tmp / "base.tar"
                    base_layer(base, cache)
                layers.append(base)
            elif stage.base != "scratch":
                raise ImageError(f"Dockerfile target {target}: no local equivalent of base {stage.base}")
            files = []
            for stage_from, src, dest in stage.copies:
                path = source_path(stage_from, src, profile)
                if not path.exists():
                    raise ImageError(f"target {target}: {path} is missing (build it first)")
                files.append((path, dest if not dest.endswith("/") else dest + path.name))
            layer = tmp / f"{target}.tar"
            files_layer(layer, files)
            layers.append(layer)
            user = stage.user or (f"{NONROOT}:{NONROOT}" if "nonroot" in stage.base else None)
            built[target] = assemble(crane, reg, names[target], layers, out_dir / f"{target}.tar",
                                     entrypoint=stage.entrypoint or [], user=user, env=stage.env,
                                     exposed=stage.exposed)
    return built


def main(argv=None) -> int:
    sys.path.insert(0, str(HERE))
    from cluster import bin_dir
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="*")
    ap.add_argument("--profile", default="debug", choices=["debug", "release"])
    ap.add_argument("--out", default=str(REPO / "target" / "images"))
    args = ap.parse_args(argv)
    built = build_targets(args.targets, profile=args.profile, out_dir=Path(args.out), crane=bin_dir("crane") / "crane",
                          cache=Path.home() / ".cache" / "idn" / "images")
    for target, tarball in built.items():
        print(f"{target}: {tarball} ({image_refs(tarball)[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
