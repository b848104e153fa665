"""The model manager's reading of the repository: odd directory names, and load errors that say
what failed without telling clients where the files are."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fmtune import export
from fmtune.serving.errors import ServingError
from fmtune.serving.models import END, ModelManager


def test_a_non_ascii_digit_directory_is_not_a_version(tmp_path: Path) -> None:
    for name in ("²", "٣", "1²"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    manager = ModelManager(tmp_path, "fmtune")
    manager.poll_once()  # int() refuses what str.isdigit() takes
    with pytest.raises(ServingError, match="Could not find any versions"):
        manager.statuses("fmtune", None)
    assert export.versions(tmp_path) == []


def test_a_version_that_fails_to_load_says_so_without_its_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "secret-place" / "fmtune"
    (broken / "3").mkdir(parents=True)
    (broken / "3" / "saved_model.pb").write_bytes(b"not a protobuf")
    manager = ModelManager(broken, "fmtune")
    with caplog.at_level(logging.ERROR, logger="fmtune"):
        manager.poll_once()
        manager.poll_once()
    (status,) = manager.statuses("fmtune", None)
    assert status.state == END
    assert status.error == "version 3 could not be loaded (see the server log)"
    assert "secret-place" in caplog.text  # the details are in the log
