"""``fmtune predict``: classify image files, or a sample of the test set, with any served model, and
show the answer as a table, with the class names the model serves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fmtune.cli.common import fail

POINT_AT_DATA = "point fmtune predict at the folder of the IDX files with --data-dir DIR or FMTUNE_DATA_DIR=DIR"
NO_NAMES = "version {version} serves no class names (no fmtune_card signature): classes are shown by id"


def predict_cmd(
    images: Annotated[
        list[Path] | None, typer.Argument(help="image files (PNG, JPEG, ...) of any size: converted to the model's")
    ] = None,
    target: Annotated[str, typer.Option(help="gRPC HOST:PORT, or REST http://HOST:PORT")] = "localhost:8500",
    sample: Annotated[int, typer.Option(min=0, help="classify N random test-set images instead")] = 0,
    model_name: Annotated[str, typer.Option(help="served model name")] = "fmtune",
    dataset: Annotated[
        str | None, typer.Option(help="IDX dataset for --sample (default: the latest experiment's data, any kind)")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="IDX dataset directory for --sample (else FMTUNE_DATA_DIR, else where the latest experiment found it)",
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
            help="send images as 255 - x (default: those with a light border, if the model's dataset is light on dark)",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[float, typer.Option(min=0, help="seconds to wait for the model to be AVAILABLE first")] = 0.0,
) -> None:
    """Classify images with a served model and print a table."""
    from fmtune import data
    from fmtune.client import FmtuneClientError
    from fmtune.predict import Request, classify

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
    try:
        answer = classify(request)
    except data.DatasetNotFoundError as exc:
        fail(f"{exc}\n{POINT_AT_DATA}")
    except (FmtuneClientError, data.DatasetError) as exc:
        fail(str(exc))
    version = answer.predictions[0].model_version
    table = Table(title=f"{model_name} v{version} at {target}")
    truth, correct = answer.truth, answer.correct
    for column in ["source", "predicted", "confidence", *(["true label"] if truth else [])]:
        table.add_column(column, justify="right" if column == "confidence" else "left")
    for i, (source, p) in enumerate(zip(answer.sources, answer.predictions, strict=True)):
        mark = [f"{truth[i]}{'' if correct[i] else ' ✗'}"] if truth else []
        shown = f"{source} (inverted)" if p.inverted else source
        table.add_row(shown, p.class_name, f"{p.confidence:.3f}", *mark)
    console = Console()
    console.print(table)
    if not answer.named:
        console.print(NO_NAMES.format(version=version), highlight=False)
    inverted = answer.inverted
    if inverted.any():
        why = "forced by --invert" if invert else "light background: the model expects light on dark"
        console.print(
            f"inverted {int(inverted.sum())} of {len(inverted)} images (255 - x; {why}; --no-invert keeps them)",
            highlight=False,
        )
    if truth:
        console.print(f"{sum(correct)}/{len(truth)} correct", highlight=False)
