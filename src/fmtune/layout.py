"""An experiment's directory: every name in it, for every process that reads or writes it.

```
<workdir>/<experiment>/
  config.yaml     the resolved config (the coordinator's, which workers check theirs against)
  budget.json     when the experiment's time budget began (its first start), kept across restarts
  oracle-token    the oracle's token, when not given by the environment
  oracle/search/  the coordinator's oracle: oracle.json and trial_<id>/trial.json
  workers/<id>/search/trial_<id>/   each worker's checkpoints
  tensorboard/    every trial's TensorBoard logs
  state.json      where the run is (fmtune.run_state)
  results.json    the record of the run (fmtune.results)
  tracking.json   the MLflow runs the coordinator mirrors the run into (fmtune.run.mlflow_mirror)
```

The coordinator's own files (config.yaml, budget.json, oracle-token, oracle/, state.json,
results.json, tracking.json) may be kept apart, in ``$FMTUNE_STATE_DIR/<experiment>/``: a
directory the workers cannot write (the chart mounts it read-only in their pods), so that nothing
a worker plants there is loaded or written through by the coordinator. Workers write only
``workers/`` and ``tensorboard/``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CONFIG = "config.yaml"
BUDGET = "budget.json"
TOKEN = "oracle-token"
ORACLE = "oracle"
WORKERS = "workers"
PROJECT = "search"  # Keras Tuner's project name, under the oracle's and each worker's directory
TENSORBOARD = "tensorboard"
STATE = "state.json"
RESULTS = "results.json"
TRACKING = "tracking.json"


STATE_DIR_ENV = "FMTUNE_STATE_DIR"


def state_root() -> Path | None:
    """Where the coordinator's own files are kept apart from the workers' (see above), if set."""
    value = os.environ.get(STATE_DIR_ENV)
    return Path(value) if value else None


@dataclass(frozen=True)
class ExperimentDir:
    path: Path
    own_root: Path | None = field(default_factory=state_root)

    @property
    def own(self) -> Path:
        """The directory of the coordinator's own files: ``path`` itself unless kept apart."""
        return self.path if self.own_root is None else self.own_root / self.path.name

    @property
    def config(self) -> Path:
        return self.own / CONFIG

    @property
    def budget(self) -> Path:
        return self.own / BUDGET

    @property
    def token(self) -> Path:
        return self.own / TOKEN

    @property
    def oracle(self) -> Path:
        """The coordinator's Keras Tuner directory (its project is PROJECT)."""
        return self.own / ORACLE

    @property
    def workers(self) -> Path:
        return self.path / WORKERS

    def worker(self, tuner_id: str) -> Path:
        """A worker's Keras Tuner directory."""
        return self.workers / tuner_id

    def checkpoints(self, trial_id: str) -> list[Path]:
        """A trial's saved weights, in whichever worker's directory ran it."""
        return sorted(self.workers.glob(f"*/{PROJECT}/trial_{trial_id}/checkpoint.weights.h5"))

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    @property
    def state(self) -> Path:
        return self.own / STATE

    @property
    def results(self) -> Path:
        return self.own / RESULTS

    @property
    def tracking(self) -> Path:
        return self.own / TRACKING


OWN_FILES = (CONFIG, BUDGET, TOKEN, ORACLE, STATE, RESULTS, TRACKING)


def adopt_own_files(experiment: ExperimentDir) -> list[str]:
    """Copy the coordinator's own files that a version keeping them in the experiment dir left
    there into the directory now kept apart, each only where it is missing: an upgraded release
    resumes its search, and finds its results, instead of starting over. Symlinks are neither
    followed nor copied. Returns the names copied."""
    if experiment.own == experiment.path:
        return []
    copied = []
    for name in OWN_FILES:
        old, new = experiment.path / name, experiment.own / name
        if old.is_symlink() or not old.exists() or new.exists() or new.is_symlink():
            continue
        new.parent.mkdir(parents=True, exist_ok=True)
        staging = new.with_name(f".{name}.adopting")
        shutil.rmtree(staging, ignore_errors=True)
        if old.is_dir():
            shutil.copytree(
                old, staging, ignore=lambda d, names: [n for n in names if os.path.islink(os.path.join(d, n))]
            )
        else:
            shutil.copyfile(old, staging, follow_symlinks=False)
        os.rename(staging, new)
        copied.append(name)
    return copied


def experiments(path: Path, marker: str) -> list[Path]:
    """The experiment dirs at ``path``: itself if it holds ``marker`` (one of the coordinator's
    own files), else those in it that do, wherever their own files are kept."""
    if (ExperimentDir(path).own / marker).is_file():
        return [path]
    found = {p.parent for p in path.glob(f"*/{marker}")}
    root = state_root()
    if root is not None:
        found |= {path / p.parent.name for p in root.glob(f"*/{marker}")}
    return sorted(found)
