"""A whole run with the coordinator's own files kept apart (``FMTUNE_STATE_DIR``, as the chart sets
it): the workers' tree holds only what workers write, and everything still works from the apart
directory, results included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmtune import layout

from .helpers import run, tune_argv

pytestmark = pytest.mark.timeout(600)


@pytest.mark.slow  # a whole run; the layout and the chart's mounts are tested fast
def test_a_run_with_the_coordinators_state_apart_from_the_workers(synthetic_dir: Path, tmp_path: Path) -> None:
    apart = tmp_path / "state"
    done = run(tune_argv(synthetic_dir, tmp_path, trials=3), tmp_path, extra_env={layout.STATE_DIR_ENV: str(apart)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    workers_tree, own = tmp_path / "runs" / "itest", apart / "itest"
    assert {p.name for p in workers_tree.iterdir()} <= {layout.WORKERS, layout.TENSORBOARD}
    assert (own / layout.ORACLE / layout.PROJECT / "oracle.json").is_file()
    record = json.loads((own / layout.RESULTS).read_text())
    assert len(record["trials"]) == 3 and record["exported_version"] == 1
    assert json.loads((own / layout.STATE).read_text())["phase"] == "done"
