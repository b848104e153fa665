"""A folder of class subfolders, the layout of ``keras.utils.image_dataset_from_directory``.

Either ``root/train/<class>/...`` and ``root/test/<class>/...`` (and optionally ``root/val/``), or
``root/<class>/...`` from which ``test_fraction`` of each class is held out for testing. Class
names are the folder names, in the order of ``class_names`` in the config, else of
``root/classes.json`` (a list of names, or ``{"class_names": [...]}``), else sorted. Files under a
class folder (subfolders included; hidden ones skipped) must all be images.

``plan_folder`` lists and checks everything without decoding a pixel; ``load_folder`` decodes the
plan into arrays, and ``fmtune.data.stream.folder_stream`` reads the same plan lazily.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmtune.data.checks import assemble, require_per_class
from fmtune.data.images import Probe, choose_shape, decode_into, probe
from fmtune.data.source import DataSourceConfig
from fmtune.data.splits import stratified_split
from fmtune.data.types import Dataset, DatasetError, Split

CLASSES_FILE = "classes.json"
# The held-out test images stay the same whatever the experiment's seed, so runs with different
# seeds are compared on the same test set.
TEST_SEED = 0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclass(frozen=True)
class Files:
    """One split's files, each with its label and header."""

    probes: tuple[Probe, ...]
    labels: np.ndarray  # int64 (N,)

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(p.path for p in self.probes)

    def subset(self, indices: np.ndarray) -> Files:
        return Files(tuple(self.probes[i] for i in indices), self.labels[indices])


@dataclass(frozen=True)
class FolderPlan:
    """Everything about a folder dataset but its pixels."""

    root: Path
    class_names: tuple[str, ...]
    splits: dict[str, Files]  # train, val, test
    shape: tuple[int, ...]  # one image: (H, W) or (H, W, 3)


def plan_folder(source: DataSourceConfig, seed: int) -> FolderPlan:
    """List, label and probe every file, split them, and choose the images' shape."""
    assert source.path is not None
    root = source.path
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder of class folders")
    top = root / "train" if (root / "train").is_dir() else root
    names = _class_order(root, top, source.class_names)
    splits: dict[str, Files] = {}
    if top is root:
        everything = _files(root, names, required=True)
        require_per_class(everything.labels, names, str(root), minimum=3)  # test, validation, training
        keep, held_out = stratified_split(everything.labels, source.test_fraction, TEST_SEED)
        splits["train"], splits["test"] = everything.subset(keep), everything.subset(held_out)
    else:
        if not (root / "test").is_dir():
            raise DatasetError(f"{root}: has train/ but no test/; add one, or put the class folders in {root} itself")
        splits["train"] = _files(top, names, required=True)
        splits["test"] = _files(root / "test", names, required=False)
        val_dir = next((root / d for d in ("val", "validation") if (root / d).is_dir()), None)
        if val_dir is not None:
            splits["val"] = _files(val_dir, names, required=False)
    if "val" not in splits:
        require_per_class(splits["train"].labels, names, str(top))
        keep, held_out = stratified_split(splits["train"].labels, source.val_fraction, seed)
        splits["train"], splits["val"] = splits["train"].subset(keep), splits["train"].subset(held_out)
    probes = [p for files in splits.values() for p in files.probes]
    shape = choose_shape(probes, source.image_size, source.color_mode, str(root))
    return FolderPlan(root, names, {k: splits[k] for k in ("train", "val", "test")}, shape)


def load_folder(source: DataSourceConfig, seed: int) -> Dataset:
    """The whole folder decoded into memory: one uint8 array per split."""
    plan = plan_folder(source, seed)
    arrays = {}
    for name, files in plan.splits.items():
        out = np.empty((len(files.labels), *plan.shape), np.uint8)
        classes = [plan.class_names[label] for label in files.labels]
        arrays[name] = Split(decode_into(out, files.paths, classes), files.labels)
    return assemble(source, plan.class_names, arrays["train"], arrays["val"], arrays["test"], str(plan.root))


def _class_order(root: Path, top: Path, given: tuple[str, ...] | None) -> tuple[str, ...]:
    folders = sorted(p.name for p in top.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        found = f" ({folders[0]})" if folders else ""
        raise DatasetError(f"{top}: {len(folders)} class folder(s){found}; a classifier needs at least 2")
    order, origin = given, "class_names"
    if order is None and (root / CLASSES_FILE).is_file():
        order, origin = _read_classes_file(root / CLASSES_FILE), str(root / CLASSES_FILE)
    if order is None:
        return tuple(folders)
    missing, extra = sorted(set(folders) - set(order)), sorted(set(order) - set(folders))
    if missing or extra:
        raise DatasetError(
            f"{origin} does not match the class folders in {top}: "
            f"folders not listed: {missing or 'none'}; listed without a folder: {extra or 'none'}"
        )
    return tuple(order)


def _read_classes_file(path: Path) -> tuple[str, ...]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    names = raw.get("class_names") if isinstance(raw, dict) else raw
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise DatasetError(f'{path}: expected a list of distinct folder names, or {{"class_names": [...]}}')
    return tuple(names)


def _files(directory: Path, names: tuple[str, ...], *, required: bool) -> Files:
    """Every file under each class folder, labelled and probed. ``required``: every class must have
    a folder here (train); else a missing folder is a class without test images."""
    folders = {p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")}
    strays = sorted(p.name for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if strays:
        raise DatasetError(f"{directory / strays[0]}: an image outside the class folders; move it into one")
    unknown = sorted(folders - set(names))
    if unknown:
        raise DatasetError(f"{directory / unknown[0]}: class folder '{unknown[0]}' is not a training class")
    probes: list[Probe] = []
    labels: list[int] = []
    for label, cls in enumerate(names):
        folder = directory / cls
        if not folder.is_dir():
            if required:
                raise DatasetError(f"{folder}: class folder '{cls}' is missing")
            continue
        found = [probe(path, cls) for path in _walk(folder)]
        if not found:
            raise DatasetError(f"{folder}: class folder '{cls}' has no images")
        probes += found
        labels += [label] * len(found)
    if not probes:
        raise DatasetError(f"{directory}: no class folders with images: an empty split")
    return Files(tuple(probes), np.array(labels, np.int64))


def _walk(folder: Path) -> list[Path]:
    """The files under ``folder``, hidden ones skipped, in a fixed (sorted) order."""
    found = []
    for current, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(current) / f for f in sorted(files) if not f.startswith(".")]
    return sorted(found)
