"""Model plugins: the user's ``build_model(hp)`` or Keras Tuner ``HyperModel``, and the built-in
families, all loaded and built the same way.

A plugin is named ``package.module:attr`` or ``path/to/file.py:attr`` (``search.hypermodel``); the
built-in families are ``fmtune.models.families:MLP`` and so on (``search.family``). A plugin defined
where no worker can import it (a notebook's ``__main__``) is shipped by value instead:
``pickle:path/to/model.pkl``, written by ``fmtune.tune()`` with cloudpickle into the experiment's
directory, which only processes that see that directory (the local ones) can load. The attribute
is one of:

- a function ``build_model(hp)`` returning a compiled ``keras.Model`` (Keras Tuner's convention);
- a ``keras_tuner.HyperModel`` subclass (made with no arguments) or instance, whose
  ``fit(hp, model, *args, **kwargs)`` Keras Tuner honours, so it can tune the batch size.

A function or a class that takes ``input_shape`` and ``num_classes`` keyword arguments gets the
data's, so one builder serves several datasets. Models are fed the images as they are stored and
served: uint8, ``(N, H, W)`` for grayscale or ``(N, H, W, C)``. Normalisation belongs in the model
(``keras.layers.Rescaling(1 / 255)`` as its first layer, or a ``Lambda``), so that it is part of the
exported graph and serving takes raw images whatever the model expects.
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import keras_tuner

from fmtune import devices, usercode
from fmtune.config.sections import PICKLED, SearchConfig
from fmtune.text import one_line

BUILT_IN = "fmtune.models.families"
FAMILY_CLASSES = {"mlp": "MLP", "cnn": "CNN", "deep_cnn": "DeepCNN", "vgg": "VGG"}
SHAPE_ARGUMENTS = ("input_shape", "num_classes")
FORMS = "'package.module:attr', 'path/to/file.py:attr' or 'pickle:path/to/model.pkl'"


class PluginError(ValueError):
    """A model plugin cannot be loaded, built or used with the data; the message says why in one line."""


def kind_of(thing: Any) -> str:
    """What ``thing`` is, for a message: 'an int', 'a NoneType'."""
    name = type(thing).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def portable(name: str | None) -> None:
    """Refuse a plugin shipped by value (``pickle:``) where processes do not share a directory: a
    coordinator that resolved its own config is a pod, and so are its workers."""
    if name is not None and name.startswith(PICKLED):
        raise PluginError(
            f"search.hypermodel {name}: a model pickled by fmtune.tune() runs only in local processes; on "
            "Kubernetes the code must be importable in the pods: an image FROM fmtune's, or "
            "--set-file model.source=..."
        )


def plugin_name(search: SearchConfig) -> str:
    """The plugin a search uses: the user's, else its built-in family's."""
    return search.hypermodel or f"{BUILT_IN}:{FAMILY_CLASSES[search.family]}"


def load_attr(name: str) -> Any:
    """The attribute ``name`` points at: ``module:attr``, ``path/to/file.py:attr``, or the object
    pickled at ``pickle:path``."""
    if name.startswith(PICKLED):
        return _unpickle(name, Path(name.removeprefix(PICKLED)))
    target, _, attr = name.rpartition(":")
    if not target or not attr:
        raise PluginError(f"{name}: expected {FORMS}")
    try:
        return usercode.load(name)
    except usercode.UserCodeError as exc:
        raise PluginError(f"{name}: {exc}") from exc.__cause__


def _unpickle(name: str, path: Path) -> Any:
    """A pickled plugin, loaded with pickle (cloudpickle's output needs only cloudpickle installed).
    Like importing a module, this runs code: the file is the user's own, written by fmtune.tune()."""
    if not path.is_file():
        raise PluginError(f"{name}: no such file {path}")
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except (Exception, SystemExit) as exc:
        raise PluginError(f"{name}: unpickling {path} raised {one_line(exc)}") from exc


def _shape_kwargs(func: Callable[..., Any], input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """The data's shape and class count, for the keyword arguments ``func`` accepts."""
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    given = {"input_shape": input_shape, "num_classes": num_classes}
    return {k: v for k, v in given.items() if takes_any or k in parameters}


class FunctionHyperModel(keras_tuner.HyperModel):
    """A ``build_model(hp)`` function as a HyperModel (Keras Tuner wraps functions the same way)."""

    def __init__(self, build_model: Callable[..., Any], kwargs: Mapping[str, Any]):
        super().__init__(name=getattr(build_model, "__name__", "build_model"))
        self.build_model, self.kwargs = build_model, dict(kwargs)

    def build(self, hp: keras_tuner.HyperParameters) -> Any:
        return self.build_model(hp, **self.kwargs)


def hypermodel(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    overrides: Mapping[str, Any] | None = None,
    found: Any = None,
    precision: str = "float32",
) -> keras_tuner.HyperModel:
    """The HyperModel ``name`` points at, for data of ``input_shape`` with ``num_classes`` classes
    (``overrides`` and ``precision``: the config's changes to a built-in family's space, and its
    arithmetic; ``found``: the attribute itself, when the caller holds it already, e.g. a
    notebook's function before it is pickled)."""
    shape = tuple(input_shape)
    if found is None:
        found = load_attr(name)
    wanted = "a build_model(hp) function or a keras_tuner.HyperModel (class or instance)"
    if isinstance(found, keras_tuner.HyperModel):
        return found
    if isinstance(found, type) and issubclass(found, keras_tuner.HyperModel):
        kwargs = _shape_kwargs(found, shape, num_classes)
        if name.startswith(f"{BUILT_IN}:"):
            kwargs["overrides"], kwargs["precision"] = overrides, devices.precision(precision)
        try:
            return found(**kwargs)
        except (Exception, SystemExit) as exc:
            raise PluginError(f"{name}: making {found.__name__}() raised {one_line(exc)}") from exc
    if isinstance(found, type):
        raise PluginError(f"{name}: the class {found.__name__} is not a keras_tuner.HyperModel; expected {wanted}")
    if isinstance(found, keras.Model):
        raise PluginError(f"{name}: a keras.Model, built once; expected {wanted} that builds one per trial")
    if callable(found):
        return FunctionHyperModel(found, _shape_kwargs(found, shape, num_classes))
    raise PluginError(f"{name}: {kind_of(found)}, not {wanted}")


def for_search(search: SearchConfig, input_shape: Sequence[int], num_classes: int) -> keras_tuner.HyperModel:
    return hypermodel(plugin_name(search), input_shape, num_classes, search.hyperparameters, precision=search.precision)


def build_from_values(
    search: SearchConfig, values: Mapping[str, Any], input_shape: Sequence[int], num_classes: int
) -> tuple[Any, keras_tuner.HyperParameters]:
    """Build (model, hp) for fixed values, e.g. the best trial's, for retraining."""
    hp = keras_tuner.HyperParameters()
    hm = for_search(search, input_shape, num_classes)
    hm.build(hp)  # declare the space
    hp.values.update({k: v for k, v in values.items() if not k.startswith("tuner/")})
    return hm.build(hp), hp
