"""``dataset.json``: a manifest that cannot describe a dataset the models can learn and serve is
refused when the dataset is resolved, naming the manifest, not an hour later at predict time."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from fmtune import data
from fmtune.data import DatasetError

from ..conftest import CLASS_NAMES, SYNTHETIC


def manifest(directory: Path, content: Any) -> Path:
    """``content`` as the manifest of ``directory/synthetic`` (a dict or list as JSON, text as is)."""
    folder = directory / SYNTHETIC
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / data.MANIFEST
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def valid() -> dict[str, Any]:
    return {"name": SYNTHETIC, "class_names": CLASS_NAMES, "sha256": {f: "0" * 64 for f in data._FILES}}


def refusal(tmp_path: Path, content: Any) -> str:
    path = manifest(tmp_path, content)
    with pytest.raises(DatasetError) as info:
        data.resolve_spec(SYNTHETIC, tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid dataset manifest ("), message
    return message


def test_a_valid_manifest_declares_the_dataset(tmp_path: Path) -> None:
    manifest(tmp_path, valid())
    spec = data.resolve_spec(SYNTHETIC, tmp_path)
    assert (spec.name, spec.folder, spec.class_names) == (SYNTHETIC, SYNTHETIC, tuple(CLASS_NAMES))
    assert spec.sha256 == {f: "0" * 64 for f in data._FILES}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "JSONDecodeError"),
        ([SYNTHETIC], "TypeError"),
        ({"name": SYNTHETIC, "sha256": {}}, "KeyError('class_names')"),
        ({**valid(), "sha256": {f: "0" * 64 for f in data._FILES[:3]}}, "KeyError('t10k-labels-idx1-ubyte')"),
        ({**valid(), "sha256": "0" * 64}, "TypeError"),
    ],
)
def test_a_manifest_that_does_not_parse_names_what_is_missing(tmp_path: Path, content: Any, words: str) -> None:
    assert words in refusal(tmp_path, content)


def test_a_manifest_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = manifest(tmp_path, "{}")
    path.write_bytes(b'{"name": "\xff"}')
    with pytest.raises(DatasetError, match=re.escape(f"{path}: invalid dataset manifest (UnicodeDecodeError")):
        data.resolve_spec(SYNTHETIC, tmp_path)


@pytest.mark.parametrize(
    "class_names",
    [CLASS_NAMES[:9], [*CLASS_NAMES, "extra"], "".join(str(i) for i in range(10)), [*CLASS_NAMES[:9], 9], []],
)
def test_class_names_must_be_one_name_per_model_output(tmp_path: Path, class_names: Any) -> None:
    """Every model has 10 outputs; the SDK refuses predictions whose width differs from the names."""
    message = refusal(tmp_path, {**valid(), "class_names": class_names})
    assert "'class_names' must be a list of 10 non-empty strings" in message


def test_a_name_that_is_not_a_string_is_refused(tmp_path: Path) -> None:
    assert "'name' must be a non-empty string" in refusal(tmp_path, {**valid(), "name": 7})


def test_a_manifest_declaring_another_dataset_leaves_the_name_unknown(tmp_path: Path) -> None:
    manifest(tmp_path, {**valid(), "name": "other"})
    with pytest.raises(
        DatasetError, match=f"unknown dataset '{SYNTHETIC}': .*no dataset.json in the data dir declares"
    ):
        data.resolve_spec(SYNTHETIC, tmp_path)


def test_the_manifest_in_the_data_dir_itself_is_read_too(tmp_path: Path) -> None:
    (tmp_path / data.MANIFEST).write_text(json.dumps({**valid(), "class_names": [*CLASS_NAMES[:9], 9]}))
    with pytest.raises(DatasetError, match=re.escape(f"{tmp_path / data.MANIFEST}: invalid dataset manifest")):
        data.resolve_spec(SYNTHETIC, tmp_path)
