"""benchmarks/lr_finder_check.py's good range: the grid rates within the tolerance of the best score."""

from __future__ import annotations

import pytest
from benchmarks.lr_finder_check import check, good_range, grid_points


def _row(setting: str, tuned: float, auto_lr: float | None = None) -> dict:
    return {"scenario": "s", "setting": setting, "tuned": tuned,
            "auto": {"training.learning_rate": auto_lr} if auto_lr else {}}


def test_only_rows_that_vary_the_learning_rate_alone_count() -> None:
    rows = [_row("auto", 0.70, 1e-4), _row("lr=3e-5", 0.60), _row("lr=3e-4", 0.69), _row("before", 0.4),
            _row("lr=1e-3,epochs=1", 0.1), {"scenario": "other", "setting": "lr=1e-5", "tuned": 0.9}]
    assert grid_points(rows, "s") == {1e-4: 0.70, 3e-5: 0.60, 3e-4: 0.69}


def test_the_suggestion_must_lie_between_the_lowest_and_highest_good_rate() -> None:
    points = {1e-5: 0.50, 3e-5: 0.68, 1e-4: 0.70, 3e-4: 0.69, 1e-3: 0.30}
    assert good_range(points, 0.02) == (3e-5, 3e-4, 0.70)
    assert check("s", {"suggestion": 8e-5}, points, 0.02)["inside"] is True
    assert check("s", {"suggestion": 1e-6}, points, 0.02)["inside"] is False
    assert check("s", {"suggestion": None}, points, 0.02)["inside"] is False


def test_the_interpolated_range_reaches_where_the_log_rate_line_crosses_best_minus_tolerance() -> None:
    from benchmarks.lr_finder_check import interpolated_good_range

    points = {1e-4: 0.70, 1e-3: 0.80, 1e-2: 0.70}  # one good grid rate; the line crosses 0.78 a fifth of the way
    low, high = interpolated_good_range(points, 0.02)
    assert low == pytest.approx(10 ** -3.2) and high == pytest.approx(10 ** -2.8)
    result = check("s", {"suggestion": 1e-3 / 1.4, "steepest_lr": 4e-3}, points, 0.02)
    assert result["inside"] is False and result["inside_interp_by_rule"]["suggestion"] is True
    assert result["inside_interp_by_rule"]["steepest"] is False
    assert interpolated_good_range({1e-4: 0.5, 2e-4: 0.5}, 0.02) == (1e-4, 2e-4)  # never past the grid's ends
