"""Classify image files, or a sample of the test set, with a served model (``fmtune predict`` shows
the answer as a table).

Everything about the model (its image shape, class names, background) comes from the server
through the SDK, so any served model works; only ``--sample`` needs a dataset, for its test images
and their labels: the latest experiment's, whatever its kind, unless the flags name an IDX one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from fmtune import config, data, layout
from fmtune.client import FmtuneClient, Prediction
from fmtune.data import DataSourceConfig
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
    truth: list[str] = field(default_factory=list)  # the dataset's names of a test sample's labels
    labels: list[int] = field(default_factory=list)  # and the labels themselves
    named: bool = True  # False: the model serves no class names, so its classes show as ids

    @property
    def inverted(self) -> np.ndarray:
        """Which images were sent as 255 - x."""
        return np.array([p.inverted for p in self.predictions], dtype=bool)

    @property
    def correct(self) -> list[bool]:
        """Per row of a test sample: did the model predict its label? (Empty for files.)"""
        if not self.labels:
            return []
        return [p.class_id == label for p, label in zip(self.predictions, self.labels, strict=True)]


class DataRecord(BaseModel):
    """Where an experiment's resolved config says its data is. Read without the rest of the
    config's validation, which checks that the dataset can be found now: the experiment whose
    data has moved since must still name its dataset, rather than let an older one's be used."""

    model_config = ConfigDict(extra="ignore")
    dataset: str
    data_dir: Path | None = None
    data: DataSourceConfig | None = None  # a folder, npz, loader or IDX source, if not ``dataset``
    seed: int = 42  # fixes the test split of a folder without a test/ folder

    def idx(self) -> tuple[str, Path | None] | None:
        """The IDX dataset and data dir it names, if its data is one."""
        if self.data is None:
            return self.dataset, self.data_dir
        if self.data.kind == "idx" and self.data.name:
            return self.data.name, self.data.path
        return None


def latest_experiment(workdir: Path) -> DataRecord | None:
    """The data record of the experiment under ``workdir`` that finished last, from its resolved
    config (written by ``fmtune tune``): that is where the pipeline found its data, and the model it
    exported is the one most likely served."""

    def finished(path: Path) -> float:
        experiment = ExperimentDir(path)
        return (experiment.results if experiment.results.is_file() else experiment.config).stat().st_mtime

    for path in sorted(layout.experiments(workdir, layout.CONFIG), key=finished, reverse=True):
        try:
            return DataRecord.model_validate(config.read_file(ExperimentDir(path).config))
        except (config.ConfigError, ValidationError):
            continue
    return None


def where_to_look(req: Request) -> tuple[str, Path | None]:
    """The IDX dataset and data dir: flags, then FMTUNE_DATA_DIR, then the latest experiment's record."""
    record = latest_experiment(req.workdir)
    recorded = record.idx() if record else None
    dataset = req.dataset or (recorded[0] if recorded else DEFAULT_DATASET)
    data_dir = req.data_dir or (Path(os.environ["FMTUNE_DATA_DIR"]) if os.environ.get("FMTUNE_DATA_DIR") else None)
    if data_dir is None and recorded and recorded[0] == dataset:
        data_dir = recorded[1]
    return dataset, data_dir


def sample_pool(req: Request) -> tuple[data.Split, tuple[str, ...]]:
    """The test images to sample, and their dataset's class names. The latest experiment's source
    unless ``--dataset`` or ``--data-dir`` says otherwise; an IDX dataset's test files alone are
    read (never a download), any other source is loaded as the experiment loaded it."""
    record = latest_experiment(req.workdir)
    source = record.data if record else None
    if record and source and source.kind != "idx" and req.dataset is None and req.data_dir is None:
        dataset = data.load_source(source, record.seed)
        return dataset.test, dataset.class_names
    name, data_dir = where_to_look(req)
    test, _ = data.load_test(name, data_dir)
    return test, data.resolve_spec(name, data_dir).class_names


def classify(req: Request) -> Classified:
    """Send the request's images (or a random sample of the test set) to the served model, made to
    its image shape; a light background is inverted first if the model wants light on dark, unless
    ``req.invert`` says otherwise. Raises DatasetError (and DatasetNotFoundError when the data is
    nowhere) or FmtuneClientError."""
    truth: list[str] = []
    labels: list[int] = []
    if req.sample:
        test, class_names = sample_pool(req)
        picks = np.random.default_rng(req.seed).choice(len(test), size=min(req.sample, len(test)), replace=False)
        inputs: object = test.images[picks]
        sources = [f"test[{i}]" for i in picks]
        labels = [int(test.labels[i]) for i in picks]
        truth = [class_names[label] if label < len(class_names) else str(label) for label in labels]
    else:
        inputs, sources = [str(p) for p in req.images], [str(p) for p in req.images]
    with FmtuneClient(req.target, model_name=req.model_name, timeout=req.timeout) as client:
        if req.wait > 0:
            client.wait_until_ready(timeout=req.wait)
        predictions = client.predict(inputs, version=req.version, invert=req.invert)
        named = client.model_info(predictions[0].model_version).class_names is not None  # cached: no call
    return Classified(sources, predictions, truth, labels, named)
