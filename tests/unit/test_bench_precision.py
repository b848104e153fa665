"""The precision bench: one measurement really trains, and the report reads its rounds."""

from __future__ import annotations

from tests.bench import precision


def test_a_measurement_trains_the_case_in_the_precision_asked() -> None:
    # In a process of its own, as in the bench: TensorFlow's threads are set before it starts.
    assert 0 < precision.run_one("quick (mlp)", "mixed_bfloat16", steps=2) < 10


def test_the_report_gives_each_case_its_median_range_and_speed_up() -> None:
    results = {
        "cpu": "a CPU",
        "native_bfloat16": True,
        "rounds": 3,
        "steps": 10,
        "cases": {
            "standard (vgg)": {"batch": 64, "float32": [0.08, 0.09, 0.10], "mixed_bfloat16": [0.05, 0.045, 0.06]}
        },
    }
    text = precision.render(results)
    assert "| standard (vgg) | 64 | 84.4 (75.0-93.8) | 46.9 (42.2-56.2) | 1.80x |" in text
