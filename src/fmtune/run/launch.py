"""Starting an experiment's processes on this machine, once its data and model have been checked:
what ``fmtune tune`` and ``fmtune.tune()`` share, so that both run the very same pipeline.

Nothing is written before this point, and here the one setting that can still be refused (the
dashboard's address in the environment) is resolved before the experiment's directory is touched:
a run that cannot start leaves nothing behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from fmtune.config import ExperimentConfig
from fmtune.dashboard import placement
from fmtune.layout import ExperimentDir
from fmtune.run import experiment
from fmtune.run.budget import started_at as budget_start
from fmtune.run.local import LocalCluster
from fmtune.tuning.roles import free_port

INTERRUPTED = 130  # LocalCluster.run's code after Ctrl-C or SIGTERM, as a shell reports SIGINT


@dataclass(frozen=True)
class LocalRun:
    """A prepared run: its config written, its processes not started yet."""

    cfg: ExperimentConfig
    config_path: Path
    cluster: LocalCluster
    dashboard: str | None  # the dashboard's URL, unless it is turned off

    def run(self) -> int:
        """Run the coordinator and workers to the end; the coordinator's exit code (INTERRUPTED
        after Ctrl-C), with a progress bar of trials on a terminal."""
        return self.cluster.run(progress_total=self.cfg.search.max_trials)


def prepare_local(
    cfg: ExperimentConfig,
    workers: int,
    *,
    fresh: bool = False,
    port: int = 0,
    max_restarts: int = 3,
    out: TextIO | None = None,
    extra_env: dict[str, str] | None = None,
    write_inputs: Callable[[Path], None] | None = None,
    dashboard_host: str | None = None,
    started_at: float | None = None,
) -> LocalRun:
    """Write the experiment's config (``fresh``: discard an earlier run first), then what
    ``write_inputs`` puts beside it (a notebook's pickled model and arrays), record when the budget
    began (``started_at``, e.g. the command's start, else now), and make the cluster of a
    coordinator and ``workers`` workers on ``port`` (0: a free one), its dashboard on
    ``dashboard_host`` (None: the environment's). PlacementError (a bad dashboard address) or
    experiment.ConfigChanged (the experiment exists under another config) before anything is
    written."""
    oracle_port = port or free_port()
    board = placement.pinned(host=dashboard_host, avoid={oracle_port})
    started_at = time.time() if started_at is None else started_at
    config_path = experiment.prepare(cfg, fresh)
    if write_inputs is not None:
        write_inputs(cfg.experiment_dir)
    budget_start(ExperimentDir(cfg.experiment_dir).budget, cfg.outcome_digest(), clock=lambda: started_at)
    cluster = LocalCluster(
        config_path,
        cfg.experiment_dir,
        workers,
        oracle_port,
        threads_per_worker=max(1, (os.cpu_count() or 1) // workers),
        max_restarts=max_restarts,
        out=out,
        extra_env={**board, **(extra_env or {})},
    )
    host = board.get(placement.HOST_VAR)
    dashboard = f"http://{host}:{board[placement.PORT_VAR]}/" if host else None
    return LocalRun(cfg, config_path, cluster, dashboard)
