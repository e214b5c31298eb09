"""adapt.instance_weighting (adapt/weighting.py): on a constructed shift whose answer is known, target-like source
rows get the larger weights, the effective sample size is reported and below n, and the weights reach the loss
(multiplied into fairness reweighing's column, never overwriting it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from rich.console import Console

from tailorlm.adapt.weighting import (
    apply_weights,
    density_ratio_weights,
    domain_probabilities,
    effective_sample_size,
    overlap_caution,
    ratio_capped_at_mean_multiple,
)
from tests.conftest import sentiment_rows
from tests.helpers import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MARKERS = "zeppelin quartz tundra"  # words only the target domain (and the target-like half of the source) uses


def test_target_like_feature_rows_get_larger_weights() -> None:
    rng = np.random.default_rng(0)
    like = rng.normal(loc=2.0, size=(100, 4))     # half the source looks like the target
    unlike = rng.normal(loc=-2.0, size=(100, 4))
    target = rng.normal(loc=2.0, size=(150, 4))
    source = np.concatenate([like, unlike])
    p = domain_probabilities(source, target, seed=0)
    weights = density_ratio_weights(p, len(source), len(target), clip=10.0)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[:100].mean() > 5 * weights[100:].mean()
    ess = effective_sample_size(weights)
    assert 1.0 < ess < len(source)
    assert effective_sample_size(np.ones(7)) == pytest.approx(7.0)


def test_clip_caps_the_normalised_weights_at_a_multiple_of_the_mean() -> None:
    """The cap holds after normalising: one near-certain target-like row weighs exactly ``clip`` times the mean,
    and the others keep their ratio to one another (clipping the raw ratio first let weights reach 2x the cap)."""
    p = np.array([0.999999, 0.8, 0.5, 0.5, 0.5, 0.2])
    weights = density_ratio_weights(p, 6, 6, clip=2.0)
    assert weights.mean() == pytest.approx(1.0)
    assert weights.max() == pytest.approx(2.0)
    assert weights[2] == pytest.approx(weights[3]) and weights[2] / weights[5] == pytest.approx(4.0)
    assert weights[1] <= 2.0 + 1e-9


@pytest.mark.parametrize("seed", range(5))
def test_no_weight_exceeds_the_cap_and_uncapped_ratios_pass_unchanged(seed: int) -> None:
    ratio = np.random.default_rng(seed).lognormal(sigma=2.0, size=200)
    weights = ratio_capped_at_mean_multiple(ratio, 5.0)
    assert weights.mean() == pytest.approx(1.0) and weights.max() == pytest.approx(5.0)
    below = ratio < np.sort(ratio)[-1] * 0.01
    assert np.allclose(weights[below] / ratio[below], (weights[below] / ratio[below])[0])
    mild = np.array([1.0, 2.0, 3.0])
    assert np.allclose(ratio_capped_at_mean_multiple(mild, 10.0), mild / 2.0)


def test_weights_multiply_an_existing_weight_column() -> None:
    from datasets import Dataset

    from tailorlm.tasks.base import EncodedSplits

    encoded = EncodedSplits(train=Dataset.from_dict({"x": [1, 2, 3], "weight": [0.5, 1.0, 2.0]}), validation=None,
                            max_length=8)
    apply_weights(encoded, np.array([2.0, 1.0, 0.5]))
    assert encoded.train["weight"] == pytest.approx([1.0, 1.0, 1.0])
    fresh = EncodedSplits(train=Dataset.from_dict({"x": [1, 2]}), validation=None, max_length=8)
    apply_weights(fresh, np.array([0.5, 1.5]))
    assert fresh.train["weight"] == pytest.approx([0.5, 1.5])
    with pytest.raises(RuntimeError, match="2 instance weights for 3 encoded training rows"):
        apply_weights(encoded, np.ones(2))


def _shifted_files(work: Path) -> tuple[Path, Path]:
    """Source reviews, half of them with the target's marker words (and a region for reweighing); target texts
    that all carry the markers."""
    rows = sentiment_rows(160)
    for i, row in enumerate(rows):
        row["region"] = "north" if i % 3 else "south"
        if i % 4 < 2:
            row["text"] = f"{row['text']} {MARKERS}"
    source = work / "source.csv"
    pd.DataFrame(rows).to_csv(source, index=False)
    target = work / "target.txt"
    lines = [f"{MARKERS} {row['text']} {MARKERS}" for row in sentiment_rows(120, seed=7)]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return source, target


def _recipe(work: Path, tiny_model_dir: Path, **extra: object) -> dict:
    source, target = _shifted_files(work)
    return {
        "task": "classification", "output_dir": str(work / "out"), "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(source), "split": {"validation": 0.2, "test": 0.25}},
        "training": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "early_stopping_patience": None},
        "baseline": {"linear_probe": False, "zero_shot": False},
        "adapt": {"target_unlabeled": str(target), "instance_weighting": True, "weight_clip": 20.0},
        **extra,
    }


def test_marked_source_rows_weigh_more_and_reweighing_is_kept(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tailorlm.data.load import extra_column
    from tailorlm.fairness.audit import group_names
    from tailorlm.fairness.reweigh import reweighing
    from tailorlm.recipe import Recipe
    from tailorlm.run import stages_through
    from tailorlm.rundir import RunDir
    from tailorlm.stages.context import RunContext
    from tailorlm.stages.runner import run_stages

    recipe = Recipe.model_validate(_recipe(tmp_path, tiny_model_dir, fairness={
        "group_column": "region", "mitigation": "reweight"}))
    ctx = RunContext(recipe, Console(quiet=True), RunDir.create(tmp_path / "out"))
    metrics = run_stages(stages_through("domain_weights"), ctx)
    train = ctx.data.train
    report = metrics["adapt"]["instance_weighting"]
    fairness, _ = reweighing(group_names(train[extra_column("region")].tolist()), [str(v) for v in train["label"]])
    combined = np.asarray(ctx.encoded.train["weight"])
    instance = combined / fairness
    assert instance.mean() == pytest.approx(1.0)  # the column is the product: reweighing x instance weights
    marked = np.array([MARKERS in text for text in train["text"]])
    assert 0 < marked.sum() < len(marked)
    assert instance[marked].mean() > 1.5 * instance[~marked].mean()
    assert report["rows"] == len(train) and 1.0 < report["effective_sample_size"] < len(train)
    assert report["ess_share"] == pytest.approx(report["effective_sample_size"] / len(train), abs=1e-5)
    assert sum(report["histogram"]["counts"]) == len(train) and len(report["histogram"]["bins"]) == 11
    assert sum(MARKERS in row["text"] for row in report["most_target_like"]) >= 4
    assert not any(MARKERS in row["text"] for row in report["least_target_like"])
    assert report["domain_accuracy"] > 0.6 and "proxy_a_distance" in report and report["clip"] == 20.0
    assert metrics["adapt"]["target"]["rows"] > 0  # the target stage's section is kept beside it


def test_tailor_run_writes_the_instance_weighting_section(tmp_path: Path, tiny_model_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tailorlm.train.objective import WEIGHT_COLUMN, Objective

    seen: list[list[float]] = []
    call = Objective.__call__

    def spy(self: Objective, model: object, inputs: dict) -> object:
        if WEIGHT_COLUMN in inputs:
            seen.append(inputs[WEIGHT_COLUMN].tolist())
        return call(self, model, inputs)

    monkeypatch.setattr(Objective, "__call__", spy)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(tmp_path, tiny_model_dir)))
    code, stdout, stderr = run_cli(["run", str(recipe)])
    assert code == 0, stderr
    weights = [w for batch in seen for w in batch]  # the weights reach the training loss, batch by batch
    assert weights and len(set(round(w, 6) for w in weights)) > 2
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(weights) == metrics["data"]["train"] and np.mean(weights) == pytest.approx(1.0, abs=1e-4)  # 1 epoch
    assert "instance weights on" in stdout + stderr
    section = metrics["adapt"]["instance_weighting"]
    assert section["rows"] == metrics["data"]["train"] and section["effective_sample_size"] < section["rows"]
    assert {"histogram", "most_target_like", "least_target_like", "domain_accuracy", "proxy_a_distance"} <= set(section)
    assert {"stage": "domain_weights", "runs": True, "when": "adapt.instance_weighting is on"} in metrics["stages"]
    assert "domain_weights" in metrics["timings_s"]
    html, md = (tmp_path / "out" / "report.html").read_text(), (tmp_path / "out" / "report.md").read_text()
    assert 'id="domain-adaptation"' in html and "<h3>Instance weighting</h3>" in html
    assert "### Instance weighting" in md and "Effective sample size" in md and "most target-like" in md


def test_one_target_text_is_a_one_line_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tests.test_bad_input import assert_one_line_error

    spec = _recipe(tmp_path, tiny_model_dir)
    Path(spec["adapt"]["target_unlabeled"]).write_text(f"{MARKERS} only one target text\n", encoding="utf-8")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(spec))
    code, _, stderr = run_cli(["run", str(recipe)])
    assert_one_line_error(code, stderr, "adapt.instance_weighting needs at least 2 source and 2 target texts")


def test_nearly_separable_domains_get_a_caution_and_overlapping_ones_none() -> None:
    assert overlap_caution(0.70) is None
    caution = overlap_caution(0.992)
    assert caution is not None and "0.992" in caution and "adapt-study" in caution
