"""An experiment's config in its directory: written once, by whoever starts the experiment, and
checked by every process that joins it.

``fmtune tune`` writes the resolved config before it starts anything (``prepare``), and refuses to
resume an experiment under another one. The coordinator publishes its config there too
(``publish``): on Kubernetes every pod resolves preset, file and environment for itself, so a
worker compares its own config with the published one (``await_published``) and refuses to run
trials of a different experiment.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fmtune import config as config_mod
from fmtune import files
from fmtune.config import ConfigError, ExperimentConfig
from fmtune.layout import ExperimentDir

log = logging.getLogger("fmtune")
POLL_SECONDS = 0.5
SHOWN_KEYS = 8  # differing keys named in a message; the rest are counted


class ExperimentError(RuntimeError):
    """The experiment's directory does not allow this process to go on."""


class ConfigChanged(ExperimentError):
    """The experiment exists with another config, and resuming it under this one was not asked for."""


class ConfigMismatch(ExperimentError):
    """This process's config is not the one the coordinator published for the experiment."""


class ConfigNotPublished(ExperimentError):
    """No coordinator published the experiment's config in time."""


def published(cfg: ExperimentConfig) -> Path:
    """Where the experiment's resolved config is kept (``config.yaml`` in its directory)."""
    return ExperimentDir(cfg.experiment_dir).config


def _config_at(path: Path) -> ExperimentConfig | None:
    """The config at ``path``; None if there is none, or none that loads."""
    if not path.is_file():
        return None
    try:
        return config_mod.load_resolved(path)
    except ConfigError:
        return None


def _digest_at(path: Path) -> str | None:
    found = _config_at(path)
    return None if found is None else found.digest()


def new_seed() -> int:
    return secrets.randbelow(2**31)


def seed_for(fresh: bool = False) -> Callable[[ExperimentConfig], int]:
    """Where the seed of a run that sets none comes from (``config.load(seed=...)``): a new one for
    a new experiment, so that runs differ where they should; the experiment's own (its
    ``config.yaml``) when it is resumed, so that it resumes under the same config."""

    def seed(cfg: ExperimentConfig) -> int:
        kept = None if fresh else _config_at(published(cfg))
        return new_seed() if kept is None else kept.seed

    return seed


def published_seed(
    timeout: float | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[ExperimentConfig], int]:
    """A worker's seed when its layers set none: the one its coordinator drew and published,
    waited for as ``await_published`` waits (ConfigNotPublished if none comes)."""

    def seed(cfg: ExperimentConfig) -> int:
        limit = cfg.fault_tolerance.coordinator_timeout_seconds if timeout is None else timeout
        deadline = clock() + limit
        while (theirs := _config_at(published(cfg))) is None:
            if clock() >= deadline:
                raise not_published(cfg, limit)
            sleep(max(0.0, min(POLL_SECONDS, deadline - clock())))
        return theirs.seed

    return seed


def prepare(cfg: ExperimentConfig, fresh: bool = False) -> Path:
    """Write the resolved config into the experiment dir and return its path; ``fresh`` discards an
    earlier run first. ConfigChanged if the experiment exists under a different config."""
    path = published(cfg)
    if fresh:
        for directory in {cfg.experiment_dir, ExperimentDir(cfg.experiment_dir).own}:  # its own files may be apart
            if directory.exists():
                shutil.rmtree(directory)
    if path.is_file() and _digest_at(path) != cfg.digest():
        raise ConfigChanged(
            f"experiment '{cfg.name}' already exists in {cfg.experiment_dir} with a different config; "
            "pass --fresh to start over, or --name to keep both"
        )
    files.replace(path, cfg.to_yaml().encode())
    return path


def publish(cfg: ExperimentConfig) -> Path:
    """Make ``cfg`` the experiment's published config (written atomically, and only if it is not
    already), so that workers can check theirs against it. A config published before under
    another digest is replaced: a coordinator restarted with a new config (an upgrade of the
    release) runs the experiment under that one, and its workers must have it too."""
    path = published(cfg)
    before = _digest_at(path)
    if before != cfg.digest():
        files.replace(path, cfg.to_yaml().encode())
        if before is not None:
            log.info("config %s published at %s, in place of %s", cfg.digest(), path, before)
    return path


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(theirs: Mapping[str, Any], mine: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(dotted key, their value, my value) of every leaf where two config dumps differ; a key
    missing on one side has the value None there.

    >>> differences({"seed": 1, "search": {"max_trials": 5, "epochs": 2}}, {"seed": 1, "search": {"max_trials": 3}})
    [('search.epochs', 2, None), ('search.max_trials', 5, 3)]
    """
    a, b = _flatten(theirs), _flatten(mine)
    return [(key, a.get(key), b.get(key)) for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key)]


def mismatch(mine: ExperimentConfig, theirs: ExperimentConfig, where: Path) -> str | None:
    """None when ``theirs`` (the config published at ``where``) is ``mine``; else a message with
    both digests and the keys that differ."""
    if mine.digest() == theirs.digest():
        return None
    found = differences(theirs.model_dump(mode="json"), mine.model_dump(mode="json"))
    shown = [f"{key} (coordinator: {a!r}, this process: {b!r})" for key, a, b in found[:SHOWN_KEYS]]
    if len(found) > SHOWN_KEYS:
        shown.append(f"and {len(found) - SHOWN_KEYS} more")
    return (
        f"this process's config {mine.digest()} is not the experiment's config {theirs.digest()} "
        f"published by its coordinator at {where}; they differ in " + ", ".join(shown)
    )


def _check(cfg: ExperimentConfig, path: Path) -> tuple[bool, str | None]:
    """(whether a config is published at ``path``, why it is not ``cfg``'s or None if it is)."""
    if not path.is_file():
        return False, None
    try:
        theirs = config_mod.load_resolved(path)
    except ConfigError as exc:
        problems = "; ".join(exc.problems)
        return True, f"the experiment's config published at {path} is not one this process can run: {problems}"
    return True, mismatch(cfg, theirs, path)


def not_published(cfg: ExperimentConfig, waited: float) -> ConfigNotPublished:
    return ConfigNotPublished(
        f"the coordinator did not answer within {waited:g}s: no config published at {published(cfg)} "
        f"(is a coordinator running for experiment '{cfg.name}' in {cfg.workdir}?)"
    )


def await_published(
    cfg: ExperimentConfig,
    timeout: float | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once the config published in the experiment dir is ``cfg``; wait for it for up to
    ``timeout`` seconds (default: ``fault_tolerance.coordinator_timeout_seconds``). A different
    one is waited out too, for the coordinator may not have replaced an earlier run's yet (the pods
    of an upgraded release start together). ConfigMismatch if one that differs is still there at
    the end, ConfigNotPublished if none is."""
    limit = cfg.fault_tolerance.coordinator_timeout_seconds if timeout is None else timeout
    path = published(cfg)
    deadline = clock() + limit
    said: tuple[bool, str | None] | None = None
    while True:
        found, why = _check(cfg, path)
        if found and why is None:
            return
        if clock() >= deadline:
            if why is not None:
                raise ConfigMismatch(why)
            raise not_published(cfg, limit)
        if (found, why) != said:
            said = (found, why)
            if why is None:
                log.info("waiting up to %gs for the coordinator to publish the experiment's config at %s", limit, path)
            else:
                log.info("%s; waiting up to %gs for the coordinator to publish this one", why, limit)
        sleep(max(0.0, min(POLL_SECONDS, deadline - clock())))
