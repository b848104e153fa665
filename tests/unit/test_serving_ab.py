"""The serving A/B bench's arithmetic: paired differences, not the difference of two medians."""

from __future__ import annotations

import pytest

from tests.bench.serving_ab import markdown, paired


def test_a_change_is_judged_on_the_rounds_paired_differences() -> None:
    # The host slows down over the rounds; "after" is 0.1 ms slower than "before" in each round.
    before = [1.0, 1.5, 2.0, 2.5, 3.0]
    after = [1.1, 1.6, 2.1, 2.6, 3.1]
    result = paired(before, after)
    assert result["difference_ms"] == pytest.approx(0.1)
    assert result["difference_q1_ms"] == pytest.approx(0.1) and result["difference_q3_ms"] == pytest.approx(0.1)
    assert (result["after_slower_in"], result["pairs"]) == (5, 5)
    assert (result["before_p50_ms"], result["after_p50_ms"]) == (2.0, 2.1)


def test_rounds_of_unequal_numbers_cannot_be_paired() -> None:
    with pytest.raises(ValueError):
        paired([1.0, 2.0, 3.0], [1.0, 2.0])


def test_the_report_names_both_builds_and_each_case() -> None:
    case = paired([1.0, 2.0, 3.0], [1.2, 1.9, 3.3])
    report = {
        "command": "c",
        "machine": "m",
        "before": "abc123",
        "after": "def456",
        "rounds": 3,
        "calls": 10,
        "models": {"mlp": {"rest_batch1": case}},
    }
    text = markdown(report)
    assert "at abc123 (before) and at def456 (after)" in text
    assert "| mlp | rest batch1 | 2.000 ms | 1.900 ms | +0.200 ms (-0.100 to +0.300) | 2 of 3 |" in text
