"""Classify image files, or a sample of the test set, with a served model (``fmtune predict`` shows
the answer as a table)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from fmtune import config, data, layout
from fmtune.client import FmtuneClient, Prediction
from fmtune.client.images import orient, to_batch
from fmtune.layout import ExperimentDir

DEFAULT_DATASET = "fashion_mnist"


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


@dataclass(frozen=True)
class Classified:
    """The served model's answer, one row per image."""

    sources: list[str]  # a file, or test[i]
    predictions: list[Prediction]
    inverted: np.ndarray  # which images were sent as 255 - x
    truth: list[str] = field(default_factory=list)  # the class names of a test sample's labels


class DataRecord(BaseModel):
    """Where an experiment's resolved config says its data is. Read without the rest of the
    config's validation, which checks that the dataset can be found now: the experiment whose
    data has moved since must still name its dataset, rather than let an older one's be used."""

    model_config = ConfigDict(extra="ignore")
    dataset: str
    data_dir: Path | None = None


def latest_experiment(workdir: Path) -> tuple[str, Path | None] | None:
    """(dataset, data_dir) of the experiment under ``workdir`` that finished last, from its resolved
    config (written by ``fmtune tune``): that is where the pipeline found its data, and the model it
    exported is the one most likely served."""

    def finished(path: Path) -> float:
        experiment = ExperimentDir(path)
        return (experiment.results if experiment.results.is_file() else experiment.config).stat().st_mtime

    for path in sorted(layout.experiments(workdir, layout.CONFIG), key=finished, reverse=True):
        try:
            record = DataRecord.model_validate(config.read_file(ExperimentDir(path).config))
        except (config.ConfigError, ValidationError):
            continue
        return record.dataset, record.data_dir
    return None


def where_to_look(req: Request) -> tuple[str, Path | None]:
    """The dataset and data dir: flags, then FMTUNE_DATA_DIR, then the latest experiment's record."""
    recorded = latest_experiment(req.workdir)
    dataset = req.dataset or (recorded[0] if recorded else DEFAULT_DATASET)
    data_dir = req.data_dir or (Path(os.environ["FMTUNE_DATA_DIR"]) if os.environ.get("FMTUNE_DATA_DIR") else None)
    if data_dir is None and recorded and recorded[0] == dataset:
        data_dir = recorded[1]
    return dataset, data_dir


def classify(req: Request) -> Classified:
    """Send the request's images (or a random sample of the test set) to the served model; a light
    background is inverted first unless ``req.invert`` says otherwise. Raises DatasetError (and
    DatasetNotFoundError when the data is nowhere) or FmtuneClientError."""
    dataset, data_dir = where_to_look(req)
    class_names = data.resolve_spec(dataset, data_dir).class_names
    truth: list[str] = []
    if req.sample:
        test, _ = data.load_test(dataset, data_dir)
        picks = np.random.default_rng(req.seed).choice(len(test), size=min(req.sample, len(test)), replace=False)
        inputs: object = test.images[picks]
        sources = [f"test[{i}]" for i in picks]
        truth = [class_names[test.labels[i]] for i in picks]
    else:
        inputs, sources = [str(p) for p in req.images], [str(p) for p in req.images]
    batch, inverted = orient(to_batch(inputs), req.invert)
    with FmtuneClient(req.target, model_name=req.model_name, timeout=req.timeout, class_names=class_names) as client:
        if req.wait > 0:
            client.wait_until_ready(timeout=req.wait)
        predictions = client.predict(batch, version=req.version, invert=False)
    return Classified(sources, predictions, inverted, truth)
