"""What every ``fmtune`` command shares: errors and exits, logging, and the experiment's options."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from fmtune import config as config_mod
from fmtune.config import ConfigError, ExperimentConfig

err = Console(stderr=True)

PresetOpt = Annotated[str, typer.Option("--preset", "-p", help="built-in preset: quick, standard or mnist")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="experiment YAML (over the preset)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override, e.g. search.max_trials=5")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="dataset directory (env FMTUNE_DATA_DIR)")]
ResolvedOpt = Annotated[
    Path | None,
    typer.Option(
        "--resolved",
        help="a config resolved and written by the process that started this one, loaded exactly "
        "(no preset, environment or overrides)",
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print("[bold red]error:[/]", escape(message), highlight=False, markup=True, soft_wrap=True)
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
    preset: str | None,
    file: Path | None,
    assignments: list[str] | None,
    data_dir: Path | None = None,
    resolved: Path | None = None,
    flags: dict[str, Any] | None = None,
    seed: Callable[[ExperimentConfig], int] | None = None,
) -> ExperimentConfig:
    """The experiment: from a resolved file alone, or from preset, file, environment, ``--set`` and
    dedicated flags (typed, by dotted key; ``seed``: where a seed no layer sets comes from, see
    ``config.load``); exit 2 if invalid."""
    try:
        if resolved is not None:
            if preset or file or assignments or data_dir:
                raise ConfigError(["--resolved: give it alone, without --preset, --config, --set or --data-dir"])
            return config_mod.load_resolved(resolved)
        flags = {**(flags or {}), "data_dir": data_dir}
        return config_mod.load(preset or None, file, assignments, flags=flags, seed=seed)
    except ConfigError as exc:
        err.print("[bold red]invalid configuration:[/]", highlight=False)
        for problem in exc.problems:
            err.print(f"  {problem}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
