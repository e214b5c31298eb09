"""Would more labels help? (evaluate/data_curve.py): the power-law fit, the subsets, and one --data-curve run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tailorlm.evaluate.data_curve import extrapolate, fit_power_law, subset_rows
from tests.helpers import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_fit_recovers_a_known_power_law_and_its_extrapolation() -> None:
    sizes = [100, 200, 400]
    b, c = 0.9, 0.35
    f1 = [1 - b * n ** -c for n in sizes]  # a synthetic task whose macro-F1 follows error = 0.9 n^-0.35
    fit = extrapolate(sizes, f1, greater_is_better=True)
    assert fit["b"] == pytest.approx(b, rel=1e-9) and fit["c"] == pytest.approx(c, rel=1e-9)
    assert fit["predicted"][2] == pytest.approx(1 - b * 800 ** -c, abs=1e-9)
    assert fit["predicted"][4] == pytest.approx(1 - b * 1600 ** -c, abs=1e-9)


def test_fit_with_noise_stays_close_and_a_wrong_way_slope_predicts_no_gain() -> None:
    rng = np.random.default_rng(0)
    sizes = np.array([50, 100, 200, 400, 800, 1600])
    errors = 0.5 * sizes ** -0.4 * np.exp(rng.normal(0, 0.03, size=(200, len(sizes))))  # 3% multiplicative noise
    b, c = fit_power_law(sizes, errors)
    assert np.median(c) == pytest.approx(0.4, abs=0.02) and np.median(b) == pytest.approx(0.5, rel=0.1)
    worse = extrapolate([100, 200, 400], [0.80, 0.78, 0.76], greater_is_better=True)  # noise: more data, worse
    assert worse["c"] == 0.0 and worse["predicted"][2] <= 0.80
    perplexity = extrapolate([100, 200, 400], [40.0, 30.0, 22.5], greater_is_better=False)
    assert perplexity["predicted"][2] == pytest.approx(22.5 * 0.75, rel=0.02)  # lower is better: falls further


def test_subsets_are_stratified_and_nested() -> None:
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    quarter, half = (set(subset_rows(labels, len(labels), f, seed=7)) for f in (0.25, 0.5))
    assert quarter <= half
    for rows, share in ((quarter, 0.25), (half, 0.5)):
        for label, n in (("a", 60), ("b", 30), ("c", 10)):
            assert sum(labels[i] == label for i in rows) == max(1, round(share * n))
    assert len(subset_rows(None, 40, 0.25, seed=1)) == 10


def test_data_curve_run_writes_the_curve_the_answer_and_the_plot(tiny_recipe: Path) -> None:
    code, stdout, stderr = run_cli(["run", str(tiny_recipe), "--data-curve", "--set", "baseline.linear_probe=false"])
    assert code == 0, stderr
    out = Path(yaml.safe_load(tiny_recipe.read_text())["output_dir"])
    curve = json.loads((out / "data_curve.json").read_text())
    main = json.loads((out / "metrics.json").read_text())
    assert main["data_curve"] == curve and curve["metric"] == "f1_macro"
    rows = [p["train_rows"] for p in curve["points"]]
    assert rows[-1] == main["data"]["train"] and rows[0] < rows[1] < rows[2]
    assert [p["fraction"] for p in curve["points"]] == [0.25, 0.5, 1.0]
    for frac, n in (("frac-25", rows[0]), ("frac-50", rows[1])):
        sub = json.loads((out / "data-curve" / frac / "metrics.json").read_text())
        assert sub["data"]["train"] == n and sub["data"]["test"] == main["data"]["test"]  # same test split
        assert sub["tuned"]["f1_macro"] == pytest.approx(curve["points"][0 if frac == "frac-25" else 1]["metric"])
    ext = {e["scale"]: e for e in curve["extrapolation"]}
    assert ext[2]["train_rows"] == 2 * rows[-1] and ext[4]["train_rows"] == 4 * rows[-1]
    assert ext[2]["low"] <= ext[2]["metric"] <= ext[2]["high"]
    assert curve["answer"].startswith("More labels would likely") and "at 2x the labels (176 rows)" in curve["answer"]
    assert [p["run_dir"] for p in curve["points"]] == ["data-curve/frac-25", "data-curve/frac-50", "."]
    assert f"data curve: {curve['answer']}" in " ".join(stdout.split())
    assert (out / "data_curve.svg").read_text().startswith("<svg")
    html = (out / "report.html").read_text()
    assert 'id="data-curve"' in html and "Would more labels help?" in html and "data:image/svg+xml" in html
    assert curve["answer"].split(" (")[0] in (out / "report.md").read_text().replace("\\", "")


@pytest.mark.parametrize(("flags", "message"), [
    (["--set", "validation.kfold=3"], "not with validation.kfold"),
    (["--seeds", "2"], "runs with one seed"),
])
def test_data_curve_refuses_kfold_and_seeds_before_training(tiny_recipe: Path, flags: list[str], message: str) -> None:
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--data-curve", *flags])
    assert code == 2 and message in stderr and "Traceback" not in stderr
    assert not (Path(yaml.safe_load(tiny_recipe.read_text())["output_dir"]) / "metrics.json").exists()
