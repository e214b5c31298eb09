"""The verdict sentence and --require-gain: a loss to the best reference baseline is never hidden."""

from __future__ import annotations

import json
from pathlib import Path

from tailorlm.evaluate.verdict import NO_GAIN_EXIT_CODE, judge


def _metrics(tuned: float, baselines: dict[str, float], task: str = "qa", test_rows: int = 200,
             significance: dict | None = None, steps: int = 500) -> dict:
    metric = "f1"
    return {
        "task": task,
        "tuned": {metric: tuned},
        "baseline": {name: {metric: value} for name, value in baselines.items()},
        "data": {"train": 400, "validation": 50, "test": test_rows},
        "train": {"global_step": steps},
        **({"significance": significance} if significance else {}),
    }


def test_a_loss_to_the_reference_is_said_plainly_with_advice() -> None:
    verdict = judge(_metrics(0.078, {"sentence_retrieval": 0.166, "span_probe": 0.12}, steps=42))
    assert verdict.beats is False
    assert "does NOT beat" in verdict.sentence and "span probe" in verdict.sentence
    assert any("--budget" in tip for tip in verdict.advice)
    assert any("only 42 were taken" in tip for tip in verdict.advice)


def test_floors_are_never_the_bar() -> None:
    # sentence_retrieval and pretrained_head are floors: beating them is no claim
    verdict = judge(_metrics(0.30, {"sentence_retrieval": 0.166, "pretrained_head": 0.06}))
    assert verdict.beats is None
    assert "no reference baseline" in verdict.sentence and "sentence_retrieval" in verdict.sentence


def test_a_significant_win_names_the_interval_and_p_value() -> None:
    significance = {"vs_baseline": {"baseline": "span_probe", "p_value": 0.001,
                                    "bootstrap": {"low": 0.05, "high": 0.11}}}
    verdict = judge(_metrics(0.40, {"span_probe": 0.32, "sentence_retrieval": 0.166}, significance=significance))
    assert verdict.beats is True
    assert "significantly beats" in verdict.sentence and "p = 0.001" in verdict.sentence
    assert verdict.small_split is None and verdict.advice == []


def test_an_unsignificant_win_is_not_called_significant() -> None:
    significance = {"vs_baseline": {"baseline": "span_probe", "p_value": 0.4,
                                    "bootstrap": {"low": -0.05, "high": 0.07}}}
    verdict = judge(_metrics(0.34, {"span_probe": 0.32}, significance=significance))
    assert verdict.beats is True
    assert "significantly" not in verdict.sentence and "not significant" in verdict.sentence
    assert verdict.small_split and "wider than the gain" in verdict.small_split
    assert "cannot tell the models apart at this gain" in verdict.small_split  # enough rows: not "aim for 30"
    assert "aim for at least" not in verdict.small_split


def test_a_wide_interval_that_excludes_zero_is_no_caution() -> None:
    # gain 0.089 (lower is better), interval +0.054 to +0.279 on 500 rows: wider than the gain, yet it tells the
    # models apart (measured on STS-B); calling that "too small to tell them apart" contradicted p = 0.005
    significance = {"vs_baseline": {"baseline": "span_probe", "p_value": 0.005,
                                    "bootstrap": {"low": 0.054, "high": 0.279}}}
    verdict = judge(_metrics(0.409, {"span_probe": 0.32}, significance=significance))
    assert verdict.small_split is None and "Caution" not in verdict.sentence


def test_a_tiny_test_split_is_flagged_in_the_same_sentence() -> None:
    verdict = judge(_metrics(0.9, {"span_probe": 0.5}, test_rows=9))
    assert "test has only 9 rows" in verdict.sentence


def test_lower_is_better_for_perplexity() -> None:
    metrics = {"task": "generation", "tuned": {"perplexity": 20.0}, "baseline": {"pretrained": {"perplexity": 30.0}},
               "data": {"test": 89}}
    assert judge(metrics).beats is True
    metrics["tuned"]["perplexity"] = 35.0
    assert judge(metrics).beats is False


def test_require_gain_exits_4_on_a_deliberately_bad_learning_rate(tmp_path: Path, tiny_model_dir: Path,
                                                                  sentiment_csv: Path) -> None:
    from typer.testing import CliRunner

    from tailorlm.cli import app

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""
task: classification
output_dir: {tmp_path / "run"}
model: {{name: {tiny_model_dir}}}
data:
  train: {sentiment_csv}
  split: {{validation: 0.2, test: 0.25}}
training: {{epochs: 1, batch_size: 16, learning_rate: 1.0e-9, calibrate: false}}
baseline: {{zero_shot: false, linear_probe: true}}
""", encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(recipe), "--require-gain"])
    assert result.exit_code == NO_GAIN_EXIT_CODE, result.output
    assert "Verdict: the fine-tuned model does NOT beat" in result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["verdict"]["beats_best_reference"] is False
    assert "does NOT beat" in (tmp_path / "run" / "report.md").read_text()
    assert "does NOT beat" in (tmp_path / "run" / "report.html").read_text()


def test_a_winning_run_passes_require_gain_with_the_verdict_first(tiny_recipe: Path) -> None:
    from typer.testing import CliRunner

    from tailorlm.cli import app

    result = CliRunner().invoke(app, ["run", str(tiny_recipe), "--set", "training.epochs=10", "--require-gain"])
    metrics = json.loads((Path(str(tiny_recipe)).parent / "run" / "metrics.json").read_text())
    assert metrics["verdict"]["beats_best_reference"] is True, metrics["verdict"]
    assert result.exit_code == 0, result.output
    assert result.stdout.lstrip().startswith("Verdict: the fine-tuned model"), result.stdout  # the first line
