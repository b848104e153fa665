"""The commands that run an experiment: ``config``, ``tune`` (all of it on this machine), and the
``coordinator`` and ``worker`` processes (pods on Kubernetes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from fmtune import logs
from fmtune.cli.common import (
    STARTED,
    ConfigOpt,
    DataDirOpt,
    LogFormatOpt,
    PresetOpt,
    ResolvedOpt,
    SetOpt,
    err,
    exit_now,
    fail,
    json_logs,
    log,
    resolve,
    setup_logging,
)
from fmtune.cli.results import show_results
from fmtune.config import ExperimentConfig
from fmtune.run import experiment
from fmtune.text import parse_duration
from fmtune.tuning import roles
from fmtune.tuning.roles import Role

if TYPE_CHECKING:
    from fmtune.data import Dataset


def duration_minutes(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def show_config(
    preset: PresetOpt = "quick",
    file: ConfigOpt = None,
    assignments: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Print the resolved experiment config as YAML (and validate it)."""
    print(resolve(preset, file, assignments, data_dir, seed=experiment.seed_for()).to_yaml(), end="")


def tune(
    preset: PresetOpt = "quick",
    file: ConfigOpt = None,
    assignments: SetOpt = None,
    data_dir: DataDirOpt = None,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, max=64, help="worker processes")] = 2,
    name: Annotated[str | None, typer.Option(help="experiment name")] = None,
    hypermodel: Annotated[
        str | None,
        typer.Option(help="your model: module:attr or path/to/file.py:attr (config: search.hypermodel)"),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data", help="your images: a folder of class folders, an .npz, or a module:function loader (config: data)"
        ),
    ] = None,
    workdir: Annotated[Path | None, typer.Option(help="where experiments are kept")] = None,
    model_repo: Annotated[Path | None, typer.Option(help="model repository for the export")] = None,
    max_trials: Annotated[int | None, typer.Option(help="trials in the search")] = None,
    budget: Annotated[
        float | None,
        typer.Option(
            "--budget",
            parser=duration_minutes,
            metavar="DURATION",
            help="wall time for the whole pipeline, e.g. 60m, 1.5h, 90s (config: budget_minutes)",
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="oracle port on 127.0.0.1 (0: pick a free one)")] = 0,
    fresh: Annotated[bool, typer.Option("--fresh", help="discard an earlier run of this experiment")] = False,
    max_restarts: Annotated[int, typer.Option(min=0, help="restarts of a crashed worker under its id")] = 3,
    dashboard_host: Annotated[
        str | None,
        typer.Option(help="the dashboard's bind address (default: env FMTUNE_DASHBOARD_HOST, else 127.0.0.1)"),
    ] = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Run the whole pipeline on this machine: coordinator + N workers as local processes."""
    setup_logging(log_format, role="launcher")
    from fmtune.data.source import source_from_text

    cfg = resolve(
        preset,
        file,
        assignments,
        data_dir,
        flags={
            "name": name,
            "workdir": workdir,
            "model_repo": model_repo,
            "search.max_trials": max_trials,
            "search.hypermodel": hypermodel,
            # Dotted, so that `--set data.image_size=...` and the like still apply beside it.
            **{f"data.{key}": value for key, value in (source_from_text(data) if data else {}).items()},
            "budget_minutes": budget,
        },
        seed=experiment.seed_for(fresh),
    )
    logs.bind(experiment=cfg.name)
    from fmtune.dashboard.placement import PlacementError
    from fmtune.run.launch import prepare_local

    dataset = checked_dataset(cfg)
    try:
        launch = prepare_local(
            cfg,
            workers,
            fresh=fresh,
            port=port,
            max_restarts=max_restarts,
            dashboard_host=dashboard_host,
            started_at=STARTED,
        )
    except (experiment.ConfigChanged, PlacementError) as exc:
        fail(str(exc), 2)
    if json_logs():  # stdout holds JSON lines only
        log.info(
            "experiment %s in %s: %s, %s over %s, %d trials, %d workers",
            cfg.name,
            cfg.experiment_dir,
            cfg.dataset_name,
            cfg.search.algorithm,
            cfg.search.model,
            cfg.search.max_trials,
            workers,
            extra={"dashboard": launch.dashboard},
        )
    else:
        err.print(
            f"experiment [bold]{escape(cfg.name)}[/] in {escape(str(cfg.experiment_dir))}: {cfg.dataset_name} from "
            f"{escape(str(dataset.source))}, "
            f"{cfg.search.algorithm} over {cfg.search.model}, {cfg.search.max_trials} trials, "
            f"{workers} workers",
            highlight=False,
        )
        if launch.dashboard:
            err.print(f"dashboard: {launch.dashboard}", highlight=False)
    code = launch.run()
    if code == 130:
        fail("interrupted", 130)
    if code != 0:
        fail(f"the coordinator exited with code {code}", code if 0 < code < 256 else 1)
    if json_logs():
        log.info("done: results in %s", cfg.experiment_dir / "results.json")
    else:
        show_results(cfg.experiment_dir, top=5)


def checked_dataset(cfg: ExperimentConfig) -> Dataset:
    """The experiment's data and model, checked before anything starts or is written: exit 2 on a
    dataset or a model plugin that cannot work, with one line saying why."""
    from fmtune.data import DatasetError

    try:
        dataset = cfg.load_dataset()
    except DatasetError as exc:
        fail(str(exc), 2)
    from fmtune.models.checks import check_search  # TensorFlow: only once the data is known good
    from fmtune.models.plugins import PluginError

    try:
        check_search(cfg.search, dataset)
    except PluginError as exc:
        fail(str(exc), 2)
    return dataset


def _portable(cfg: ExperimentConfig) -> None:
    """Exit 2 for a model that only this machine can load (a notebook's, pickled by fmtune.tune)."""
    from fmtune.models.plugins import PluginError, portable

    try:
        portable(cfg.search.hypermodel)
    except PluginError as exc:
        fail(str(exc), 2)


def _role(chief: bool, host: str | None, port: int | None, tuner_id: str | None = None) -> Role:
    env = dict(os.environ)
    for key, value in ((roles.ORACLE_IP, host), (roles.ORACLE_PORT, port), (roles.TUNER_ID, tuner_id)):
        if value is not None:
            env[key] = str(value)
    try:
        return roles.from_env(expect_chief=chief, environ=env)
    except roles.RoleError as exc:
        fail(str(exc), 2)


def coordinator(
    preset: PresetOpt = "",
    file: ConfigOpt = None,
    assignments: SetOpt = None,
    data_dir: DataDirOpt = None,
    resolved: ResolvedOpt = None,
    host: Annotated[str | None, typer.Option(help="bind address (env KERASTUNER_ORACLE_IP, default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="oracle port (env KERASTUNER_ORACLE_PORT)")] = None,
    retrain: Annotated[bool, typer.Option(help="retrain, evaluate and export the best trial")] = True,
    deploy: Annotated[Path | None, typer.Option(help="deploy.yaml: deploy to TF Serving on Kubernetes")] = None,
    trial_threads: Annotated[
        int, typer.Option(help="each worker's TensorFlow threads, to predict retraining's epochs (0: as many as here)")
    ] = 0,
    log_format: LogFormatOpt = None,
) -> None:
    """Run the chief oracle for distributed workers, then retrain and export the best model."""
    setup_logging(log_format, role="coordinator")
    cfg = resolve(preset or None, file, assignments, data_dir, resolved, seed=experiment.seed_for())
    logs.bind(experiment=cfg.name)
    if resolved is None:  # a pod: it cannot read a model pickled into a local directory
        _portable(cfg)
    role = _role(True, host, port)
    os.environ.update(role.env())
    # A config resolved here (a pod) is checked here; one resolved by `fmtune tune` was checked there.
    dataset = checked_dataset(cfg) if resolved is None else None
    experiment.publish(cfg)  # the config every worker checks its own against
    from fmtune.data import DatasetError
    from fmtune.deploy import DeployError, GateRefused
    from fmtune.run.coordinator import SearchError, run

    try:
        run(cfg, role, retrain=retrain, deploy=deploy, dataset=dataset, trial_threads=trial_threads)
    except GateRefused as exc:
        err.print("[yellow]not deployed:[/]", escape(str(exc)), highlight=False)
    except (DatasetError, SearchError, DeployError) as exc:
        fail(str(exc))
    exit_now()


def worker(
    preset: PresetOpt = "",
    file: ConfigOpt = None,
    assignments: SetOpt = None,
    data_dir: DataDirOpt = None,
    resolved: ResolvedOpt = None,
    tuner_id: Annotated[str | None, typer.Option("--id", help="stable worker id (env KERASTUNER_TUNER_ID)")] = None,
    oracle: Annotated[str | None, typer.Option(help="coordinator HOST:PORT (env KERASTUNER_ORACLE_IP/PORT)")] = None,
    threads: Annotated[int, typer.Option(help="TensorFlow threads (0: the container's CPU limit, else all cores)")] = 0,
    log_format: LogFormatOpt = None,
) -> None:
    """Run trials handed out by the coordinator until it says the search is over."""
    setup_logging(log_format, role="worker")
    cfg = resolve(preset or None, file, assignments, data_dir, resolved)
    logs.bind(experiment=cfg.name)
    if resolved is None:
        _portable(cfg)
    host, port = None, None
    if oracle:
        host, _, raw_port = oracle.rpartition(":")
        if not host or not raw_port.isdigit():
            fail(f"--oracle must be HOST:PORT, got '{oracle}'", 2)
        port = int(raw_port)
    role = _role(False, host.strip("[]") if host else None, port, tuner_id)
    logs.bind(worker=role.tuner_id)
    if resolved is None:  # checked above; now a seed no layer sets is the one the coordinator drew
        try:
            cfg = resolve(preset or None, file, assignments, data_dir, seed=experiment.published_seed())
        except experiment.ConfigNotPublished as exc:
            fail(f"worker {role.tuner_id} gives up: {exc}", 3)
    from fmtune.data import DatasetError
    from fmtune.devices import DeviceError
    from fmtune.run.worker import run
    from fmtune.tuning.oracle_client import CoordinatorRefused, CoordinatorUnreachable

    try:
        run(cfg, role, threads)
    except (DatasetError, DeviceError) as exc:
        fail(str(exc))
    except experiment.ConfigMismatch as exc:
        fail(f"worker {role.tuner_id} refuses to run: {exc}", 2)
    except experiment.ConfigNotPublished as exc:
        fail(f"worker {role.tuner_id} gives up: {exc}", 3)
    except CoordinatorUnreachable as exc:
        fail(f"worker {role.tuner_id} gives up: {exc} at {role.address}", 3)
    except CoordinatorRefused as exc:
        fail(f"worker {role.tuner_id} stops: {exc} ({role.address})", 4)
