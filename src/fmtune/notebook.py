"""``fmtune.tune()``: the local pipeline of ``fmtune tune`` (search over worker processes, retraining,
export) from a notebook or a script, with the model and the data given as Python objects.

A model defined in a notebook lives in ``__main__``, which no worker process can import, so it is
shipped by value: pickled with cloudpickle into the experiment's directory and named in the config
as ``search.hypermodel: pickle:<path>`` (``fmtune.models.plugins``). Arrays are saved there as an
npz. Both are checked in this process first, exactly as ``fmtune tune`` checks its inputs, and
written only once the checks pass. A pickled model runs only in processes that share the
directory, i.e. on this machine: pods need the code importable (``fmtune coordinator`` refuses).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import BaseModel

from fmtune import config as config_mod
from fmtune.config.sections import PICKLED
from fmtune.data.source import DataSourceConfig, source_from_text
from fmtune.text import parse_duration

if TYPE_CHECKING:
    from fmtune.config import ExperimentConfig
    from fmtune.data import Dataset
    from fmtune.results import Results

Arrays = tuple[tuple[Any, Any], tuple[Any, Any]]
# Stand in for a notebook's model and arrays while the config is resolved: a loader's target is
# checked without importing it, and the files' paths are only known once the experiment's is.
_ARRAYS_PLACEHOLDER = {"kind": "loader", "loader": "fmtune.notebook:arrays_placeholder"}
_PICKLE_PLACEHOLDER = f"{PICKLED}hypermodel.pkl"


class TuneError(RuntimeError):
    """The run could not start, or did not finish; the message says why and where to look."""


class TuneResult(BaseModel):
    """What a run produced: the best configuration, its test accuracy, and where its exported
    model and its full record (``results.json``) are."""

    experiment: str
    experiment_dir: Path
    objective: str
    best_trial_id: str | None
    best_score: float | None
    best_hyperparameters: dict[str, Any]
    test_accuracy: float | None
    model_name: str
    model_version: int | None
    model_path: Path | None
    results_path: Path

    def results(self) -> Results:
        """The full record: every trial, its history, the retraining's."""
        from fmtune import results

        return results.load(self.results_path)


def tune(
    build_model: Any,
    data: str | os.PathLike[str] | DataSourceConfig | Arrays,
    budget: str | float | None = "10m",
    workers: int = 2,
    *,
    name: str | None = None,
    max_trials: int | None = None,
    preset: str | None = "quick",
    workdir: str | os.PathLike[str] | None = None,
    model_repo: str | os.PathLike[str] | None = None,
    class_names: Sequence[str] | None = None,
    fresh: bool = False,
    port: int = 0,
    max_restarts: int = 3,
    out: TextIO | None = None,
    **settings: Any,
) -> TuneResult:
    """Tune ``build_model`` on ``data`` with ``workers`` local worker processes, retrain the best
    trial, evaluate and export it, as ``fmtune tune`` does.

    ``build_model``: a ``build_model(hp)`` function or a keras_tuner HyperModel (class or
    instance), defined anywhere, a notebook included; or a ``module:attr`` / ``file.py:attr``
    name; or None for the config's built-in family. ``data``: a folder of class folders, an .npz,
    a ``module:function`` loader, a DataSourceConfig, or ``(x_train, y_train), (x_test, y_test)``
    arrays (``class_names``: their labels' names). ``budget``: wall time for everything ("10m",
    "1.5h", or minutes), None for none (then ``max_trials`` decides). ``settings``: any other
    config value, by dotted key in ``__`` form or as a section, e.g. ``search__epochs=3`` or
    ``retrain={"max_epochs": 5}``. ``out``: where the processes' output goes (default stdout).

    Raises ConfigError, DatasetError or PluginError (with nothing written) when the inputs cannot
    work, TuneError when the run does not finish, KeyboardInterrupt when interrupted.
    """
    from fmtune.models.checks import check_search
    from fmtune.run import experiment, launch, shipping

    flags, nulls = _settings(settings)
    minutes = parse_duration(budget) if isinstance(budget, str) else budget
    given = {"name": name, "workdir": workdir, "model_repo": model_repo, "search.max_trials": max_trials}
    flags |= {key: value for key, value in given.items() if value is not None}
    if minutes is None:
        nulls.append("budget_minutes")
    else:
        flags["budget_minutes"] = minutes
    pickled = shipping.pickled(build_model) if build_model is not None and not isinstance(build_model, str) else None
    arrays = shipping.arrays(data) if isinstance(data, tuple) else None
    hypermodel = _PICKLE_PLACEHOLDER if pickled else build_model
    cfg = _resolve(preset, flags, nulls, hypermodel, _source(data, class_names), experiment.seed_for(fresh))
    cfg = _with_inputs(cfg, None if pickled is None else (shipping.file_label(build_model), pickled), arrays)
    dataset = _dataset(cfg, arrays)
    if pickled is not None:
        check_search(cfg.search, dataset, found=shipping.unpickled(pickled), label=shipping.label(build_model))
    else:
        check_search(cfg.search, dataset)

    def write_inputs(directory: Path) -> None:
        if pickled is not None:
            assert cfg.search.hypermodel is not None
            shipping.write(Path(cfg.search.hypermodel.removeprefix(PICKLED)), pickled)
        if arrays is not None:
            assert cfg.data is not None and cfg.data.path is not None
            shipping.write(cfg.data.path, shipping.npz_bytes(arrays))

    try:
        run = launch.prepare_local(
            cfg,
            workers,
            fresh=fresh,
            port=port,
            max_restarts=max_restarts,
            out=out,
            extra_env=shipping.python_path(),
            write_inputs=write_inputs,
        )
    except experiment.ConfigChanged:
        raise TuneError(
            f"experiment '{cfg.name}' already exists in {cfg.experiment_dir} with a different config or model; "
            "pass fresh=True to start over, or another name= to keep both"
        ) from None
    if run.dashboard:
        print(f"dashboard: {run.dashboard}", file=out or sys.stdout, flush=True)
    code = run.run()
    if code == launch.INTERRUPTED:
        raise KeyboardInterrupt(f"experiment '{cfg.name}' interrupted; tune() again to resume it")
    if code != 0:
        raise TuneError(f"the coordinator exited with code {code}; see its output and {cfg.experiment_dir}")
    return _result(cfg)


def arrays_placeholder() -> None:
    """Never called: names a loader while a notebook's arrays have no path yet (see tune)."""


def _settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Keyword settings as dotted config keys: ``search__epochs=3`` and ``search={"epochs": 3}``
    both give ``search.epochs``; a hyperparameter's spec stays whole. Keys set to None are
    returned apart, to be set to null (a flag of None means "not given")."""
    flags: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json", exclude_defaults=True)
        parts = prefix.split(".")
        is_spec = len(parts) >= 2 and parts[-2] == "hyperparameters"
        if isinstance(value, Mapping) and value and not is_spec:
            for key, inner in value.items():
                walk(f"{prefix}.{key}", inner)
        else:
            flags[prefix] = value

    for key, value in settings.items():
        walk(key.replace("__", "."), value)
    nulls = [key for key, value in flags.items() if value is None]
    return {k: v for k, v in flags.items() if v is not None}, nulls


def _resolve(
    preset: str | None,
    flags: dict[str, Any],
    nulls: list[str],
    hypermodel: str | None,
    source: dict[str, Any],
    seed: Callable[[ExperimentConfig], int],
) -> ExperimentConfig:
    data = {k: v for k, v in source.items() if v is not None}
    return config_mod.load(
        preset,
        None,
        [f"{key}=null" for key in nulls],
        flags={**flags, "search.hypermodel": hypermodel, "data": data},
        seed=seed,
    )


def _with_inputs(
    cfg: ExperimentConfig, pickled: tuple[str, bytes] | None, arrays: dict[str, Any] | None
) -> ExperimentConfig:
    """The config naming the files the pickled model (``(label, bytes)``) and the arrays will be
    written to, in the experiment's directory under a hash of their content. Not validated again:
    only those two values change, and the files are written once the checks pass (the processes
    that load the config validate it, files and all)."""
    from fmtune.run import shipping

    search, data = cfg.search, cfg.data
    if pickled is not None:
        label, blob = pickled
        path = cfg.experiment_dir / f"{label}-{shipping.digest(blob)}.pkl"
        search = search.model_copy(update={"hypermodel": f"{PICKLED}{path}"})
    if arrays is not None:
        assert data is not None
        kept = data.model_dump(exclude_defaults=True, exclude={"kind", "loader", "name"})
        path = cfg.experiment_dir / f"data-{shipping.digest(shipping.array_bytes(arrays))}.npz"
        data = DataSourceConfig(**kept, kind="npz", path=path, name=data.name or "arrays")
    return cfg.model_copy(update={"search": search, "data": data})


def _source(data: Any, class_names: Sequence[str] | None) -> dict[str, Any]:
    """The ``data`` section for what was given (a notebook's arrays: a placeholder until later)."""
    if isinstance(data, DataSourceConfig):
        found: dict[str, Any] = data.model_dump(mode="json", exclude_defaults=True)
        found.setdefault("kind", data.kind)
    elif isinstance(data, tuple):
        found = dict(_ARRAYS_PLACEHOLDER)
    elif isinstance(data, str | os.PathLike):
        found = source_from_text(os.fspath(data))
    else:
        raise TypeError(
            f"data: {type(data).__name__}; expected a path, a 'module:function' loader, a DataSourceConfig "
            "or (x_train, y_train), (x_test, y_test)"
        )
    if class_names is not None:
        found["class_names"] = list(class_names)
    return found


def _dataset(cfg: ExperimentConfig, arrays: dict[str, Any] | None) -> Dataset:
    """The data as the workers will read it: checked from memory, since the npz is not written yet."""
    if arrays is None:
        return cfg.load_dataset()
    from fmtune.data import dataset_from_arrays

    assert cfg.data is not None and cfg.data.path is not None
    names = cfg.data.class_names
    return dataset_from_arrays(cfg.data, cfg.seed, str(cfg.data.path), arrays, names)


def _result(cfg: ExperimentConfig) -> TuneResult:
    from fmtune import results
    from fmtune.layout import ExperimentDir

    path = ExperimentDir(cfg.experiment_dir).results
    record = results.load(path)
    best = next((t for t in record.trials if t.trial_id == record.best_trial_id), None)
    return TuneResult(
        experiment=record.experiment,
        experiment_dir=cfg.experiment_dir,
        objective=record.objective.name,
        best_trial_id=record.best_trial_id,
        best_score=best.score if best else None,
        best_hyperparameters=record.best_hyperparameters or {},
        test_accuracy=record.test_accuracy,
        model_name=cfg.model_name,
        model_version=record.exported_version,
        model_path=Path(record.export_path) if record.export_path else None,
        results_path=path,
    )
