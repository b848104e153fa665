import html
from datetime import datetime, timedelta, timezone
from pathlib import Path

from typer.testing import CliRunner

from fmtune import results
from fmtune.cli import app
from fmtune.config import Objective
from fmtune.report import html_report, plot
from fmtune.results import Results
from fmtune.trials import Epoch, TrialRecord


def sample() -> Results:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    trials = [
        TrialRecord(
            trial_id=str(i),
            status=status,
            worker=f"tuner{i % 2}",
            score=score,
            hyperparameters={"units_0": 64 * (i + 1), "learning_rate": 10 ** -(i + 2), "activation": act},
            history=[Epoch(epoch=0, metrics={"val_accuracy": score or 0.0})],
            seconds=30.0,
            started_at=start + timedelta(seconds=20 * i),
            ended_at=start + timedelta(seconds=20 * i + 30),
            message="Traceback\nValueError: <bad>" if score is None else None,
        )
        for i, (status, score, act) in enumerate(
            [
                ("COMPLETED", 0.85, "relu"),
                ("STOPPED", 0.40, "tanh"),
                ("COMPLETED", 0.88, "relu"),
                ("FAILED", None, "tanh"),
            ]
        )
    ]
    return Results(
        experiment="demo",
        dataset="fashion_mnist",
        family="mlp",
        algorithm="random",
        objective=Objective(),
        max_trials=4,
        config_digest="x",
        trials=trials,
        best_trial_id="2",
        best_hyperparameters=trials[2].hyperparameters,
        tuning_seconds=90,
    )


def test_png_and_html_are_written(tmp_path: Path) -> None:
    res = sample()
    png = plot(res, tmp_path / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    page = html_report(res, png, tmp_path / "report.html").read_text()
    assert page.count("<tr>") == 1 + 4 and "data:image/png;base64," in page
    assert "ValueError: &lt;bad&gt;" in page  # the error is shown, and escaped
    assert page.index(">2</td>") < page.index(">0</td>")  # best first


def test_report_command_writes_beside_results(tmp_path: Path) -> None:
    results.save(sample(), tmp_path / "demo")
    done = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "demo" / "report.png").is_file() and (tmp_path / "demo" / "report.html").is_file()


def test_results_print_markup_characters_as_text(tmp_path: Path) -> None:
    """A worker id or hyperparameter value holding "[/]" is text, not rich markup that fails to parse."""
    res = sample()
    res.trials[2] = res.trials[2].model_copy(
        update={"worker": "tuner[/]", "hyperparameters": {**res.trials[2].hyperparameters, "activation": "[/bold]"}}
    )
    res.best_hyperparameters = res.trials[2].hyperparameters
    results.save(res, tmp_path / "demo")
    done = CliRunner().invoke(app, ["results", str(tmp_path / "demo" / "results.json")])
    assert done.exit_code == 0, done.output
    assert "tuner[/]" in done.output and "activation=[/bold]" in done.output


def test_an_error_naming_markup_characters_prints_them_as_text(tmp_path: Path) -> None:
    """A path holding "[bold]" is named in the error as it is, not read as a style and dropped."""
    where = tmp_path / "runs[bold]"
    where.mkdir()
    done = CliRunner().invoke(app, ["results", str(where)])
    assert done.exit_code == 1, done.output
    assert f"no results.json under {where}" in " ".join(done.output.split())


HOSTILE = '<script>alert("x")</script>&'


def test_every_text_the_page_shows_is_escaped_once(tmp_path: Path) -> None:
    """Names, worker ids and hyperparameters come from configs and workers, not from fmtune."""
    res = sample()
    best = {**res.trials[2].hyperparameters, "activation": f"act{HOSTILE}", f"key{HOSTILE}": 1}
    res.trials[2] = res.trials[2].model_copy(
        update={"trial_id": f"id{HOSTILE}", "worker": f"worker{HOSTILE}", "hyperparameters": best}
    )
    res = res.model_copy(
        update={
            "experiment": f"name{HOSTILE}",
            "dataset": f"data{HOSTILE}",
            "family": f"family{HOSTILE}",
            "algorithm": f"algo{HOSTILE}",
            "best_trial_id": f"id{HOSTILE}",
            "best_hyperparameters": best,
        }
    )
    png = tmp_path / "report.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    page = html_report(res, png, tmp_path / "report.html").read_text()
    safe = html.escape(HOSTILE)
    assert "<script" not in page and "&amp;lt;" not in page
    assert page.count(f"name{safe}") == 2  # the title and the heading
    for where in ("data", "family", "algo", "worker"):
        assert page.count(f"{where}{safe}") == 1, where
    assert page.count(f"id{safe}") == 2  # the best trial, and its row
    assert page.count(f"activation=act{safe}") == 2 and page.count(f"key{safe}=1") == 2  # its row, and the best
