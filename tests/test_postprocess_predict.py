"""fairness.postprocess: the ThresholdOptimizer rule is saved with the model and applied by predict only to inputs
that give their group (fairness/postprocess.py, tasks/classification/task.postprocessed)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from tests.helpers import run_cli


def test_the_saved_rule_gives_fairlearns_probabilities() -> None:
    from fairlearn.postprocessing import ThresholdOptimizer

    from tailorlm.fairness.postprocess import _Scores, positive_probability, rules_of

    rng = np.random.default_rng(0)
    scores, groups = rng.random(400), np.where(rng.random(400) < 0.5, "a", "b")
    truth = (scores + (groups == "a") * 0.2 + rng.normal(0, 0.2, 400) > 0.6).astype(int)
    optimizer = ThresholdOptimizer(estimator=_Scores(), constraints="demographic_parity", prefit=True,
                                   predict_method="predict")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer.fit(scores[:, None], truth, sensitive_features=groups)
        expected = optimizer._pmf_predict(scores[:, None], sensitive_features=groups)[:, 1]
    rules = json.loads(json.dumps(rules_of(optimizer)))  # as tailor_model.json holds them
    got = [positive_probability(rules[g], float(s)) for s, g in zip(scores, groups, strict=True)]
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_predict_applies_the_rule_only_when_the_input_gives_its_group(tiny_recipe: Path, tmp_path: Path) -> None:
    code, _, stderr = run_cli(["run", str(tiny_recipe)])
    assert code == 0, stderr
    run = tmp_path / "run"
    meta_file = run / "model" / "tailor_model.json"
    meta = json.loads(meta_file.read_text())
    negative, positive = meta["labels"]
    always, never = [">", -1.0], [">", 2.0]
    meta["postprocess"] = {"method": "ThresholdOptimizer", "constraint": "demographic_parity",
                           "positive_label": positive, "group_column": "group", "decision": "test",
                           "rules": {"a": {"p0": 1.0, "op0": always, "p1": 0.0, "op1": never},
                                     "b": {"p0": 1.0, "op0": never, "p1": 0.0, "op1": never}}}
    meta_file.write_text(json.dumps(meta))
    text = "the engineer was lovely and quick"
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("".join(json.dumps(row) + "\n" for row in [
        {"text": text, "group": "a"}, {"text": text, "group": "b"}, {"text": text}, {"text": text, "group": "zz"},
        {"text": text, "group": 3}]))
    code, _, stderr = run_cli(["predict", str(run), "--input", str(inputs), "--out", str(tmp_path / "p.jsonl")])
    assert code == 0, stderr
    a, b, plain, unknown, bad = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert a["label"] == positive and a["postprocess"]["applied"] is True
    assert b["label"] == negative and b["postprocess"]["model_label"] == plain["label"]
    assert "postprocess" not in plain  # no group given: the model's own label
    assert unknown["label"] == plain["label"] and unknown["postprocess"]["applied"] is False
    assert bad["error"] == "bad_group"
