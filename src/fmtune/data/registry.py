"""The IDX datasets fmtune knows by name, and those a ``dataset.json`` manifest declares.

Checksums are of the *decompressed* IDX bytes, because Debian's package recompresses the same
bytes into different gz files.
"""

from __future__ import annotations

import json
from pathlib import Path

from fmtune.data.types import DatasetError, DatasetSpec

_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TEST_FILES = _FILES[2:]
MANIFEST = "dataset.json"
NUM_CLASSES = 10  # every IDX dataset's labels, and (until models follow the data) every model's outputs

DATASETS: dict[str, DatasetSpec] = {
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        folder="fashion-mnist",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        sha256=dict(
            zip(
                _FILES,
                (
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                ),
                strict=True,
            )
        ),
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        flip_invariant=True,  # a mirrored shirt is a shirt
        dark_background=True,
    ),
    "mnist": DatasetSpec(
        name="mnist",
        folder="mnist",
        class_names=tuple(str(d) for d in range(10)),
        sha256=dict(
            zip(
                _FILES,
                (
                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                ),
                strict=True,
            )
        ),
        flip_invariant=False,  # a mirrored 2 is no digit
        dark_background=True,
    ),
}


def resolve_spec(name: str, data_dir: Path | None) -> DatasetSpec:
    """A registered dataset, or one declared by a ``dataset.json`` manifest in the data dir.

    The manifest lets users bring other 28x28 IDX datasets while keeping checksum verification:
    ``{"name": ..., "class_names": [...], "sha256": {"train-images-idx3-ubyte": ...}}``, with
    optional ``"flip_invariant"`` (default false) and ``"dark_background"`` (default true: the
    MNIST family's convention, which such a dataset follows).
    """
    if name in DATASETS:
        return DATASETS[name]
    for directory in [data_dir / name, data_dir] if data_dir else []:
        manifest = directory / MANIFEST
        if not manifest.is_file():
            continue
        try:
            raw = json.loads(manifest.read_text())
            spec = DatasetSpec(
                name=raw["name"],
                folder=directory.name,
                class_names=tuple(raw["class_names"]),
                sha256={file: raw["sha256"][file] for file in _FILES},
                flip_invariant=raw.get("flip_invariant", False),
                dark_background=raw.get("dark_background", True),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{manifest}: invalid dataset manifest ({exc!r})") from None
        problem = _manifest_problem(raw)
        if problem:
            raise DatasetError(f"{manifest}: invalid dataset manifest ({problem})")
        if spec.name == name:
            return spec
    known = ", ".join(DATASETS)
    raise DatasetError(f"unknown dataset '{name}': not one of {known}, and no {MANIFEST} in the data dir declares it")


def _manifest_problem(raw: dict[str, object]) -> str | None:
    """What makes a parsed manifest unusable: every model has NUM_CLASSES outputs, one per name."""
    if not isinstance(raw["name"], str) or not raw["name"]:
        return "'name' must be a non-empty string"
    names = raw["class_names"]
    if not isinstance(names, list) or len(names) != NUM_CLASSES or not all(isinstance(n, str) and n for n in names):
        return f"'class_names' must be a list of {NUM_CLASSES} non-empty strings, one per label"
    for flag in ("flip_invariant", "dark_background"):
        if not isinstance(raw.get(flag, False), bool):
            return f"'{flag}' must be true or false"
    return None
