"""The elpv bench's pure parts: grades, the split, the downsizing, the scores and the report, on
made-up arrays; the real images only where the elpv-dataset package (`make bench`) is installed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import yaml

from fmtune.config import Objective
from fmtune.results import Results, RetrainRecord
from fmtune.trials import Epoch, TrialRecord
from tests.bench import elpv

# elpv's own mix: (grade, type) -> cells.
MIX = {(0, "mono"): 588, (0, "poly"): 920, (1, "mono"): 117, (1, "poly"): 178}
MIX |= {(2, "mono"): 56, (2, "poly"): 50, (3, "mono"): 313, (3, "poly"): 402}


def cells() -> tuple[np.ndarray, np.ndarray]:
    """Labels and types in elpv's proportions, shuffled."""
    labels = np.concatenate([np.full(n, grade) for (grade, _), n in MIX.items()])
    types = np.concatenate([np.full(n, kind) for (_, kind), n in MIX.items()])
    order = np.random.default_rng(0).permutation(len(labels))
    return labels[order], types[order]


def test_probabilities_are_the_four_grades() -> None:
    assert elpv.grades(np.array([0.0, 1 / 3, 0.6666666666666666, 1.0])).tolist() == [0, 1, 2, 3]
    assert elpv.grades(np.array([1.0, 0.0])).dtype == np.int64
    with pytest.raises(ValueError, match="other than"):
        elpv.grades(np.array([0.0, 0.5]))


def test_the_split_holds_out_a_quarter_of_each_grade_and_type() -> None:
    labels, types = cells()
    train, test = elpv.split(labels, types)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(labels)
    assert abs(len(test) - len(labels) / 4) <= 4
    for (grade, kind), n in MIX.items():
        held = np.sum((labels[test] == grade) & (types[test] == kind))
        assert abs(held - n / 4) <= 1, (grade, kind, held)


def test_the_split_is_fixed_by_its_seed() -> None:
    labels, types = cells()
    first, again, other = elpv.split(labels, types), elpv.split(labels, types), elpv.split(labels, types, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])


def test_downsizing_keeps_uint8_grayscale_and_the_picture() -> None:
    images = np.zeros((3, 300, 300), np.uint8)
    images[:, :, 150:] = 200  # the right half bright
    small = elpv.downsized(images, 64)
    assert small.shape == (3, 64, 64) and small.dtype == np.uint8
    assert small[:, :, :28].max() < 10 and small[:, :, 36:].min() > 190


def test_scores_count_grades_2_and_3_as_defective() -> None:
    truth = np.array([0, 1, 2, 3, 3, 0])
    predicted = np.array([0, 0, 3, 3, 1, 2])
    s = elpv.scores(truth, predicted)
    assert s["accuracy"] == pytest.approx(2 / 6)
    assert s["binary_accuracy"] == pytest.approx(4 / 6)  # 0~1 and 2~3 agree; 3->1 and 0->2 do not
    assert s["confusion"][3] == [0, 1, 0, 1] and sum(map(sum, s["confusion"])) == 6


def test_majority_is_the_commonest_class_s_share() -> None:
    floor = elpv.majority(np.array([0, 0, 0, 1, 2, 3, 3, 3]))
    assert floor == {"4 grades": 3 / 8, "functional vs defective": 4 / 8}


def fabricated(test_accuracy: float) -> Results:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    trials = [
        TrialRecord(
            trial_id=str(i),
            status="COMPLETED",
            hyperparameters={"filters": 32},
            score=score,
            history=[Epoch(epoch=e, metrics={"val_accuracy": score}) for e in range(epochs)],
            stopped_by=stopped,
            started_at=start,
            ended_at=start + timedelta(seconds=60 * (i + 1)),
        )
        for i, (epochs, stopped, score) in enumerate([(3, "Asha", 0.6), (27, None, 0.7), (9, "budget", 0.72)])
    ]
    retrain = RetrainRecord(
        hyperparameters={"filters": 32},
        train_samples=1970,
        holdout_samples=0,
        epochs_run=30,
        best_epoch=29,
        history=[],
        epoch_seconds=[10.0],
        holdout_metrics={},
        test_loss=0.8,
        test_accuracy=test_accuracy,
        seconds=300.0,
    )
    return Results(
        experiment="elpv",
        dataset="elpv",
        family="cnn",
        algorithm="bayesian",
        objective=Objective(),
        max_trials=200,
        config_digest="x",
        trials=trials,
        best_trial_id="2",
        best_hyperparameters={"filters": 32},
        tuning_seconds=600.0,
        budget_minutes=20,
        timing={"startup": 10.0, "search": 600.0, "retrain": 500.0, "export": 5.0, "total": 1150.0},
        retrain=retrain,
        test_accuracy=test_accuracy,
    )


def test_the_report_puts_the_runs_beside_the_published_figures() -> None:
    truth = np.array([0, 0, 0, 1, 2, 3, 3, 3])
    rows = []
    for accuracy, predicted in ((0.75, [0, 0, 0, 0, 3, 3, 3, 2]), (0.625, [0, 0, 1, 0, 3, 3, 0, 3])):
        row = elpv.run_row(fabricated(accuracy), 1170.0, 1.7e9, [3, 9, 27], elpv.PRESET)
        rows.append(elpv.with_export(row, elpv.scores(truth, np.array(predicted))))
    data = elpv.Splits(np.zeros((8, 64, 64), np.uint8), truth, np.zeros((8, 64, 64), np.uint8), truth)
    report = {
        "command": elpv.COMMAND,
        "machine": "x86_64, 2 cores",
        "budget_minutes": 20,
        "preset": yaml.safe_load(elpv.CONFIG.read_text()),
        "data": elpv.data_record(data),
        "published": [p.model_dump() for p in elpv.PUBLISHED],
        "runs": rows,
        "summary": elpv.report_summary(rows),
    }
    text = elpv.markdown(report)
    assert "| 4 grades | **0.6875 (0.6250-0.7500)** | 0.8350 | lightweight CNN | [2] |" in text
    assert "| functional vs defective | **0.9375 (0.8750-1.0000)** | 0.8842 | CNN on a GPU | [1] |" in text
    assert "|  |  | 0.8244 | SVM on hand-crafted features | [1] |" in text
    assert "| 2 | " in text and "| median | | | 19.5 |" in text
    assert "| defective | 1 | 0 | 0 | 2 |" in text  # run 2's confusion: 3 -> 0 once, 3 -> 3 twice
    assert "the vgg family, bayesian search, ASHA judging trials at epochs 3, 9 of 27" in text
    assert "Solar Energy 185 (2019) 455-468" in text and "2663150" in text and "were not verified" in text


@pytest.mark.slow  # 2,624 PNGs decoded: about 5 s
def test_the_real_images_load_as_fmtune_takes_them() -> None:
    pytest.importorskip("elpv_dataset")
    data = elpv.load()
    assert data["x_train"].shape[1:] == (elpv.SIZE, elpv.SIZE) and data["x_train"].dtype == np.uint8
    assert len(data["y_train"]) + len(data["y_test"]) == 2624
    counts = np.bincount(np.concatenate([data["y_train"], data["y_test"]]))
    assert counts.tolist() == [1508, 295, 106, 715]
    assert data["class_names"] == list(elpv.CLASS_NAMES)
