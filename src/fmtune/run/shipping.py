"""A notebook's model and arrays, made into files the local worker processes read: the model
pickled by value (cloudpickle: a function or class defined in ``__main__`` cannot be imported by
another process), the arrays as an npz, both named by a hash of their content so that changed code
or data makes a new experiment config, never a resumed one running other code than it began with.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from fmtune.data import DatasetError
from fmtune.files import replace
from fmtune.models.plugins import PluginError
from fmtune.text import one_line


def arrays(data: tuple[Any, ...]) -> dict[str, np.ndarray]:
    """Keras datasets' ``(x_train, y_train), (x_test, y_test)`` as the npz's named arrays (checked
    like an npz's afterwards, by ``fmtune.data``)."""
    try:
        (x_train, y_train), (x_test, y_test) = data
    except (TypeError, ValueError):
        raise TypeError("data: a tuple must be (x_train, y_train), (x_test, y_test)") from None
    given = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    found = {}
    for key, value in given.items():
        try:
            found[key] = np.asarray(value)
        except ValueError as exc:  # ragged nested lists
            raise DatasetError(f"data: {key}: not an array ({exc})") from None
    return found


def array_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """What the arrays hold, for their digest (an npz's own bytes carry the time it was written)."""
    return b"".join(
        f"{key}:{value.dtype.str}:{value.shape};".encode() + value.tobytes() for key, value in sorted(arrays.items())
    )


def npz_bytes(arrays: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def pickled(build_model: Any) -> bytes:
    """The model by value, for processes that cannot import where it was defined."""
    import cloudpickle

    try:
        return bytes(cloudpickle.dumps(build_model))
    except Exception as exc:
        raise PluginError(f"{label(build_model)}: cannot be pickled for the worker processes: {exc}") from exc


def unpickled(blob: bytes) -> Any:
    """The model as a worker will load it, so that the check runs on what is shipped."""
    import pickle

    try:
        return pickle.loads(blob)
    except Exception as exc:
        raise PluginError(f"the pickled model cannot be loaded back: {one_line(exc)}") from exc


def label(build_model: Any) -> str:
    """What messages call the model: its qualified name (``test.<locals>.build_model``)."""
    return str(getattr(build_model, "__qualname__", type(build_model).__qualname__))


def file_label(build_model: Any) -> str:
    """The model's own name, for its file's (and so the records'): ``build_model``."""
    name = str(getattr(build_model, "__name__", type(build_model).__name__))
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "hypermodel"


def digest(blob: bytes) -> str:
    """A short hash of the content, in file names: changed code or data makes a new config, so an
    experiment is never resumed (or found finished) under other code than it ran."""
    return hashlib.sha256(blob).hexdigest()[:12]


def write(path: Path, blob: bytes) -> None:
    """Written whole or not at all: a worker starting meanwhile never reads half a file."""
    replace(path, blob)


def python_path() -> dict[str, str]:
    """This process's own import paths (a notebook's folder, directories it appended), for the
    workers: what cloudpickle pickles by reference, and loaders, must import there too."""
    system = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    mine = [
        os.path.abspath(entry or os.getcwd())
        for entry in sys.path
        if os.path.isdir(entry or ".") and not any(os.path.realpath(entry or ".").startswith(s) for s in system)
    ]
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    joined = list(dict.fromkeys([*inherited, *mine]))
    return {"PYTHONPATH": os.pathsep.join(joined)} if joined else {}
