"""The CPU image builds with podman from a locally made Debian base, and runs as uid 10001 read-only.

Slow (a few minutes): `make test-slow`, or `pytest -m slow tests/images`. Needs podman, runc and
mmdebstrap (Debian packages); skipped without them. On a Docker host, `make images` is the same build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
ROOT = Path(__file__).resolve().parents[2]
BASE = "localhost/debian-python:bookworm"


@pytest.fixture(scope="module")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"image build test needs {', '.join(missing)} (apt-get install podman runc mmdebstrap)")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    # crun fails in this kind of sandbox, and --ulimit on the command line would replace both limits.
    conf.write_text(
        '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n[engine]\nruntime = "runc"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    if subprocess.run(["podman", "image", "exists", BASE], env=env).returncode != 0:
        tar = tmp_path_factory.mktemp("base") / "base.tar"
        subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,python3-pip,ca-certificates",
                "bookworm",
                str(tar),
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        subprocess.run(["podman", "import", "--change", 'CMD ["/bin/bash"]', str(tar), BASE], check=True, env=env)
    return env


def test_cpu_image_builds_and_runs_read_only_as_non_root(podman_env: dict[str, str]) -> None:
    started = time.monotonic()
    subprocess.run(
        [str(ROOT / "images/build.sh")],
        check=True,
        cwd=ROOT,
        env={**podman_env, "ENGINE": "podman", "BASE_IMAGE": BASE, "TAG": "test"},
    )
    print(f"build took {time.monotonic() - started:.0f}s")
    run = [
        "podman",
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "-e",
        "HOME=/tmp/home",
        "-e",
        "KERAS_HOME=/tmp/keras",
        "-e",
        "MPLCONFIGDIR=/tmp/matplotlib",
    ]
    done = subprocess.run([*run, "localhost/fmtune:test", "--help"], capture_output=True, text=True, env=podman_env)
    assert done.returncode == 0, done.stderr
    assert "coordinator" in done.stdout and "worker" in done.stdout and "predict" in done.stdout
    who = subprocess.run(
        [*run, "--entrypoint", "id", "localhost/fmtune:test", "-u"], capture_output=True, text=True, env=podman_env
    )
    assert who.stdout.strip() == "10001"
    data = subprocess.run(
        [*run, "--entrypoint", "ls", "localhost/fmtune:test", "/usr/share/datasets/fashion-mnist"],
        capture_output=True,
        text=True,
        env=podman_env,
    )
    assert "train-images-idx3-ubyte.gz" in data.stdout
    # A real (tiny) search on the baked-in Fashion-MNIST, with nothing writable but /tmp.
    tune = subprocess.run(
        [
            *run,
            "localhost/fmtune:test",
            "tune",
            "--data-dir",
            "/usr/share/datasets",
            "--workdir",
            "/tmp/runs",
            "--model-repo",
            "/tmp/models",
            "--max-trials",
            "2",
            "--set",
            "search.epochs=1",
            "--set",
            "search.train_samples=2000",
            "--set",
            "retrain.max_epochs=1",
            "--set",
            "download=false",
        ],
        capture_output=True,
        text=True,
        env=podman_env,
        timeout=600,
    )
    assert tune.returncode == 0, tune.stdout[-3000:] + tune.stderr[-3000:]
    assert "trial 2/2 done" in tune.stdout and "exported version 1" in tune.stdout
