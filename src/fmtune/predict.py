"""``fmtune predict``: classify files or test-set samples with a served model, as a table."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from fmtune import data
from fmtune.client import FmtuneClient, FmtuneClientError
from fmtune.client.images import orient, to_batch

err = Console(stderr=True)
DEFAULT_DATASET = "fashion_mnist"
POINT_AT_DATA = "point fmtune predict at the folder of the IDX files with --data-dir DIR or FMTUNE_DATA_DIR=DIR"


@dataclass(frozen=True)
class Request:
    """What to classify and where: one ``fmtune predict`` invocation."""

    target: str
    model_name: str
    images: list[Path]
    sample: int
    dataset: str | None = None  # None: the latest experiment's, else fashion_mnist
    data_dir: Path | None = None  # None: FMTUNE_DATA_DIR, else where the latest experiment found it
    workdir: Path = Path("runs")
    version: int | None = None
    timeout: float = 10.0
    seed: int | None = None
    invert: bool | None = None
    wait: float = 0.0


def latest_experiment(workdir: Path) -> tuple[str, Path | None] | None:
    """(dataset, data_dir) of the experiment under ``workdir`` that finished last, from its resolved
    config (``<workdir>/<name>/config.yaml``, written by ``fmtune tune``): that is where the pipeline
    found its data, and the model it exported is the one most likely served."""

    def finished(config: Path) -> float:
        results = config.with_name("results.json")
        return (results if results.is_file() else config).stat().st_mtime

    configs = sorted(workdir.glob("*/config.yaml"), key=finished, reverse=True)
    for config in configs:
        try:
            raw = yaml.safe_load(config.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(raw, dict) and isinstance(raw.get("dataset"), str):
            data_dir = raw.get("data_dir")
            return raw["dataset"], Path(data_dir) if data_dir else None
    return None


def where_to_look(req: Request) -> tuple[str, Path | None]:
    """The dataset and data dir: flags, then FMTUNE_DATA_DIR, then the latest experiment's record."""
    recorded = latest_experiment(req.workdir)
    dataset = req.dataset or (recorded[0] if recorded else DEFAULT_DATASET)
    data_dir = req.data_dir or (Path(os.environ["FMTUNE_DATA_DIR"]) if os.environ.get("FMTUNE_DATA_DIR") else None)
    if data_dir is None and recorded and recorded[0] == dataset:
        data_dir = recorded[1]
    return dataset, data_dir


def run_predict(req: Request) -> int:
    truth: list[str] = []
    dataset, data_dir = where_to_look(req)
    try:
        class_names = data.resolve_spec(dataset, data_dir).class_names
        if req.sample:
            test, _ = data.load_test(dataset, data_dir)
            picks = np.random.default_rng(req.seed).choice(len(test), size=min(req.sample, len(test)), replace=False)
            inputs: object = test.images[picks]
            sources = [f"test[{i}]" for i in picks]
            truth = [class_names[test.labels[i]] for i in picks]
        else:
            inputs, sources = [str(p) for p in req.images], [str(p) for p in req.images]
        batch, inverted = orient(to_batch(inputs), req.invert)
        with FmtuneClient(
            req.target, model_name=req.model_name, timeout=req.timeout, class_names=class_names
        ) as client:
            if req.wait > 0:
                client.wait_until_ready(timeout=req.wait)
            predictions = client.predict(batch, version=req.version, invert=False)
    except data.DatasetNotFoundError as exc:
        err.print(f"[bold red]error:[/] {exc}\n{POINT_AT_DATA}", highlight=False)
        return 1
    except (FmtuneClientError, data.DatasetError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 1
    table = Table(title=f"{req.model_name} v{predictions[0].model_version} at {req.target}")
    for column in ["source", "predicted", "confidence", *(["true label"] if truth else [])]:
        table.add_column(column, justify="right" if column == "confidence" else "left")
    for i, (source, p) in enumerate(zip(sources, predictions, strict=True)):
        mark = [f"{truth[i]}{'' if truth[i] == p.class_name else ' ✗'}"] if truth else []
        table.add_row(f"{source} (inverted)" if inverted[i] else source, p.class_name, f"{p.confidence:.3f}", *mark)
    console = Console()
    console.print(table)
    if inverted.any():
        why = "forced by --invert" if req.invert else "light background: the model expects light on dark"
        console.print(
            f"inverted {int(inverted.sum())} of {len(inverted)} images (255 - x; {why}; --no-invert keeps them)",
            highlight=False,
        )
    if truth:
        right = sum(t == p.class_name for t, p in zip(truth, predictions, strict=True))
        console.print(f"{right}/{len(truth)} correct", highlight=False)
    return 0
