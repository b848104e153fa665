"""The ``fmtune`` command. Heavy imports (TensorFlow, Keras Tuner) happen inside the commands."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from fmtune import config as config_mod
from fmtune.config import ConfigError, ExperimentConfig
from fmtune.tuning import roles
from fmtune.tuning.roles import Role

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Tune, train and serve Keras image classifiers with distributed Keras Tuner.",
)
err = Console(stderr=True)
CONFIG_FILE = "config.yaml"

PresetOpt = Annotated[str, typer.Option("--preset", "-p", help="built-in preset: quick, standard or mnist")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="experiment YAML (over the preset)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override, e.g. search.max_trials=5")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="dataset directory [env: FMTUNE_DATA_DIR]")]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print("[bold red]error:[/]", message, highlight=False, markup=True)
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


def resolve(
    preset: str | None, file: Path | None, assignments: list[str] | None, data_dir: Path | None = None, **flags: object
) -> ExperimentConfig:
    """Config from preset, file, environment, ``--set`` and dedicated flags; exit 2 if invalid."""
    extra = [f"{key}={value}" for key, value in flags.items() if value is not None]
    if data_dir is not None:
        extra.append(f"data_dir={data_dir}")
    try:
        return config_mod.load(preset or None, file, [*(assignments or []), *extra])
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
    port: Annotated[int, typer.Option(help="oracle port on 127.0.0.1 (0: pick a free one)")] = 0,
    fresh: Annotated[bool, typer.Option("--fresh", help="discard an earlier run of this experiment")] = False,
    max_restarts: Annotated[int, typer.Option(min=0, help="restarts of a crashed worker under its id")] = 3,
) -> None:
    """Run the whole pipeline on this machine: coordinator + N workers as local processes."""
    setup_logging()
    cfg = resolve(
        preset,
        file,
        assignments,
        data_dir,
        name=name,
        workdir=workdir,
        model_repo=model_repo,
        **{"search.max_trials": max_trials},
    )
    from fmtune import data
    from fmtune.tuning.local import LocalCluster
    from fmtune.tuning.roles import free_port

    try:
        dataset = data.load(
            cfg.dataset, cfg.data_dir, val_fraction=cfg.val_fraction, seed=cfg.seed, download=cfg.download
        )
    except data.DatasetError as exc:
        fail(str(exc))
    config_path = prepare_experiment(cfg, fresh)
    threads = max(1, (os.cpu_count() or 1) // workers)
    err.print(
        f"experiment [bold]{cfg.name}[/] in {cfg.experiment_dir}: {cfg.dataset} from {dataset.source}, "
        f"{cfg.search.algorithm} over {cfg.search.family}, {cfg.search.max_trials} trials, "
        f"{workers} workers",
        highlight=False,
    )
    cluster = LocalCluster(
        config_path, workers, port or free_port(), threads_per_worker=threads, max_restarts=max_restarts
    )
    code = cluster.run(progress_total=cfg.search.max_trials)
    if code == 130:
        fail("interrupted", 130)
    if code != 0:
        fail(f"the coordinator exited with code {code}", code if 0 < code < 256 else 1)
    show_results(cfg.experiment_dir, top=5)


def prepare_experiment(cfg: ExperimentConfig, fresh: bool) -> Path:
    """Write the resolved config into the experiment dir; refuse to resume under a changed config."""
    path = cfg.experiment_dir / CONFIG_FILE
    if fresh and cfg.experiment_dir.exists():
        shutil.rmtree(cfg.experiment_dir)
    if path.is_file():
        previous = config_mod.load(None, path, environ={})
        if previous.digest() != cfg.digest():
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
    host: Annotated[str | None, typer.Option(help="bind address [env: KERASTUNER_ORACLE_IP, default 0.0.0.0]")] = None,
    port: Annotated[int | None, typer.Option(help="oracle port [env: KERASTUNER_ORACLE_PORT]")] = None,
    retrain: Annotated[bool, typer.Option(help="retrain, evaluate and export the best trial")] = True,
    deploy: Annotated[Path | None, typer.Option(help="deploy.yaml: deploy to TF Serving on Kubernetes")] = None,
) -> None:
    """Run the chief oracle for distributed workers, then retrain and export the best model."""
    setup_logging()
    cfg = resolve(preset or None, file, assignments, data_dir)
    role = _role(True, host, port)
    os.environ.update(role.env())
    from fmtune.data import DatasetError
    from fmtune.deploy import DeployError, GateRefused
    from fmtune.tuning.coordinator import SearchError, run

    try:
        run(cfg, role, retrain=retrain, deploy=deploy)
    except GateRefused as exc:
        err.print(f"[yellow]not deployed:[/] {exc}", highlight=False)
    except (DatasetError, SearchError, DeployError) as exc:
        fail(str(exc))
    exit_now()


@app.command()
def worker(
    preset: PresetOpt = "",
    file: ConfigOpt = None,
    assignments: SetOpt = None,
    data_dir: DataDirOpt = None,
    tuner_id: Annotated[str | None, typer.Option("--id", help="stable worker id [env: KERASTUNER_TUNER_ID]")] = None,
    oracle: Annotated[str | None, typer.Option(help="coordinator HOST:PORT [env: KERASTUNER_ORACLE_IP/PORT]")] = None,
    threads: Annotated[int, typer.Option(help="TensorFlow threads (0: all cores)")] = 0,
) -> None:
    """Run trials handed out by the coordinator until it says the search is over."""
    setup_logging()
    cfg = resolve(preset or None, file, assignments, data_dir)
    host, port = None, None
    if oracle:
        host, _, raw_port = oracle.rpartition(":")
        if not host or not raw_port.isdigit():
            fail(f"--oracle must be HOST:PORT, got '{oracle}'", 2)
        port = int(raw_port)
    role = _role(False, host.strip("[]") if host else None, port, tuner_id)
    from fmtune.data import DatasetError
    from fmtune.tuning.service import CoordinatorUnreachable
    from fmtune.tuning.worker import run

    try:
        run(cfg, role, threads)
    except DatasetError as exc:
        fail(str(exc))
    except CoordinatorUnreachable as exc:
        fail(f"worker {role.tuner_id} gives up: {exc} at {role.address}", 3)


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
        card = export.read_card(version_dir)
        cfg = DeployConfig.load(deploy_config)
        fn = tf.saved_model.load(str(version_dir)).signatures[export.SIGNATURE]
    except (OSError, ValueError) as exc:
        fail(f"{version_dir}: {exc}")
    images = np.random.default_rng(0).integers(0, 256, (16, 28, 28), np.uint8)
    expected = fn(image=tf.constant(images))["probabilities"].numpy()
    staging = export.stage_copy(version_dir, model_repo, card.model_name)
    deployer = Deployer(cfg, KubernetesCluster(cfg), GrpcServingCheck(card.model_name))
    try:
        record = deployer.deploy(staging, card, images, expected, force=force)
    except DeployError as exc:
        fail(str(exc))
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
    host: Annotated[str, typer.Option(help="bind address")] = "0.0.0.0",
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
    dataset: Annotated[str, typer.Option(help="dataset for class names and --sample")] = "fashion_mnist",
    data_dir: DataDirOpt = None,
    version: Annotated[int | None, typer.Option(help="model version (default: the served one)")] = None,
    timeout: Annotated[float, typer.Option(help="seconds per call")] = 10.0,
    seed: Annotated[int | None, typer.Option(help="seed for --sample")] = None,
) -> None:
    """Classify images with a served model and print a table."""
    from fmtune.predict import run_predict

    if bool(images) == bool(sample):
        fail("give image files or --sample N (one of the two)", 2)
    data_dir = data_dir or (Path(os.environ["FMTUNE_DATA_DIR"]) if os.environ.get("FMTUNE_DATA_DIR") else None)
    code = run_predict(target, model_name, dataset, images or [], sample, data_dir, version, timeout, seed)
    raise typer.Exit(code)


def main() -> None:
    app()
