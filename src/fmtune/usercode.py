"""A user's code, named ``module:attr`` or ``path/to/file.py:attr``: a model plugin or a data loader.

One way to find it for both, so that the two forms, their errors and their module names agree. A
file is imported under a name made from its whole path, so two files of the same name in different
folders do not replace each other in ``sys.modules`` (where pickling and Keras look a function's
module up again).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from fmtune.text import one_line

FORMS = "module:attr or path/to/file.py:attr"


class UserCodeError(Exception):
    """The named code cannot be had; the message says why, for the caller to prefix with what it is."""


def is_path(module_part: str) -> bool:
    return module_part.endswith(".py") or "/" in module_part or "\\" in module_part


def load(target: str) -> Any:
    """The attribute ``target`` names. UserCodeError for a bad name, a module that is not there or
    fails to import, or a missing attribute; the user's own exception is chained."""
    module_part, _, attr = target.rpartition(":")
    if not module_part or not attr:
        raise UserCodeError(f"expected {FORMS}")
    module = from_file(Path(module_part)) if is_path(module_part) else from_module(module_part)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UserCodeError(f"{module_part} has no attribute '{attr}'") from None
    except Exception as exc:  # a module's __getattr__ may raise anything
        raise UserCodeError(f"getting {attr} from {module_part} raised {one_line(exc)}") from exc


def from_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise UserCodeError(f"no module named '{exc.name}' (is it on PYTHONPATH?)") from None
        raise UserCodeError(f"importing {name} raised {one_line(exc)}") from exc
    except (Exception, SystemExit) as exc:
        raise UserCodeError(f"importing {name} raised {one_line(exc)}") from exc


def from_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UserCodeError(f"no such file {path}")
    name = f"fmtune_user_{path.stem}_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserCodeError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise UserCodeError(f"importing {path} raised {one_line(exc)}") from exc
    return module
