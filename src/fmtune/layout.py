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
```
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class ExperimentDir:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def budget(self) -> Path:
        return self.path / BUDGET

    @property
    def token(self) -> Path:
        return self.path / TOKEN

    @property
    def oracle(self) -> Path:
        """The coordinator's Keras Tuner directory (its project is PROJECT)."""
        return self.path / ORACLE

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
        return self.path / STATE

    @property
    def results(self) -> Path:
        return self.path / RESULTS


def experiments(path: Path, marker: str) -> list[Path]:
    """The experiment dirs at ``path``: itself if it holds ``marker``, else those in it that do."""
    if (path / marker).is_file():
        return [path]
    return sorted(p.parent for p in path.glob(f"*/{marker}"))
