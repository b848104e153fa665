"""Experiment tracking: the coordinator mirrors its run into MLflow (the ``fmtune[mlflow]`` extra).

The experiment is one MLflow run, its config as parameters; each trial is a run nested under it,
with its hyperparameters, a metric point per epoch, and its status (and what stopped it). Once the
experiment ends, its run gets the retraining's curve, the test metrics, and the exported model's
name, version and path (not a copy of the SavedModel: the model repository keeps it, under a
version that never changes, and uploading it would double its storage and hold up the end of the
run on the tracking server).

The tracker only watches: it reads the run's own record, state.json and results.json (the
snapshots the dashboard reads), from a thread of its own, and hands them to the mirror
(``fmtune.run.mlflow_mirror``), which keeps what it sent in tracking.json, so a restarted
coordinator goes on with the same MLflow runs. Keras Tuner's oracle never waits for it; a tracking
server that is slow or down is said once in the log, and tried again at every sync.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fmtune import results, run_state
from fmtune.config import ExperimentConfig
from fmtune.layout import ExperimentDir
from fmtune.run.mlflow_mirror import Mirror
from fmtune.run_state import RunState

log = logging.getLogger("fmtune")
URI_ENV = "MLFLOW_TRACKING_URI"
THREAD = "mlflow-tracking"
# An MLflow client retries a refused call for minutes by default; the tracker tries again at its
# next sync anyway. It also prints each ended run's address to stdout, which is the log (one JSON
# object a line with --log-format json). The environment's own settings win.
CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
CLOSE_SECONDS = 30.0  # at most this long at the end of the run for the last sync


def tracking_uri(cfg: ExperimentConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The tracking server: the config's, else MLFLOW_TRACKING_URI's; None: no tracking."""
    return cfg.tracking.mlflow_uri or (os.environ if environ is None else environ).get(URI_ENV) or None


class _OwnThreadOnly(logging.Filter):
    """Drops what MLflow and its HTTP stack log from the tracker's thread (retries, refusals):
    the tracker says itself, once, that the server is unreachable."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != THREAD or record.name == log.name


class Tracker:
    """Syncs the run into MLflow every ``tracking.sync_seconds`` from a thread, and once more at
    ``close``."""

    def __init__(self, cfg: ExperimentConfig, uri: str, client: Callable[[str], Any] | None = None):
        self.cfg, self.uri = cfg, uri
        self.every = cfg.tracking.sync_seconds
        self._client = client
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=THREAD, daemon=True)
        self._filter = _OwnThreadOnly()
        self._warned = False
        self._down = False
        self.mirror: Mirror | None = None

    def start(self) -> None:
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._filter)
        self._thread.start()
        log.info("tracking this experiment in MLflow at %s", self.uri, extra={"mlflow_uri": self.uri})

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """The last sync (bounded by ``timeout``): the run's end goes on without it after that."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("MLflow tracking at %s: the last sync did not finish within %.0fs", self.uri, timeout)
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._filter)

    def _loop(self) -> None:
        for name, value in CLIENT_ENV.items():
            os.environ.setdefault(name, value)
        try:
            import mlflow
        except ImportError:
            log.warning("tracking is set (%s) but MLflow is not installed: pip install 'fmtune[mlflow]'", self.uri)
            return
        make = self._client or (lambda uri: mlflow.MlflowClient(tracking_uri=uri))
        first = True
        while not self._stop.wait(0 if first else self.every):
            first = False
            self._attempt(make, lambda m: m.sync(state) if (state := self._state()) is not None else None)
        self._attempt(make, self._finish)

    def _state(self) -> RunState | None:
        return run_state.load(self.cfg.experiment_dir)

    def _finish(self, mirror: Mirror) -> None:
        state = self._state()
        if state is None:
            return
        path = ExperimentDir(self.cfg.experiment_dir).results
        res = None
        with contextlib.suppress(OSError, ValueError):
            res = results.load(path) if path.is_file() else None
        mirror.finish(state, res)

    def _attempt(self, make: Callable[[str], Any], step: Callable[[Mirror], None]) -> None:
        try:
            if self.mirror is None:
                self.mirror = Mirror(make(self.uri), self.cfg, self.uri)
            step(self.mirror)
        except Exception as exc:  # whatever the client raises, the search goes on
            if not self._warned:
                reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                log.warning(
                    "MLflow tracking at %s is unreachable (%s): the search goes on untracked, and tracking "
                    "is tried again every %gs",
                    self.uri,
                    reason,
                    self.every,
                    extra={"mlflow_uri": self.uri},
                )
                self._warned = True
            self._down = True
            return
        if self._down:
            self._down = False
            log.info("MLflow tracking at %s is reachable again", self.uri)


@contextlib.contextmanager
def tracked(cfg: ExperimentConfig) -> Iterator[Tracker | None]:
    """Track the run inside the block when a tracking server is set; else do nothing."""
    uri = tracking_uri(cfg)
    if uri is None:
        yield None
        return
    tracker = Tracker(cfg, uri)
    tracker.start()
    try:
        yield tracker
    finally:
        tracker.close()
