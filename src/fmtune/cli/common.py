"""What every ``fmtune`` command shares: errors and exits, logging, and the experiment's options."""

from __future__ import annotations

import enum
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from fmtune import config as config_mod
from fmtune import logs
from fmtune.config import ConfigError, ExperimentConfig

err = Console(stderr=True)
# When the command began: `fmtune tune`'s budget counts from here, its heavy imports and data checks included.
STARTED = time.time()
log = logging.getLogger("fmtune")


class LogFormat(str, enum.Enum):
    text = "text"
    json = "json"


LogFormatOpt = Annotated[
    LogFormat | None,
    typer.Option(
        "--log-format",
        envvar=logs.FORMAT_ENV,
        help="text (for a person) or json (one object per line, for a log pipeline); "
        "the processes this one starts log the same way",
    ),
]

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


def json_logs() -> bool:
    return os.environ.get(logs.FORMAT_ENV) == LogFormat.json.value


def fail(message: str, code: int = 1) -> NoReturn:
    if json_logs():
        log.error("error: %s", message, extra={"exit_code": code})
    else:
        err.print("[bold red]error:[/]", escape(message), highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def exit_now(code: int = 0) -> NoReturn:
    """Leave without the interpreter's teardown: with TensorFlow loaded, collecting its objects
    takes seconds, and the work is done and on disk by now."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def setup_logging(log_format: LogFormat | None = None, role: str | None = None) -> None:
    """Log to stdout as text (the default) or as JSON lines (``log_format``, else the environment's
    FMTUNE_LOG_FORMAT, which the processes this one starts inherit); ``role`` names this process
    in every JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    raw = log_format.value if log_format is not None else os.environ.get(logs.FORMAT_ENV) or LogFormat.text.value
    if raw not in logs.FORMATS:
        fail(f"{logs.FORMAT_ENV}: '{raw}' is not a log format (choose from {', '.join(logs.FORMATS)})", 2)
    os.environ[logs.FORMAT_ENV] = raw
    handler = logging.StreamHandler(sys.stdout)
    if raw == LogFormat.json.value:
        handler.setFormatter(logs.JsonFormatter())
        logs.bind(role=role)
        sys.excepthook = _log_uncaught
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(raw == LogFormat.json.value)  # a warning is a JSON line too, not bare text
    for noisy in ("tensorflow", "absl", "keras_tuner", "h5py"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    log.critical("uncaught %s: %s", kind.__name__, exc, exc_info=(kind, exc, tb))


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
        if json_logs():
            log.error("invalid configuration: %s", "; ".join(exc.problems), extra={"problems": exc.problems})
            raise typer.Exit(2) from None
        err.print("[bold red]invalid configuration:[/]", highlight=False)
        for problem in exc.problems:
            err.print(f"  {problem}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
