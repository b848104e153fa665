"""The locks in requirements/ satisfy pyproject.toml, carry hashes, and agree with each other.

When this fails after a change to pyproject.toml's dependencies, `make lock` re-resolves.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from ..conftest import REPO_ROOT

LOCKS = REPO_ROOT / "requirements"
# The platform the locks are resolved for (Makefile's LOCK_FLAGS).
PLATFORM = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux",
            "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython"}  # fmt: skip
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s\\;]+)")


def read_lock(path: Path) -> dict[NormalizedName, Version]:
    """name -> pinned version; every pin must be followed by at least one sha256 hash."""
    pins: dict[NormalizedName, Version] = {}
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        match = PIN.match(line)
        if not match:
            continue
        name = canonicalize_name(match.group(1))
        hashes = [h for h in lines[i + 1 : i + 3] if h.strip().startswith("--hash=sha256:")]
        assert hashes, f"{path.name}: {name} has no hash"
        pins[name] = Version(match.group(2))
    return pins


def requirements(extras: set[str]) -> list[Requirement]:
    """pyproject.toml's base dependencies and those of the extras, with fmtune[...] expanded."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    found = [Requirement(r) for r in project["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for raw in optional[extra]:
            req = Requirement(raw)
            if req.name == project["name"]:
                todo += list(req.extras)
            else:
                found.append(req)
    return [r for r in found if r.marker is None or r.marker.evaluate({**PLATFORM, "extra": ""})]


def unsatisfied(reqs: list[Requirement], pins: dict[NormalizedName, Version]) -> list[str]:
    problems = []
    for req in reqs:
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req}: not in the lock")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req}: the lock has {pinned}")
    return problems


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("all-dev.txt", {"all", "dev"}), ("all.txt", {"all"}), ("client.txt", {"client"})],
)
def test_the_lock_satisfies_pyproject(lock: str, extras: set[str]) -> None:
    assert unsatisfied(requirements(extras), read_lock(LOCKS / lock)) == [], "run `make lock`"


def test_a_requirement_the_lock_misses_is_reported() -> None:
    pins = read_lock(LOCKS / "client.txt")
    raised = [Requirement("grpcio>=99"), Requirement("no-such-package==1"), Requirement("httpx>=0.27")]
    assert unsatisfied(raised, pins) == [
        f"grpcio>=99: the lock has {pins['grpcio']}",
        "no-such-package==1: not in the lock",
    ]


def test_the_smaller_locks_pin_the_full_locks_versions() -> None:
    full = read_lock(LOCKS / "all-dev.txt")
    image, client, gpu = (read_lock(LOCKS / name) for name in ("all.txt", "client.txt", "gpu.txt"))
    assert "tensorflow" not in client and "keras" not in client  # the client stays free of TensorFlow
    assert "pytest" not in image and "mypy" not in image  # the images carry no dev tools
    for name, pins in (("all.txt", image), ("client.txt", client)):
        assert {n: v for n, v in pins.items() if full[n] != v} == {}, name
    assert {n: v for n, v in gpu.items() if n in image and image[n] != v} == {}
    assert any(name.startswith("nvidia-cudnn") for name in gpu)
    # fmtune itself is built without fetching a backend: `--no-build-isolation` uses the locked setuptools.
    assert "setuptools" in full and "setuptools" in image


def test_make_install_and_the_images_install_from_the_locks() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "LOCK   := requirements/all-dev.txt" in makefile and "--require-hashes -r $(LOCK)" in makefile
    assert re.search(r"^STAMP .*\$\(LOCK\)", makefile, re.M), "the install stamp must change with the lock"
    cpu = (REPO_ROOT / "images" / "Dockerfile").read_text()
    gpu = (REPO_ROOT / "images" / "Dockerfile.gpu").read_text()
    assert "--require-hashes -r /src/requirements/all.txt" in cpu
    assert "--require-hashes -r /tmp/gpu.txt" in gpu
