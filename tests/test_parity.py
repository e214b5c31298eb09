"""The structural redesign (issue 11) changed no result: today's code reproduces the metrics.json that the code
before it wrote, for classification (calibration, self-training; reweighing and a fairness audit) and token
classification on their demo data with tiny random models (tests/parity.py; goldens in tests/golden/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.parity import CASES, GOLDEN, REPO, differences, run_case

CHECKED = ["classification", "classification-fair", "token-classification"]


@pytest.mark.parametrize("name", CHECKED)
def test_metrics_equal_the_code_before_the_redesign(name: str, tmp_path: Path) -> None:
    assert name in CASES
    expected = json.loads((GOLDEN / f"parity-{name}.json").read_text())
    actual = run_case(name, tmp_path, REPO / "src")
    diffs = differences(expected, actual)
    assert not diffs, f"{name}: {len(diffs)} differences from the golden run:\n" + "\n".join(diffs[:30])


def test_the_comparison_sees_a_changed_number() -> None:
    """The tolerance is a rounding allowance, not a blind spot: a changed metric or a missing key is reported."""
    golden = json.loads((GOLDEN / "parity-classification.json").read_text())
    changed = json.loads(json.dumps(golden))
    changed["tuned"]["accuracy"] += 0.01
    del changed["validation"]
    diffs = differences(golden, changed)
    assert any("tuned.accuracy" in d for d in diffs) and any(".validation: missing now" in d for d in diffs)
