"""Floors are reported as floors: never the bar of the headline, the paired test, `tailor compare` or the terminal.

A floor (a random span head, a sentence picked whole, a majority tag, a seq2seq model with random cross-attention)
is a lower bound; the gain a run claims is over the best *reference* baseline (evaluate/floors.py). QA's
reference is the span probe: a linear start/end head fitted on frozen features.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tailorlm.evaluate.floors import is_floor, mark_floors
from tailorlm.evaluate.stats import significance
from tailorlm.tasks.qa.span_probe import SpanFeatures, fit_span_head, span_probe

QA = Path(__file__).parent / "fixtures" / "run_dir_qa"


def _qa_rows(n: int, tuned: np.ndarray, systems: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per-example QA rows (scores, not labels), as predictions.jsonl holds them."""
    return [{"id": str(i), "text": f"q{i}", "gold": ["a"], "scores": {"f1": float(tuned[i])},
             "baselines": {name: {"scores": {"f1": float(v[i])}} for name, v in systems.items()}}
            for i in range(n)]


# ------------------------------------------------------------------------------------------ the rule


def test_floor_rule_names_and_markers() -> None:
    assert is_floor("pretrained_head", "qa") and is_floor("sentence_retrieval", "qa")
    assert is_floor("majority_tag", "token-classification") and not is_floor("linear_probe", "token-classification")
    assert not is_floor("span_probe", "qa") and not is_floor("copy_source", "translation")
    assert is_floor("pretrained", "translation") and not is_floor("pretrained", "generation")
    # the task's own marker wins: a real pretrained seq2seq model is a reference
    assert not is_floor("pretrained", "translation", {"bleu": 20.0, "floor": False})
    baselines: dict[str, Any] = {"pretrained_head": {"f1": 0.1}, "span_probe": {"f1": 0.3},
                                 "sentence_retrieval": {"skipped": "off"}}
    mark_floors(baselines, "qa")
    assert baselines["pretrained_head"]["floor"] is True and baselines["span_probe"]["floor"] is False
    assert "floor" not in baselines["sentence_retrieval"]


def test_translation_pretrained_is_a_floor_only_for_the_shipped_warm_start() -> None:
    from tailorlm.models.warmstart import MINILM_SEQ2SEQ_FOLDER, is_shipped_warm_start

    assert is_shipped_warm_start("minilm-seq2seq", "/x/y")
    assert is_shipped_warm_start("/cache/models", f"/cache/{MINILM_SEQ2SEQ_FOLDER}")
    assert not is_shipped_warm_start("Helsinki-NLP/opus-mt-de-en", "Helsinki-NLP/opus-mt-de-en")


# ------------------------------------------------------------------------------------------ significance


def test_significance_tests_against_the_best_reference_not_a_higher_floor() -> None:
    rng = np.random.default_rng(0)
    n = 80
    tuned = rng.uniform(0.5, 1.0, n)
    rows = _qa_rows(n, tuned, {"pretrained_head": np.ones(n), "span_probe": rng.uniform(0.2, 0.6, n)})
    result = significance([rows], "f1", [], task="qa")
    assert result is not None and result["vs_baseline"]["baseline"] == "span_probe"
    assert result["vs_baseline"]["bootstrap"]["difference"] > 0
    # the metrics.json marker decides where the name rule would not: a task-specific floor
    marked = significance([rows], "f1", [], task="qa", baselines={"span_probe": {"floor": True}})
    assert marked is not None and "vs_baseline" not in marked


def test_only_floors_measured_means_no_gain_is_tested() -> None:
    n = 40
    rows = _qa_rows(n, np.full(n, 0.8), {"pretrained_head": np.zeros(n), "sentence_retrieval": np.full(n, 0.1)})
    result = significance([rows], "f1", [], task="qa")
    assert result is not None and "vs_baseline" not in result
    assert "only floors were measured" in result["no_reference"]
    assert result["ci"]["estimate"] == 0.8
    from tailorlm.report.significance import significance_facts

    facts = dict(significance_facts({"significance": result}))
    assert facts["Gain vs best baseline"].startswith("not tested: only floors were measured")


# ------------------------------------------------------------------------------------------ report, compare, terminal


def _qa_run(tmp_path: Path, baseline: dict[str, Any]) -> Path:
    run = tmp_path / "qa"
    shutil.copytree(QA, run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["baseline"] = baseline
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_report_headline_is_over_the_best_reference_and_floors_are_labelled(tmp_path: Path) -> None:
    from tailorlm.report import render_report
    from tailorlm.report.model import load_run

    run = _qa_run(tmp_path, {"pretrained_head": {"exact_match": 0.5, "f1": 0.7, "n": 80},
                             "span_probe": {"exact_match": 0.2, "f1": 0.4, "n": 80}})
    report = load_run(run)
    assert report.best_baseline is not None and report.best_baseline.key == "span_probe"
    assert report.gain() == report.tuned["f1"] - 0.4  # type: ignore[index]
    assert "(best baseline: span probe)" in report.headline()
    html_path, md_path = render_report(run)
    html, md = html_path.read_text(), md_path.read_text()
    assert "Pretrained head (floor)" in html and "Span probe (floor)" not in html
    assert "Rows marked (floor) (pretrained head) are lower bounds" in md


def test_report_with_only_floors_claims_no_gain(tmp_path: Path) -> None:
    from tailorlm.report import render_report
    from tailorlm.report.model import load_run

    run = _qa_run(tmp_path, {"pretrained_head": {"exact_match": 0.01, "f1": 0.05, "n": 80},
                             "sentence_retrieval": {"exact_match": 0.0, "f1": 0.12, "n": 80}})
    report = load_run(run)
    assert report.best_baseline is None and report.gain() is None
    headline = report.headline()
    assert "only floors were measured" in headline and "Fine-tuning raised" not in headline
    assert "sentence retrieval (floor), 0.120" in headline
    html = render_report(run)[0].read_text()
    assert "no reference baseline (only floors measured)" in html and "best baseline (" not in html


def test_compare_and_terminal_never_measure_against_a_floor(tmp_path: Path) -> None:
    from rich.console import Console

    from tailorlm.cli import comparison_table
    from tailorlm.evaluate.compare import _best_baseline, load_summary

    floors_only = {"pretrained_head": {"f1": 0.9, "exact_match": 0.8, "n": 80}}
    run = _qa_run(tmp_path, floors_only | {"span_probe": {"f1": 0.4, "exact_match": 0.3, "n": 80}})
    assert _best_baseline(load_summary(run)) == "0.4000 (span probe)"
    metrics = json.loads((run / "metrics.json").read_text())
    console = Console(width=200, record=True)
    console.print(comparison_table(metrics))
    text = " ".join(console.export_text().split())
    assert f"f1 change over the best baseline: {metrics['tuned']['f1'] - 0.4:+.4f}" in text
    assert "pretrained-head (floor)" in text
    console = Console(width=200, record=True)
    console.print(comparison_table(metrics | {"baseline": floors_only}))
    text = " ".join(console.export_text().split())
    assert "only floors were measured (pretrained-head)" in text and "over the best baseline" not in text


# ------------------------------------------------------------------------------------------ the span probe


def _separable_windows(n: int, seed: int) -> SpanFeatures:
    """Windows of 12 tokens x 8 features: the answer's start token carries +2 on feature 0, its end on feature 1."""
    rng = np.random.default_rng(seed)
    features, starts, ends = [], [], []
    for _ in range(n):
        x = rng.normal(0, 1, (12, 8)).astype(np.float32)
        start = int(rng.integers(1, 9))
        end = start + int(rng.integers(0, 3))
        x[start, 0] += 3.0
        x[end, 1] += 3.0
        features.append(torch.from_numpy(x))
        starts.append(start)
        ends.append(end)
    return SpanFeatures(features, starts, ends, list(range(n)))


def test_span_probe_learns_start_and_end_from_frozen_features() -> None:
    train, test = _separable_windows(60, 0), _separable_windows(40, 1)
    weight, penalty = span_probe(train, seed=0)
    assert weight.shape == (8, 2) and penalty > 0
    hits_start = [int((f @ weight)[:, 0].argmax()) == s for f, s in zip(test.features, test.starts, strict=True)]
    hits_end = [int((f @ weight)[:, 1].argmax()) == e for f, e in zip(test.features, test.ends, strict=True)]
    assert np.mean(hits_start) > 0.8 and np.mean(hits_end) > 0.8  # chance is 1/12
    assert weight[0, 0] > weight[1:, 0].abs().max() and weight[1, 1] > weight[[0, *range(2, 8)], 1].abs().max()
    assert torch.equal(fit_span_head(train, penalty), fit_span_head(train, penalty))  # deterministic


def test_sentence_retrieval_is_a_floor_only_with_unanswerable_questions(tmp_path: Path, tiny_model_dir: Path) -> None:
    """It never answers "no answer": a lower bound on SQuAD v2 data, a real (crude) heuristic on v1 data."""
    from tailorlm.demos.qa import generate_qa_dataset
    from tailorlm.models.loading import load_tokenizer
    from tailorlm.models.registry import resolve_model
    from tailorlm.recipe import recipe_from_dict
    from tailorlm.tasks import get_task

    task = get_task("qa")
    marks = {}
    for unanswerable in (0.0, 1.0):
        paths = generate_qa_dataset(tmp_path / str(unanswerable), seed=3, n_passages=6, unanswerable=unanswerable)
        recipe = recipe_from_dict({"task": "qa", "output_dir": str(tmp_path / "out"),
                                   "model": {"name": str(tiny_model_dir)},
                                   "data": {name: str(path) for name, path in paths.items()},
                                   "baseline": {"linear_probe": False}}, "test")
        resolved = resolve_model(str(tiny_model_dir))
        data = task.prepare_data(recipe, None)
        result = task.baselines(recipe, data, resolved, load_tokenizer(resolved, recipe.model), 64)
        marks[data.version_2] = result["sentence_retrieval"]["floor"]
        assert is_floor("sentence_retrieval", "qa", result["sentence_retrieval"]) is data.version_2
    assert marks == {False: False, True: True}
