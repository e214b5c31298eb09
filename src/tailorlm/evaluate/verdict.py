"""The verdict: one plain sentence saying whether fine-tuning paid off, which never hides a loss.

A run's whole point is the claim "the tuned model is more accurate on our data than what we started from". The
verdict states that claim or its failure at the top of the terminal output and the report: the tuned model
against the best *reference* baseline (floors such as a random head never count, evaluate/floors.py) on the test
split, with the paired significance test when predictions allow it, a warning when the test or validation split
is too small to tell models apart, and, when the tuned model does not win, what to try next.
``report.require_gain`` (``tailor run --require-gain``) turns a loss into exit status 4.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tailorlm.evaluate.floors import is_floor
from tailorlm.metric_names import TASK_MAIN_METRIC, greater_is_better, prose_name

#: Exit status of ``tailor run --require-gain`` when the tuned model does not beat the best reference baseline.
NO_GAIN_EXIT_CODE = 4
#: Below this many rows a split cannot tell two models apart (an interval of several points either way).
MIN_ROWS = 30


@dataclass
class Verdict:
    beats: bool | None  # None: nothing to compare against (no reference baseline, or no test score)
    sentence: str
    advice: list[str] = field(default_factory=list)
    small_split: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"beats_best_reference": self.beats, "sentence": self.sentence, "advice": self.advice,
                "small_split": self.small_split} | self.facts


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def main_metric(metrics: dict[str, Any]) -> str:
    """The task's headline metric (entity F1 for tags, the CoNLL score), else macro-F1 when the run has one."""
    tuned = metrics.get("tuned") or {}
    declared = TASK_MAIN_METRIC.get(str(metrics.get("task")))
    if declared in tuned:
        return str(declared)
    if "f1_macro" in tuned:
        return "f1_macro"
    return declared or "loss"


def reference_scores(metrics: dict[str, Any], metric: str) -> tuple[dict[str, float], list[str]]:
    """(reference baseline -> score on ``metric``, names of the floors that were measured)."""
    task = str(metrics.get("task"))
    refs: dict[str, float] = {}
    floors: list[str] = []
    for name, result in (metrics.get("baseline") or {}).items():
        value = _number((result or {}).get(metric)) if isinstance(result, dict) else None
        if value is None:
            continue
        if is_floor(name, task, result):
            floors.append(name)
        else:
            refs[name] = value
    return refs, floors


def _title(metric: str) -> str:
    return prose_name(metric)


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def _split_warning(metrics: dict[str, Any], gain: float | None, test: dict[str, Any] | None) -> str | None:
    """Why the figures cannot separate the models, if they cannot: too few rows, or an interval of the difference
    that is wider than the gain and holds zero. An interval that excludes zero has told them apart, however wide."""
    sizes = metrics.get("data") or {}
    small = [f"{name} has only {int(n)} rows" for name in ("test", "validation")
             if isinstance(n := sizes.get(name), int | float) and 0 < n < MIN_ROWS]
    boot = (test or {}).get("bootstrap") or {}
    low, high = _number(boot.get("low")), _number(boot.get("high"))
    wide = low is not None and high is not None and gain is not None and high - low > abs(gain) and low <= 0 <= high
    interval = f"the 95% interval of the difference ({low:+.3f} to {high:+.3f}) is wider than the gain" if wide else ""
    if small:
        return "; ".join([*small, *([interval] if interval else [])]) + ": too small to tell the models apart " \
            f"reliably (aim for at least {MIN_ROWS} rows, and more for small gains)"
    if interval:  # enough rows, a gain within their noise: only more test rows (or a larger gain) would tell
        rows = sizes.get("test")
        return interval + (f": {int(rows)} test rows" if isinstance(rows, int | float) else ": the test split") + \
            " cannot tell the models apart at this gain (more test rows narrow the interval)"
    return None


def advice(metrics: dict[str, Any], recipe: Any | None = None) -> list[str]:
    """What to try when the tuned model does not win, most likely first."""
    from tailorlm.train.auto import MIN_STEPS

    tips = []
    steps = _number((metrics.get("train") or {}).get("global_step"))
    if steps is not None and steps < MIN_STEPS:
        tips.append(f"more optimizer steps: only {int(steps)} were taken (set training.epochs: auto, or more epochs)")
    tips.append("a time-budgeted search of learning rate, epochs and batch size: tailor run RECIPE --budget 20m")
    tips.append("a learning rate from the range test: --set training.learning_rate=find")
    task = metrics.get("task") or (recipe.task if recipe is not None else "?")
    tips.append(f"a larger model that fits this machine: tailor models --task {task}")
    tips.append("more labelled rows: tailor run RECIPE --data-curve shows whether they would help")
    return tips


def judge(metrics: dict[str, Any], recipe: Any | None = None) -> Verdict:
    """The verdict of a finished run from its metrics.json content."""
    metric = main_metric(metrics)
    title, lower = _title(metric), not greater_is_better(metric)
    tuned = _number((metrics.get("tuned") or {}).get(metric))
    refs, floors = reference_scores(metrics, metric)
    if tuned is None:
        return Verdict(None, "Verdict: the fine-tuned model was not evaluated on a test split, so nothing shows "
                             "whether fine-tuning helped.", advice(metrics, recipe))
    if not refs:
        only = f" (only floors were measured: {', '.join(floors)})" if floors else ""
        return Verdict(None, f"Verdict: no reference baseline was measured{only}, so this run cannot show that "
                             f"fine-tuning beat what you started from; the tuned {title} is {_fmt(tuned)}.",
                       advice(metrics, recipe))
    best = (min if lower else max)(refs, key=refs.__getitem__)
    gain = tuned - refs[best]
    improvement = -gain if lower else gain
    test = (metrics.get("significance") or {}).get("vs_baseline")
    # the interval must be about the verdict's own metric and baseline, or it would dress one score in another's CI
    test = test if isinstance(test, dict) and test.get("baseline") == best \
        and test.get("metric") in (None, metric) else None
    facts = {"metric": metric, "tuned": tuned, "best_reference": best, "best_reference_value": refs[best],
             "gain": gain, "p_value": (test or {}).get("p_value")}
    warning = _split_warning(metrics, gain, test)
    versus = f"{title} {_fmt(tuned)} vs {_fmt(refs[best])} for the {best.replace('_', ' ')} ({gain:+.3f}" + \
        (", lower is better" if lower else "")
    if test is not None:
        boot = test.get("bootstrap") or {}
        if _number(boot.get("low")) is not None:
            versus += f", 95% CI {boot['low']:+.3f} to {boot['high']:+.3f}"
        p_value = test["p_value"]  # a resampling p of 0 means "below the resolution", never "impossible"
        versus += ", p < 0.001" if p_value < 0.001 else f", p = {p_value:.3g}"
    versus += ")"
    beats = improvement > 0
    if beats:
        significant = test is not None and test.get("p_value", 1.0) < 0.05
        strength = "significantly " if significant else ""
        caveat = "" if significant or test is None else "; the difference is not significant at 5%"
        sentence = f"Verdict: the fine-tuned model {strength}beats the best reference baseline on the test split: " \
            f"{versus}{caveat}."
        tips: list[str] = []
    else:
        sentence = f"Verdict: the fine-tuned model does NOT beat the best reference baseline on the test split: " \
            f"{versus}. Do not ship it as is."
        tips = advice(metrics, recipe)
    kept = kept_note(metrics)
    if kept:
        sentence = sentence.replace(" Do not ship it as is.", "") + f" {kept}"
        facts["kept"] = "linear_probe"
    if warning:
        sentence += f" Caution: {warning}."
    return Verdict(beats, sentence, tips, warning, facts)


def kept_note(metrics: dict[str, Any]) -> str | None:
    """What training.keep_best_of saved when it was not the fine-tune (stages/keep.py)."""
    kept = metrics.get("kept") or {}
    if kept.get("model") in (None, "tuned"):
        return None
    metric, scores = kept.get("metric", "?"), kept.get("validation") or {}
    name = str(kept["model"]).replace("_", " ")
    test = _number((kept.get("test") or {}).get(metric))
    on_test = f"; its test {_title(metric)} is {_fmt(test)}" if test is not None else ""
    return (f"training.keep_best_of saved the {name} instead of the fine-tune: it scored "
            f"{_fmt(scores.get(kept['model'], float('nan')))} against {_fmt(scores.get('tuned', float('nan')))} "
            f"{_title(metric)} on the validation split{on_test}.")
