"""What users look for first: `fmtune --version`, shell completion, and `make help`."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from ..conftest import REPO_ROOT
from .helpers import run

FMTUNE = Path(sys.executable).parent / "fmtune"  # the console script, as completion names it


def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    done = run([sys.executable, "-m", "fmtune", "--version"], tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"fmtune {version('fmtune')}"


def test_shell_completion_completes_commands_and_options(tmp_path: Path) -> None:
    # The shell is named, not guessed from the processes above this one (which differ under CI).
    named = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    script = run([str(FMTUNE), "--show-completion", "bash"], tmp_path, extra_env=named)
    assert script.returncode == 0 and "_FMTUNE_COMPLETE=complete_bash" in script.stdout
    # The protocol that script speaks, as bash would call it on <TAB>.
    for words, expected in (("fmtune pre", "predict"), ("fmtune predict --inv", "--invert")):
        extra = {"_FMTUNE_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
        done = run([str(FMTUNE)], tmp_path, extra_env=extra)
        assert done.returncode == 0 and expected in done.stdout.split(), done.stdout


def test_make_help_lists_every_target_with_a_line() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*?)(?<!\\)$", makefile, re.M | re.S)
    assert phony is not None
    targets = phony.group(1).replace("\\\n", " ").split()
    done = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0]: line.split(maxsplit=1)[1] for line in done.stdout.splitlines() if line.strip()}
    assert sorted(listed) == sorted(targets)
    assert all(len(text) > 3 for text in listed.values())
