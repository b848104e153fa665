"""A user's Python function as a data source: ``"module:function"`` or ``"path/to/file.py:function"``,
called without arguments, returning Keras datasets' ``(x_train, y_train), (x_test, y_test)`` or a
dict with those keys (and optionally ``class_names``).

Whatever goes wrong in the user's code (an import, a missing name, an exception in the call) comes
back as a DatasetError naming the loader, with the original exception chained for its traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fmtune import usercode
from fmtune.data.checks import checked_class_names, dataset_from_arrays
from fmtune.data.npz import KEYS
from fmtune.data.source import DataSourceConfig
from fmtune.data.types import Dataset, DatasetError

SHAPE = "(x_train, y_train), (x_test, y_test) or a dict with x_train, y_train, x_test, y_test"


def load_loader(source: DataSourceConfig, seed: int) -> Dataset:
    """Call the loader and check what it returns into a Dataset, validation split off by ``seed``."""
    assert source.loader is not None
    where = f"loader '{source.loader}'"
    function = resolve(source.loader)
    try:
        result = function()
    except (Exception, SystemExit) as exc:
        raise DatasetError(f"{where} raised {type(exc).__name__}: {exc}") from exc
    arrays, names = unpack(result, where)
    return dataset_from_arrays(source, seed, where, arrays, names)


def resolve(target: str) -> Callable[[], Any]:
    """The function a ``module:function`` or ``file.py:function`` target names."""
    where = f"loader '{target}'"
    try:
        function = usercode.load(target)
    except usercode.UserCodeError as exc:
        raise DatasetError(f"{where}: {exc}") from exc.__cause__
    if not callable(function):
        raise DatasetError(f"{where}: {target} is a {type(function).__name__}, not a function")
    return function


def unpack(result: Any, where: str) -> tuple[dict[str, Any], tuple[str, ...] | None]:
    """The four arrays and any class names from what the loader returned."""
    if isinstance(result, Mapping):
        missing = [key for key in KEYS if key not in result]
        if missing:
            has = ", ".join(map(str, result)) or "nothing"
            raise DatasetError(f"{where} returned a dict without {', '.join(missing)} (has: {has}); expected {SHAPE}")
        names = checked_class_names(result.get("class_names"), f"{where}: class_names")
        return {key: result[key] for key in KEYS}, names
    if isinstance(result, tuple | list) and len(result) == 2 and all(_pair(part) for part in result):
        (x_train, y_train), (x_test, y_test) = result
        return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}, None
    raise DatasetError(f"{where} returned {_shape_of(result)}; expected {SHAPE}")


def _pair(part: Any) -> bool:
    return isinstance(part, tuple | list) and len(part) == 2


def _shape_of(result: Any) -> str:
    if isinstance(result, tuple | list):
        inner = ", ".join(type(p).__name__ for p in result[:4])
        return f"a {type(result).__name__} of {len(result)} ({inner}{', ...' if len(result) > 4 else ''})"
    return f"a {type(result).__name__}"
