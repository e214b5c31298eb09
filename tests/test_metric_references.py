"""Hand-written metrics against the reference implementations they stand for.

- SQuAD EM/F1 (``tasks/qa.py``) against the official SQuAD evaluation scripts, whose functions are written out
  below as published (v1.1 ``normalize_answer`` / ``f1_score`` / ``exact_match_score``; v2.0's ``compute_f1``,
  which scores an empty answer 1 only against an empty one, and its rule that a gold answer normalising to
  nothing is dropped): on tricky pairs and on a whole generated demo split.
- Bootstrap intervals (``evaluate/stats.py``) against ``scipy.stats.bootstrap``'s percentile method: with the
  same seeded generator the resamples are the same, so the intervals agree to rounding.
- ECE (``evaluate/metrics.py``) against a reference following Guo et al. (2017): ``M`` equal-width bins
  ``((m-1)/M, m/M]`` of the top-class confidence, ``sum_m |B_m|/n * |acc(B_m) - conf(B_m)|``.
"""

from __future__ import annotations

import collections
import json
import re
import string
from pathlib import Path

import numpy as np
import pytest

# ---------------------------------------------------------------------------------------------- official SQuAD


def official_normalize_answer(s: str) -> str:
    """SQuAD v1.1 / v2.0 evaluate script: lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text: str) -> str:
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text: str) -> str:
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_v1_f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = official_normalize_answer(prediction).split()
    ground_truth_tokens = official_normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def official_v1_exact_match_score(prediction: str, ground_truth: str) -> bool:
    return official_normalize_answer(prediction) == official_normalize_answer(ground_truth)


def official_v2_get_tokens(s: str) -> list[str]:
    if not s:
        return []
    return official_normalize_answer(s).split()


def official_v2_compute_f1(a_gold: str, a_pred: str) -> float:
    gold_toks = official_v2_get_tokens(a_gold)
    pred_toks = official_v2_get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def official_v2_scores(gold_texts: list[str], a_pred: str) -> tuple[float, float]:
    """v2.0 ``get_raw_scores`` for one question: golds that normalise to nothing are dropped; none left means
    the only right answer is the empty string."""
    gold_answers = [a for a in gold_texts if official_normalize_answer(a)]
    if not gold_answers:
        gold_answers = [""]
    exact = max(int(official_normalize_answer(a) == official_normalize_answer(a_pred)) for a in gold_answers)
    return exact, max(official_v2_compute_f1(a, a_pred) for a in gold_answers)


TRICKY = [
    ("The Storm-Credit, of £25!", "storm credit of £25"),
    ("an apple a day", "Apple day"),
    ("the the cat cat", "cat"),
    ("Theatre Royal", "the atre royal"),  # 'the' inside a word stays
    ("  Kirkwall\t\n office ", "kirkwall office"),
    ("Café OLÉ", "café olé"),
    ("“Hogmanay”", "hogmanay"),  # curly quotes are not string.punctuation: kept, by both
    ("8.45pm", "845pm"),
    ("a", "an"),
    ("Another one", "other one"),
    ("A.", ""),
    ("", ""),
    ("   ", ""),
    ("x", ""),
    ("Straße", "STRASSE"),
    ("up to £45 per home", "£45"),
    ("4.00pm", "4.00 pm"),
]


@pytest.mark.parametrize(("prediction", "gold"), TRICKY)
def test_squad_pair_scores_equal_the_official_script(prediction: str, gold: str) -> None:
    from tailorlm.tasks.qa.task import exact_match, f1_score, normalize_answer

    assert normalize_answer(prediction) == official_normalize_answer(prediction)
    assert exact_match(prediction, gold) == float(official_v1_exact_match_score(prediction, gold))
    assert f1_score(prediction, gold) == pytest.approx(official_v2_compute_f1(gold, prediction))
    if official_normalize_answer(prediction) and official_normalize_answer(gold):  # v1.1 and v2.0 agree here
        assert f1_score(prediction, gold) == pytest.approx(official_v1_f1_score(prediction, gold))


@pytest.mark.parametrize(("prediction", "golds"), [
    ("", ["the", "Kirkwall"]),  # 'the' normalises to nothing: the official script drops it, so "" is wrong
    ("", ["The", "a"]),  # nothing left: unanswerable, "" is right
    ("Kirkwall", ["the", "Kirkwall"]),
    ("in Kirkwall", ["Strathglen", "Kirkwall harbour"]),
    ("anything", []),
])
def test_squad_best_over_golds_equals_the_official_script(prediction: str, golds: list[str]) -> None:
    from tailorlm.tasks.qa.task import best_over_golds

    exact, f1 = best_over_golds(prediction, golds)
    official_exact, official_f1 = official_v2_scores(golds, prediction)
    assert (exact, f1) == (pytest.approx(official_exact), pytest.approx(official_f1))


def test_squad_metrics_equal_the_official_script_on_a_demo_split(tmp_path: Path) -> None:
    """Every question of a generated SQuAD v2 split, answered five ways (right, decorated, a sentence, a wrong
    span, no answer): the aggregate EM/F1 equal the official script's (which reports them x100)."""
    from tailorlm.demos.qa import generate_qa_dataset
    from tailorlm.tasks.qa.task import split_sentences, squad_metrics

    doc = json.loads(generate_qa_dataset(tmp_path, seed=3, n_passages=30)["test"].read_text(encoding="utf-8"))
    predictions, golds = [], []
    for article in doc["data"]:
        for paragraph in article["paragraphs"]:
            sentences = split_sentences(paragraph["context"])
            for i, qa in enumerate(paragraph["qas"]):
                texts = [a["text"] for a in qa["answers"]]
                first = texts[0] if texts else ""
                predictions.append([first, f"The {first}!", sentences[i % len(sentences)],
                                    sentences[-1].split()[0], ""][i % 5])
                golds.append(texts)
    assert len(predictions) > 30 and any(not g for g in golds)
    scores = np.array([official_v2_scores(g, p) for p, g in zip(predictions, golds, strict=True)], dtype=float)
    official = {"exact": 100.0 * scores[:, 0].mean(), "f1": 100.0 * scores[:, 1].mean()}
    ours = squad_metrics(predictions, golds)
    assert 100 * ours["exact_match"] == pytest.approx(official["exact"])
    assert 100 * ours["f1"] == pytest.approx(official["f1"])
    assert 0 < ours["f1"] < 1 and ours["n"] == len(predictions)


# ---------------------------------------------------------------------------------------------- bootstrap


@pytest.mark.parametrize("n", [40, 300, 2500])  # 2500: more than one resample chunk
def test_bootstrap_ci_equals_scipys_percentile_bootstrap(n: int) -> None:
    from scipy.stats import bootstrap

    from tailorlm.evaluate.stats import RESAMPLES, SEED, bootstrap_ci, mean_stat

    correct = (np.random.default_rng(n).random(n) < 0.7).astype(float)
    ours = bootstrap_ci(mean_stat(correct), n)
    scipy_ci = bootstrap((correct,), np.mean, n_resamples=RESAMPLES, method="percentile", confidence_level=0.95,
                         rng=np.random.default_rng(SEED)).confidence_interval
    assert (ours["low"], ours["high"]) == (pytest.approx(scipy_ci.low, abs=1e-12),
                                           pytest.approx(scipy_ci.high, abs=1e-12))


def test_paired_bootstrap_of_macro_f1_equals_scipys_paired_percentile_bootstrap() -> None:
    from scipy.stats import bootstrap
    from sklearn.metrics import f1_score

    from tailorlm.evaluate.stats import SEED, macro_f1_stat, paired_bootstrap

    rng = np.random.default_rng(7)
    n, k = 120, 3
    y_true = rng.integers(0, k, n)
    pred_a = np.where(rng.random(n) < 0.75, y_true, rng.integers(0, k, n))
    pred_b = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
    resamples = 200  # sklearn's f1_score once per resample and system: the full 2,000 would take seconds
    ours = paired_bootstrap(macro_f1_stat(y_true, pred_a, k), macro_f1_stat(y_true, pred_b, k), n,
                            resamples=resamples)

    def difference(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        def macro(pred: np.ndarray) -> float:
            return f1_score(t, pred, labels=list(range(k)), average="macro", zero_division=0)

        return macro(a) - macro(b)

    reference = bootstrap((y_true, pred_a, pred_b), difference, paired=True, vectorized=False,
                          n_resamples=resamples, method="percentile", rng=np.random.default_rng(SEED))
    assert ours["difference"] == pytest.approx(difference(y_true, pred_a, pred_b))
    assert ours["low"] == pytest.approx(reference.confidence_interval.low, abs=1e-12)
    assert ours["high"] == pytest.approx(reference.confidence_interval.high, abs=1e-12)


# ---------------------------------------------------------------------------------------------- ECE


def reference_ece(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """Guo et al. (2017), eq. 3: equal-width bins ((m-1)/M, m/M] of the top-class confidence."""
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = (predicted == y_true).astype(float)
    ece = 0.0
    for m in range(1, n_bins + 1):
        in_bin = (confidence > (m - 1) / n_bins) & (confidence <= m / n_bins)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return ece


@pytest.mark.parametrize(("n_labels", "sharpness"), [(2, 1.0), (4, 0.3), (9, 3.0)])
def test_ece_equals_a_guo_et_al_reference(n_labels: int, sharpness: float) -> None:
    from tailorlm.evaluate.metrics import expected_calibration_error

    rng = np.random.default_rng(n_labels)
    probs = rng.dirichlet(np.full(n_labels, sharpness), size=500)
    y_true = np.where(rng.random(500) < 0.6, probs.argmax(axis=1), rng.integers(0, n_labels, 500))
    assert expected_calibration_error(probs, y_true) == pytest.approx(reference_ece(probs, y_true), abs=1e-12)


def test_ece_puts_confidences_on_a_bin_edge_where_guo_et_al_do() -> None:
    """Top-class confidences exactly m/15 belong to bin m (right-closed), not m+1."""
    from tailorlm.evaluate.metrics import expected_calibration_error

    top = np.array([m / 15 for m in range(8, 16)] * 3)  # 8/15 .. 1, all above 1/2
    probs = np.stack([top, 1 - top], axis=1)
    y_true = np.array([0, 1, 0] * 8)
    assert expected_calibration_error(probs, y_true) == pytest.approx(reference_ece(probs, y_true), abs=1e-12)
