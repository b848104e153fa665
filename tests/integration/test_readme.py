"""README's first screen, run as written and in order, on tiny synthetic data.

The commands come from README.md itself, so the README and the Makefile cannot drift apart. Only
Make variables are added (DATA_DIR, WORKDIR, MODEL_REPO, ports, ARGS), the ones a user can set too.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from ..conftest import REPO_ROOT
from .helpers import TINY, env, free_ports

pytestmark = pytest.mark.timeout(900)
README = REPO_ROOT / "README.md"
FIRST_SCREEN_LINES = 24


def first_screen() -> list[tuple[str, str]]:
    """(command, comment) for each line of the first shell block, which must open the README."""
    text = README.read_text()
    block = re.search(r"^```sh\n(.*?)^```", text, re.S | re.M)
    assert block is not None, "README.md has no ```sh block"
    first_line = text[: block.start()].count("\n")
    assert first_line < FIRST_SCREEN_LINES, f"README's first shell block starts on line {first_line + 1}"
    commands = []
    for line in block.group(1).splitlines():
        command, _, comment = line.partition("#")
        if command.strip():
            commands.append((command.strip(), comment.strip()))
    return commands


def make_env() -> dict[str, str]:
    """A user's shell: no data dir in the environment, and no outer make (under `make test`)."""
    environ = env()
    for key in ("FMTUNE_DATA_DIR", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        environ.pop(key, None)
    return environ


def test_first_screen_runs_as_written(synthetic_dir: Path, tmp_path: Path) -> None:
    commands = first_screen()
    assert [c for c, _ in commands][:1] == ["make run"], commands
    grpc_port, rest_port = free_ports(2)
    tiny_args = shlex.join([a for s in TINY for a in ("--set", s)] + ["--max-trials", "2"])
    variables = [
        f"DATA_DIR={synthetic_dir.parent}",
        f"WORKDIR={tmp_path / 'runs'}",
        f"MODEL_REPO={tmp_path / 'models'}",
        f"GRPC_PORT={grpc_port}",
        f"REST_PORT={rest_port}",
        "WORKERS=1",
        f"ARGS={tiny_args}",
    ]
    background: list[subprocess.Popen[str]] = []
    outputs: dict[str, str] = {}
    try:
        for command, comment in commands:
            argv = shlex.split(command)
            assert argv[0] == "make", f"README's first screen: '{command}' is not a make target"
            argv += variables
            if "Ctrl-C" in comment:  # a server: it runs until stopped, the next commands use it
                background.append(
                    subprocess.Popen(
                        argv,
                        cwd=REPO_ROOT,
                        env=make_env(),
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                        start_new_session=True,
                    )
                )
                continue
            done = subprocess.run(argv, cwd=REPO_ROOT, env=make_env(), capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{command}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            outputs[command] = done.stdout
    finally:
        for proc in background:
            os.killpg(proc.pid, signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
            print(out[-3000:])
    assert (tmp_path / "models" / "fmtune" / "1" / "saved_model.pb").is_file()
    predicted = outputs["make predict"]
    print(predicted)
    # The sample came from the test split the pipeline used, found through the experiment's record.
    assert re.search(r"^\d/8 correct$", predicted, re.M), predicted
    assert len(re.findall(r"test\[\d+\]", predicted)) == 8 and "class" in predicted, predicted
