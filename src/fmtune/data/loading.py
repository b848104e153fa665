"""One entry point for every source kind: ``load_source(config, seed)``, and ``check_source``, the
cheap look a config validator can take before anything runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fmtune.data import idx
from fmtune.data.registry import resolve_spec
from fmtune.data.source import DataSourceConfig
from fmtune.data.types import Dataset, DatasetError


def load_source(source: DataSourceConfig, seed: int) -> Dataset:
    """The dataset a source describes, with its validation split fixed by ``seed``; bad data raises
    DatasetError naming the file, class or array, before anything is written."""
    if source.kind == "idx":
        assert source.name is not None
        dataset = idx.load(
            source.name, source.path, val_fraction=source.val_fraction, seed=seed, download=source.download
        )
        flags = {
            flag: value
            for flag in ("flip_invariant", "dark_background")
            if (value := getattr(source, flag)) is not None
        }
        return dataclasses.replace(dataset, spec=dataclasses.replace(dataset.spec, **flags)) if flags else dataset
    if source.kind == "folder":
        from fmtune.data.folder import load_folder

        return load_folder(source, seed)
    if source.kind == "npz":
        from fmtune.data.npz import load_npz

        return load_npz(source, seed)
    from fmtune.data.loader import load_loader

    return load_loader(source, seed)


def check_source(source: DataSourceConfig) -> None:
    """What can be told without reading the data: the IDX dataset is known, the path exists, a
    loader file exists. (A loader module is not imported here: that runs the user's code.)"""
    if source.kind == "idx":
        assert source.name is not None
        resolve_spec(source.name, source.path)
    elif source.kind == "folder" and not (source.path and source.path.is_dir()):
        raise DatasetError(f"{source.path}: no such folder of class folders")
    elif source.kind == "npz" and not (source.path and source.path.is_file()):
        raise DatasetError(f"{source.path}: no such npz file")
    elif source.kind == "loader" and source.loader:
        module = source.loader.rpartition(":")[0]
        if module.endswith(".py") and not Path(module).is_file():
            raise DatasetError(f"loader '{source.loader}': no such file {module}")
