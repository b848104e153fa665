"""What MLflow holds of an experiment, brought up to date with the run's record: the experiment as
one run (its config as parameters), each trial as a run nested under it (hyperparameters, a metric
point per epoch, status and what stopped it), and at the end the retraining curve, the test
metrics and the exported model's name, version and path.

What was sent is kept in tracking.json, each run as soon as it is made, so that neither a failed
call nor a restarted coordinator sends anything twice. ``fmtune.run.tracking`` runs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from fmtune import results
from fmtune.config import ExperimentConfig
from fmtune.files import replace
from fmtune.layout import ExperimentDir
from fmtune.results import Results
from fmtune.run_state import Phase, RunState
from fmtune.trials import TrialRecord

TRIAL_STATUS = {"COMPLETED": "FINISHED", "STOPPED": "KILLED", "FAILED": "FAILED"}
RUN_STATUS = {Phase.DONE: "FINISHED", Phase.FAILED: "FAILED"}  # any other phase at the end: KILLED
MAX_TEXT = 5000  # MLflow keeps tag values up to 8000 characters and parameter values up to 6000


class TrialRun(BaseModel):
    run_id: str
    described: bool = False  # its parameters sent
    epochs: int = 0  # epochs of its history sent so far
    ended: bool = False


class Record(BaseModel):
    """tracking.json: the MLflow runs of this experiment and how much of each was sent."""

    uri: str
    experiment_id: str
    run_id: str
    described: bool = False
    ended: bool = False
    trials: dict[str, TrialRun] = Field(default_factory=dict)


def _ms(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp() * 1000)


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested mapping as dotted keys and text values.

    >>> _flat({"search": {"epochs": 2, "asha": {"enabled": False}}, "seed": 1})
    {'search.epochs': '2', 'search.asha.enabled': 'False', 'seed': '1'}
    """
    out: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)[:MAX_TEXT]
    return out


class Mirror:
    """The experiment as MLflow holds it, brought up to date with the run's record; ``client`` is
    an ``mlflow.MlflowClient``. Used by one thread at a time."""

    def __init__(self, client: Any, cfg: ExperimentConfig, uri: str):
        from mlflow.entities import Metric, Param, RunTag

        self.client, self.cfg, self.uri = client, cfg, uri
        self.Metric, self.Param, self.RunTag = Metric, Param, RunTag
        self.path = ExperimentDir(cfg.experiment_dir).tracking
        self.record = self._load()

    def _load(self) -> Record | None:
        try:
            record = Record.model_validate_json(self.path.read_bytes())
        except (OSError, ValidationError):
            return None
        return record if record.uri == self.uri else None  # another server: start there afresh

    def _save(self) -> None:
        assert self.record is not None
        replace(self.path, self.record.model_dump_json(indent=1).encode())

    def _log(
        self,
        run_id: str,
        metrics: Iterable[Any] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Metrics, parameters and tags (None: left out), in batches within MLflow's limits."""
        points = list(metrics)
        param_list = [self.Param(k, str(v)[:MAX_TEXT]) for k, v in (params or {}).items()]
        tag_list = [self.RunTag(k, str(v)[:MAX_TEXT]) for k, v in (tags or {}).items() if v is not None]
        while points or param_list or tag_list:
            self.client.log_batch(run_id, metrics=points[:1000], params=param_list[:100], tags=tag_list[:100])
            points, param_list, tag_list = points[1000:], param_list[100:], tag_list[100:]

    def _parent(self, state: RunState) -> Record:
        """The experiment's run; each run is recorded as soon as it is made, so that a call that
        fails after it never makes a second one."""
        if self.record is None:
            name = self.cfg.tracking.experiment or self.cfg.name
            found = self.client.get_experiment_by_name(name)
            experiment_id = found.experiment_id if found is not None else self.client.create_experiment(name)
            run = self.client.create_run(
                experiment_id,
                start_time=_ms(state.started_at),
                run_name=self.cfg.name,
                tags={"fmtune.role": "experiment"},
            )
            self.record = Record(uri=self.uri, experiment_id=experiment_id, run_id=run.info.run_id)
            self._save()
        if not self.record.described:
            self._log(
                self.record.run_id,
                params=_flat(self.cfg.model_dump(mode="json", exclude={"tracking"})),
                tags={"fmtune.experiment": self.cfg.name, "fmtune.config_digest": self.cfg.digest()},
            )
            self.record.described = True
            self._save()
        return self.record

    def sync(self, state: RunState) -> None:
        """Send what is new in ``state``: trials that started, their new epochs, trials that ended."""
        record = self._parent(state)
        if record.ended:
            return
        for trial in state.trials:
            run = record.trials.get(trial.trial_id)
            if run is None and trial.worker is None and not trial.history and not trial.finished:
                continue  # not handed out yet
            if run is not None and run.ended:
                continue
            if run is None:
                made = self.client.create_run(
                    record.experiment_id,
                    start_time=_ms(trial.started_at),
                    run_name=f"trial {trial.trial_id}",
                    tags={
                        "mlflow.parentRunId": record.run_id,
                        "fmtune.role": "trial",
                        "fmtune.trial_id": trial.trial_id,
                    },
                )
                run = record.trials[trial.trial_id] = TrialRun(run_id=made.info.run_id)
                self._save()
            fresh = not run.described
            if fresh:
                self._log(run.run_id, params=trial.hyperparameters)
                run.described = True
            if self._trial(run, trial) or fresh:
                self._save()

    def _trial(self, run: TrialRun, trial: TrialRecord) -> bool:
        """Send a trial's new epochs, and its end once it ended; whether anything was sent."""
        start = run.epochs if len(trial.history) >= run.epochs else 0  # re-run from its start
        now = _ms(trial.ended_at) or _ms(results.now()) or 0
        metrics = [
            self.Metric(name, value, now, epoch.epoch)
            for epoch in trial.history[start:]
            for name, value in epoch.metrics.items()
            if value is not None
        ]
        metrics += [
            self.Metric("epoch_seconds", seconds, now, step)
            for step, seconds in enumerate(trial.epoch_seconds)
            if start <= step < len(trial.history)
        ]
        if metrics:
            self._log(run.run_id, metrics, tags={"fmtune.worker": trial.worker})
            run.epochs = len(trial.history)
        if not trial.finished:
            return bool(metrics)
        score = [self.Metric("score", trial.score, now, trial.best_epoch or 0)] if trial.score is not None else []
        ended = {"fmtune.status": trial.status, "fmtune.stopped_by": trial.stopped_by, "fmtune.message": trial.message}
        self._log(run.run_id, score, tags={"fmtune.worker": trial.worker, **ended})
        self.client.set_terminated(run.run_id, TRIAL_STATUS.get(trial.status, "FINISHED"), _ms(trial.ended_at))
        run.ended = True
        return True

    def finish(self, state: RunState, res: Results | None) -> None:
        """The last sync: every trial, then the experiment's outcome, and its run ended."""
        self.sync(state)
        record = self._parent(state)
        if record.ended:
            return
        now = _ms(results.now()) or 0
        metrics: list[Any] = []
        params: dict[str, Any] = {}
        tags: dict[str, Any] = {"fmtune.phase": state.phase.value, "fmtune.message": state.message}
        metrics += [self.Metric("best_score", p.score, _ms(p.at) or now, i) for i, p in enumerate(state.best_history)]
        if res is not None and res.config_digest == self.cfg.digest():
            if res.retrain is not None:
                metrics += [
                    self.Metric(f"retrain_{name}", value, now, epoch.epoch)
                    for epoch in res.retrain.history
                    for name, value in epoch.metrics.items()
                    if value is not None
                ]
                metrics.append(self.Metric("test_loss", res.retrain.test_loss, now, 0))
            if res.test_accuracy is not None:
                metrics.append(self.Metric("test_accuracy", res.test_accuracy, now, 0))
            if res.exported_version is not None:
                params |= {"model_name": self.cfg.model_name, "exported_version": res.exported_version}
            tags |= {"fmtune.best_trial_id": res.best_trial_id, "fmtune.export_path": res.export_path}
        self._log(record.run_id, metrics, params, tags)
        self.client.set_terminated(record.run_id, RUN_STATUS.get(state.phase, "KILLED"))
        record.ended = True
        self._save()
