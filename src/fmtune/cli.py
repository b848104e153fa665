"""The ``fmtune`` command. Heavy imports (TensorFlow, Keras Tuner) happen inside the commands."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from fmtune import config as config_mod
from fmtune.config import ConfigError, ExperimentConfig
from fmtune.layout import ExperimentDir
from fmtune.tuning import roles
from fmtune.tuning.roles import Role

app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Tune, train and serve Keras image classifiers with distributed Keras Tuner.",
)
err = Console(stderr=True)

PresetOpt = Annotated[str, typer.Option("--preset", "-p", help="built-in preset: quick, standard or mnist")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="experiment YAML (over the preset)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override, e.g. search.max_trials=5")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="dataset directory (env FMTUNE_DATA_DIR)")]


def duration_minutes(text: str) -> float:
    from fmtune.run.budget import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"fmtune {version('fmtune')}")
        raise typer.Exit()


@app.callback()
def _app(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="print the installed version and exit"),
    ] = False,
) -> None:
    """Tune, train and serve Keras image classifiers with distributed Keras Tuner."""


def fail(message: str, code: int = 1) -> NoReturn:
    err.print("[bold red]error:[/]", escape(message), highlight=False, markup=True)
    raise typer.Exit(code)


def exit_now(code: int = 0) -> NoReturn:
    """Leave without the interpreter's teardown: with TensorFlow loaded, collecting its objects
    takes seconds, and the work is done and on disk by now."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def setup_logging() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout, force=True
    )
    for noisy in ("tensorflow", "absl", "keras_tuner", "h5py"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


ResolvedOpt = Annotated[
    Path | None,
    typer.Option(
        "--resolved",
        help="a config resolved and written by the process that started this one, loaded exactly "
        "(no preset, environment or overrides)",
    ),
]


def resolve(
    preset: str | None,
    file: Path | None,
    assignments: list[str] | None,
    data_dir: Path | None = None,
    resolved: Path | None = None,
    flags: dict[str, Any] | None = None,
) -> ExperimentConfig:
    """The experiment: from a resolved file alone, or from preset, file, environment, ``--set`` and
    dedicated flags (typed, by dotted key); exit 2 if invalid."""
    try:
        if resolved is not None:
            if preset or file or assignments or data_dir:
                raise ConfigError(["--resolved: give it alone, without --preset, --config, --set or --data-dir"])
            return config_mod.load_resolved(resolved)
        return config_mod.load(preset or None, file, assignments, flags={**(flags or {}), "data_dir": data_dir})
    except ConfigError as exc:
        err.print("[bold red]invalid configuration:[/]", highlight=False)
        for problem in exc.problems:
            err.print(f"  {problem}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command("config")
def show_config(
    preset: PresetOpt = "quick",
    file: ConfigOpt = None,
    assignments: SetOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Print the resolved experiment config as YAML (and validate it)."""
    print(resolve(preset, file, assignments, data_dir).to_yaml(), end="")


@app.command()
def tune(
    preset: PresetOpt = "quick",
    file: ConfigOpt = None,
    assignments: SetOpt = None,
    data_dir: DataDirOpt = None,
    workers: Annotated[int, typer.Option("--workers", "-w", min=1, max=64, help="worker processes")] = 2,
    name: Annotated[str | None, typer.Option(help="experiment name")] = None,
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
) -> None:
    """Run the whole pipeline on this machine: coordinator + N workers as local processes."""
    setup_logging()
    started_at = time.time()  # the budget covers everything from here
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
            "budget_minutes": budget,
        },
    )
    from fmtune import data
    from fmtune.run.local import LocalCluster
    from fmtune.tuning.roles import free_port

    try:
        dataset = cfg.load_dataset()
    except data.DatasetError as exc:
        fail(str(exc))
    config_path = prepare_experiment(cfg, fresh)
    threads = max(1, (os.cpu_count() or 1) // workers)
    err.print(
        f"experiment [bold]{escape(cfg.name)}[/] in {escape(str(cfg.experiment_dir))}: {cfg.dataset} from "
        f"{escape(str(dataset.source))}, "
        f"{cfg.search.algorithm} over {cfg.search.family}, {cfg.search.max_trials} trials, "
        f"{workers} workers",
        highlight=False,
    )
    board = dashboard_placement(cfg)
    cluster = LocalCluster(
        config_path,
        cfg.experiment_dir,
        workers,
        port or free_port(),
        threads_per_worker=threads,
        max_restarts=max_restarts,
        started_at=started_at,
        extra_env=board,
    )
    if board.get("FMTUNE_DASHBOARD_HOST"):
        err.print(
            f"dashboard: http://{board['FMTUNE_DASHBOARD_HOST']}:{board['FMTUNE_DASHBOARD_PORT']}/", highlight=False
        )
    code = cluster.run(progress_total=cfg.search.max_trials)
    if code == 130:
        fail("interrupted", 130)
    if code != 0:
        fail(f"the coordinator exited with code {code}", code if 0 < code < 256 else 1)
    show_results(cfg.experiment_dir, top=5)


def dashboard_placement(cfg: ExperimentConfig) -> dict[str, str]:
    """The coordinator's dashboard address, fixed here so that it can be printed at once."""
    from fmtune.dashboard import placement
    from fmtune.tuning.roles import free_port

    try:
        where = placement.resolve(cfg)
    except placement.PlacementError as exc:
        fail(str(exc), 2)
    if not where.enabled:
        return {placement.PORT_VAR: "off"}
    return {placement.HOST_VAR: where.host, placement.PORT_VAR: str(where.port or free_port())}


@app.command("dashboard")
def dashboard_cmd(
    path: Annotated[Path, typer.Argument(help="an experiment dir, or a work dir holding one")] = Path("runs"),
    port: Annotated[int, typer.Option(help="port (0: any free one)")] = 8050,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
) -> None:
    """Serve the live dashboard of a run on disk (running, finished or crashed), read-only."""
    from fmtune.dashboard.server import DashboardServer, find_experiment

    try:
        experiment_dir = find_experiment(path)
        server = DashboardServer(experiment_dir, host, port)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    print(f"dashboard of {experiment_dir}: {server.url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def prepare_experiment(cfg: ExperimentConfig, fresh: bool) -> Path:
    """Write the resolved config into the experiment dir; refuse to resume under a changed config."""
    path = ExperimentDir(cfg.experiment_dir).config
    if fresh and cfg.experiment_dir.exists():
        shutil.rmtree(cfg.experiment_dir)
    if path.is_file():
        try:
            previous = config_mod.load_resolved(path).digest()
        except ConfigError:
            previous = None
        if previous != cfg.digest():
            fail(
                f"experiment '{cfg.name}' already exists in {cfg.experiment_dir} with a different config; "
                "pass --fresh to start over, or --name to keep both",
                2,
            )
    cfg.experiment_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg.to_yaml())
    return path


def _role(chief: bool, host: str | None, port: int | None, tuner_id: str | None = None) -> Role:

    env = dict(os.environ)
    for key, value in ((roles.ORACLE_IP, host), (roles.ORACLE_PORT, port), (roles.TUNER_ID, tuner_id)):
        if value is not None:
            env[key] = str(value)
    try:
        return roles.from_env(expect_chief=chief, environ=env)
    except roles.RoleError as exc:
        fail(str(exc), 2)


@app.command()
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
    started_at: Annotated[
        float | None, typer.Option(hidden=True, help="wall-clock time the experiment's budget began (the launcher's)")
    ] = None,
) -> None:
    """Run the chief oracle for distributed workers, then retrain and export the best model."""
    setup_logging()
    cfg = resolve(preset or None, file, assignments, data_dir, resolved)
    role = _role(True, host, port)
    os.environ.update(role.env())
    from fmtune.data import DatasetError
    from fmtune.deploy import DeployError, GateRefused
    from fmtune.run.coordinator import SearchError, run

    try:
        run(cfg, role, retrain=retrain, deploy=deploy, started_at=started_at)
    except GateRefused as exc:
        err.print("[yellow]not deployed:[/]", escape(str(exc)), highlight=False)
    except (DatasetError, SearchError, DeployError) as exc:
        fail(str(exc))
    exit_now()


@app.command()
def worker(
    preset: PresetOpt = "",
    file: ConfigOpt = None,
    assignments: SetOpt = None,
    data_dir: DataDirOpt = None,
    resolved: ResolvedOpt = None,
    tuner_id: Annotated[str | None, typer.Option("--id", help="stable worker id (env KERASTUNER_TUNER_ID)")] = None,
    oracle: Annotated[str | None, typer.Option(help="coordinator HOST:PORT (env KERASTUNER_ORACLE_IP/PORT)")] = None,
    threads: Annotated[int, typer.Option(help="TensorFlow threads (0: the container's CPU limit, else all cores)")] = 0,
) -> None:
    """Run trials handed out by the coordinator until it says the search is over."""
    setup_logging()
    cfg = resolve(preset or None, file, assignments, data_dir, resolved)
    host, port = None, None
    if oracle:
        host, _, raw_port = oracle.rpartition(":")
        if not host or not raw_port.isdigit():
            fail(f"--oracle must be HOST:PORT, got '{oracle}'", 2)
        port = int(raw_port)
    role = _role(False, host.strip("[]") if host else None, port, tuner_id)
    from fmtune.data import DatasetError
    from fmtune.devices import DeviceError
    from fmtune.run.worker import run
    from fmtune.tuning.oracle_client import CoordinatorRefused, CoordinatorUnreachable

    try:
        run(cfg, role, threads)
    except (DatasetError, DeviceError) as exc:
        fail(str(exc))
    except CoordinatorUnreachable as exc:
        fail(f"worker {role.tuner_id} gives up: {exc} at {role.address}", 3)
    except CoordinatorRefused as exc:
        fail(f"worker {role.tuner_id} stops: {exc} ({role.address})", 4)


@app.command("deploy")
def deploy_cmd(
    version_dir: Annotated[Path, typer.Argument(help="an exported version (SavedModel + fmtune.json)")],
    deploy_config: Annotated[Path, typer.Option("--deploy-config", help="deploy.yaml (the chart's ConfigMap)")],
    model_repo: Annotated[Path, typer.Option(help="the repository the serving pods watch")] = Path("/data/models"),
    force: Annotated[bool, typer.Option("--force", help="deploy even if worse than the served model")] = False,
) -> None:
    """Deploy an exported model to the TF Serving Deployment (gate, publish, verify, record)."""
    setup_logging()
    import numpy as np
    import tensorflow as tf

    from fmtune import export
    from fmtune.deploy import DeployConfig, Deployer, DeployError, GrpcServingCheck, KubernetesCluster

    try:
        cfg = DeployConfig.load(deploy_config)
    except DeployError as exc:
        fail(str(exc))
    try:
        card = export.read_card(version_dir)
        fn = tf.saved_model.load(str(version_dir)).signatures[export.SIGNATURE]
    except (OSError, ValueError) as exc:
        fail(f"{version_dir}: {exc}")
    images = np.random.default_rng(0).integers(0, 256, (16, 28, 28), np.uint8)
    expected = fn(image=tf.constant(images))["probabilities"].numpy()
    try:
        cluster = KubernetesCluster(cfg)  # before staging: without a cluster, nothing is written
        staging = export.stage_copy(version_dir, model_repo, card.model_name)
        record = Deployer(cfg, cluster, GrpcServingCheck(card.model_name)).deploy(
            staging, card, images, expected, force=force
        )
    except DeployError as exc:
        fail(str(exc))
    except OSError as exc:  # the repository cannot be written; the deployer cleans up what it staged
        fail(f"model repository {model_repo}: {exc.strerror or exc}")
    print(record.model_dump_json(indent=2))


@app.command("results")
def results_cmd(
    path: Annotated[Path, typer.Argument(help="a work dir, an experiment dir, or a results.json")] = Path("runs"),
    top: Annotated[int, typer.Option(help="rows to show (0: all)")] = 0,
) -> None:
    """Print the trial table, best first, and the best configuration."""
    show_results(path, top)


@app.command("report")
def report_cmd(
    path: Annotated[Path, typer.Argument(help="a work dir, an experiment dir, or a results.json")] = Path("runs"),
    out: Annotated[Path | None, typer.Option(help="where to write (default: beside results.json)")] = None,
) -> None:
    """Write report.png and report.html: trials over time, best so far, and each hyperparameter."""
    from fmtune import results
    from fmtune.report import html_report, plot

    files = results.find(path)
    if not files:
        fail(f"no results.json under {path}")
    for file in files:
        res = results.load(file)
        folder = out or file.parent
        png = plot(res, folder / "report.png")
        page = html_report(res, png, folder / "report.html")
        print(f"{res.experiment}: {png} and {page}")


def show_results(path: Path, top: int) -> None:
    from fmtune import results
    from fmtune.report import print_results

    files = results.find(path)
    if not files:
        fail(f"no results.json under {path}")
    for file in files:
        print_results(results.load(file), top=top)


@app.command()
def serve(
    model_repo: Annotated[Path, typer.Option(help="model repository (holds <model-name>/<version>/)")] = Path("models"),
    model_name: Annotated[str, typer.Option(help="model to serve")] = "fmtune",
    grpc_port: Annotated[int, typer.Option(help="gRPC port")] = 8500,
    rest_port: Annotated[int, typer.Option(help="REST port")] = 8501,
    host: Annotated[str, typer.Option(help="bind address (0.0.0.0 in a container)")] = "127.0.0.1",
    poll_seconds: Annotated[float, typer.Option(help="how often to look for new versions")] = 1.0,
    builtin: Annotated[bool, typer.Option("--builtin", help="never use tensorflow_model_server")] = False,
) -> None:
    """Serve the model over TF Serving's gRPC and REST APIs (tensorflow_model_server if on PATH)."""
    setup_logging()
    from fmtune.serving.server import ServeOptions
    from fmtune.serving.server import serve as run_server

    opts = ServeOptions(
        model_repo=model_repo,
        model_name=model_name,
        grpc_port=grpc_port,
        rest_port=rest_port,
        host=host,
        poll_seconds=poll_seconds,
    )
    try:
        run_server(opts, builtin)
    except OSError as exc:
        fail(str(exc))


@app.command("predict")
def predict_cmd(
    images: Annotated[list[Path] | None, typer.Argument(help="PNG or JPEG files")] = None,
    target: Annotated[str, typer.Option(help="gRPC HOST:PORT, or REST http://HOST:PORT")] = "localhost:8500",
    sample: Annotated[int, typer.Option(min=0, help="classify N random test-set images instead")] = 0,
    model_name: Annotated[str, typer.Option(help="served model name")] = "fmtune",
    dataset: Annotated[
        str | None, typer.Option(help="dataset for class names and --sample (default: the latest experiment's)")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="dataset directory (else FMTUNE_DATA_DIR, else where the latest experiment found it)"
        ),
    ] = None,
    workdir: Annotated[Path, typer.Option(help="where experiments are kept (to find their dataset)")] = Path("runs"),
    version: Annotated[int | None, typer.Option(help="model version (default: the served one)")] = None,
    timeout: Annotated[float, typer.Option(help="seconds per call")] = 10.0,
    seed: Annotated[int | None, typer.Option(help="seed for --sample")] = None,
    invert: Annotated[
        bool | None,
        typer.Option(
            "--invert/--no-invert",
            help="make images light-on-dark (255 - x) as the model expects (default: only those with a light border)",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[float, typer.Option(min=0, help="seconds to wait for the model to be AVAILABLE first")] = 0.0,
) -> None:
    """Classify images with a served model and print a table."""
    from fmtune.predict import Request, run_predict

    if bool(images) == bool(sample):
        fail("give image files or --sample N (one of the two)", 2)
    request = Request(
        target=target,
        model_name=model_name,
        images=images or [],
        sample=sample,
        dataset=dataset,
        data_dir=data_dir,
        workdir=workdir,
        version=version,
        timeout=timeout,
        seed=seed,
        invert=invert,
        wait=wait,
    )
    raise typer.Exit(run_predict(request))


def main() -> None:
    app()
