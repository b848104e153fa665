"""Where an experiment's images come from: the ``data`` section of a config.

One model for all four kinds, so that a YAML file says ``kind: folder`` and the options that go
with it; an option set (to other than its default) for a kind that ignores it is refused rather
than silently unused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

Kind = Literal["idx", "folder", "npz", "loader"]
ColorMode = Literal["grayscale", "rgb"]
KINDS: tuple[Kind, ...] = ("idx", "folder", "npz", "loader")

# Which kinds read each option; the rest of the kinds refuse it when it is set.
_APPLIES: dict[str, set[str]] = {
    "path": {"idx", "folder", "npz"},
    "loader": {"loader"},
    "download": {"idx"},
    "image_size": {"folder"},
    "color_mode": {"folder"},
    "test_fraction": {"folder"},
    "class_names": {"folder", "npz", "loader"},
}
_REQUIRED: dict[str, tuple[str, ...]] = {"idx": ("name",), "folder": ("path",), "npz": ("path",), "loader": ("loader",)}


class DataSourceConfig(BaseModel):
    """A dataset source. ``load_source(config, seed)`` turns it into a ``Dataset``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind = "idx"
    name: str | None = Field(
        default=None,
        description="idx: the registered or manifest-declared dataset; others: a name for logs "
        "(default: the folder's or file's name, or the loader function's)",
    )
    path: Path | None = Field(
        default=None, description="idx: the data dir; folder: the root of the class folders; npz: the file"
    )
    loader: str | None = Field(
        default=None,
        description="'module:function' or 'path/to/file.py:function' returning (x_train, y_train), (x_test, y_test) "
        "or a dict with those keys",
    )
    download: bool = Field(default=True, description="idx: download the dataset as Keras does if absent")
    image_size: tuple[PositiveInt, PositiveInt] | None = Field(
        default=None, description="folder: [H, W] every image is resized to (default: all must share one size)"
    )
    color_mode: ColorMode | None = Field(
        default=None, description="folder: convert every image to this (default: inferred; a mix is an error)"
    )
    test_fraction: float = Field(
        default=0.2, gt=0, lt=0.5, description="folder without test/: the share of each class held out for testing"
    )
    val_fraction: float = Field(default=0.1, gt=0, lt=0.5, description="the share of each train class for validation")
    class_names: tuple[str, ...] | None = Field(
        default=None,
        description="folder: the class folders in label order (default: classes.json, else sorted); "
        "npz, loader: one name per label (default: the npz's class_names, else '0', '1', ...)",
    )
    flip_invariant: bool | None = Field(
        default=None, description="does a left-right mirror keep the label? (default: idx: the dataset's; else false)"
    )
    dark_background: bool | None = Field(
        default=None,
        description="light objects on a dark background? "
        "(default: idx: the dataset's; else read from the train images' borders)",
    )

    @field_validator("class_names")
    @classmethod
    def _names(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if names is None:
            return None
        if len(names) < 2 or not all(names) or len(set(names)) != len(names):
            raise ValueError("class_names must be at least 2 distinct non-empty names")
        return names

    @field_validator("loader")
    @classmethod
    def _loader(cls, target: str | None) -> str | None:
        if target is not None:
            module, _, attr = target.rpartition(":")
            if not module or not attr.isidentifier():
                raise ValueError(f"loader '{target}': expected 'module:function' or 'path/to/file.py:function'")
        return target

    @model_validator(mode="after")
    def _options_fit_the_kind(self) -> DataSourceConfig:
        required = _REQUIRED[self.kind]
        problems = [f"{option} is required for kind {self.kind}" for option in required if not getattr(self, option)]
        for option in sorted(_APPLIES):  # a default passes: a resolved config dumps every field
            if self.kind not in _APPLIES[option] and getattr(self, option) != type(self).model_fields[option].default:
                kinds = ", ".join(k for k in KINDS if k in _APPLIES[option])
                problems.append(f"{option} does not apply to kind {self.kind} (only to {kinds})")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def display_name(self) -> str:
        """A name for logs and the spec: the given one, else one from the path or loader."""
        if self.name:
            return self.name
        if self.loader:
            return self.loader.rpartition(":")[2]
        assert self.path is not None  # the validator requires one or the other
        return self.path.stem if self.kind == "npz" else self.path.resolve().name


def source_from_text(text: str) -> dict[str, str]:
    """``--data``'s value as a ``data`` section: a folder of class folders, an .npz file, or a
    ``module:function`` loader (``path/to/file.py:function`` too).

    >>> source_from_text("pictures/"), source_from_text("x.npz")
    ({'kind': 'folder', 'path': 'pictures/'}, {'kind': 'npz', 'path': 'x.npz'})
    >>> source_from_text("my_data:load")
    {'kind': 'loader', 'loader': 'my_data:load'}
    """
    if text.endswith(".npz"):
        return {"kind": "npz", "path": text}
    module, _, attr = text.rpartition(":")
    if module and attr.isidentifier() and not Path(text).exists():
        return {"kind": "loader", "loader": text}
    return {"kind": "folder", "path": text}
