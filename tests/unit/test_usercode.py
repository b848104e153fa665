"""Finding a user's code by name: the one way plugins and data loaders share."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

from fmtune import usercode


def test_two_files_of_one_name_in_two_folders_stay_apart(tmp_path: Path) -> None:
    for folder, value in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "models.py").write_text(f"def build():\n    return {value}\n")
    first = usercode.load(f"{tmp_path / 'a' / 'models.py'}:build")
    second = usercode.load(f"{tmp_path / 'b' / 'models.py'}:build")
    assert (first(), second()) == (1, 2)
    assert first.__module__ != second.__module__
    assert sys.modules[first.__module__].build is first  # pickling finds each again by its module
    assert pickle.loads(pickle.dumps(first))() == 1


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon", "expected module:attr or path/to/file.py:attr"),
        ("fmtune_nothing_here:f", "no module named 'fmtune_nothing_here' (is it on PYTHONPATH?)"),
        ("json:nothing", "json has no attribute 'nothing'"),
        ("missing/file.py:f", "no such file missing/file.py"),
    ],
)
def test_each_failure_says_what_is_wrong(target: str, message: str) -> None:
    with pytest.raises(usercode.UserCodeError) as refused:
        usercode.load(target)
    assert str(refused.value) == message


def test_the_users_own_exception_is_chained(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise KeyError('x')\n")
    with pytest.raises(usercode.UserCodeError, match=r"importing .*broken\.py raised KeyError") as refused:
        usercode.load(f"{tmp_path / 'broken.py'}:f")
    assert isinstance(refused.value.__cause__, KeyError)
    assert not [name for name in sys.modules if name.startswith("fmtune_user_broken")]  # nothing half-imported
