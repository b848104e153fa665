"""``fmtune predict``: classify files or test-set samples with a served model, as a table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fmtune import data
from fmtune.client import FmtuneClient, FmtuneClientError

err = Console(stderr=True)


def run_predict(
    target: str,
    model_name: str,
    dataset: str,
    images: list[Path],
    sample: int,
    data_dir: Path | None,
    version: int | None,
    timeout: float,
    seed: int | None,
) -> int:
    truth: list[str] = []
    try:
        if sample:
            test = data.load(dataset, data_dir, download=False).test
            picks = np.random.default_rng(seed).choice(len(test), size=min(sample, len(test)), replace=False)
            inputs: object = test.images[picks]
            sources = [f"test[{i}]" for i in picks]
            names = data.DATASETS[dataset].class_names if dataset in data.DATASETS else None
            truth = [names[test.labels[i]] if names else str(test.labels[i]) for i in picks]
        else:
            inputs, sources = [str(p) for p in images], [str(p) for p in images]
        with FmtuneClient(target, model_name=model_name, timeout=timeout, dataset=dataset) as client:
            predictions = client.predict(inputs, version=version)
    except (FmtuneClientError, data.DatasetError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 1
    table = Table(title=f"{model_name} v{predictions[0].model_version} at {target}")
    for column in ["source", "predicted", "confidence", *(["true label"] if truth else [])]:
        table.add_column(column, justify="right" if column == "confidence" else "left")
    for i, (source, p) in enumerate(zip(sources, predictions, strict=True)):
        mark = [f"{truth[i]}{'' if truth[i] == p.class_name else ' ✗'}"] if truth else []
        table.add_row(source, p.class_name, f"{p.confidence:.3f}", *mark)
    console = Console()
    console.print(table)
    if truth:
        right = sum(t == p.class_name for t, p in zip(truth, predictions, strict=True))
        console.print(f"{right}/{len(truth)} correct", highlight=False)
    return 0
