"""The report's "Domain adaptation" section: what metrics.json holds under ``adapt`` (adapt/), laid out.

Both renderers draw the same lead sentence and table, so the HTML page and the Markdown twin agree.
"""

from __future__ import annotations

from typing import Any

from tailorlm.report.format import count, duration, fmt
from tailorlm.report.model import RunReport
from tailorlm.report.tables import Cell, Table
from tailorlm.report.weighting import has_instance_weighting


def _pretrain(report: RunReport) -> dict[str, Any]:
    adapt = report.metrics.get("adapt")
    pretrain = adapt.get("pretrain") if isinstance(adapt, dict) else None
    return pretrain if isinstance(pretrain, dict) else {}


def _self_training(report: RunReport) -> dict[str, Any]:
    adapt = report.metrics.get("adapt")
    entry = adapt.get("self_training") if isinstance(adapt, dict) else None
    return entry if isinstance(entry, dict) and entry.get("rounds") else {}


def has_pretrain(report: RunReport) -> bool:
    return bool(_pretrain(report))


def has_self_train(report: RunReport) -> bool:
    return bool(_self_training(report))


def has_adapt(report: RunReport) -> bool:
    return has_pretrain(report) or has_self_train(report) or has_instance_weighting(report)


def adapt_lead(report: RunReport) -> str:
    """One sentence: what the body was pretrained on, and whether the domain perplexity went down."""
    p = _pretrain(report)
    objective = {"masked-lm": "masked-LM", "causal-lm": "causal-LM"}.get(str(p.get("objective")), "language-model")
    before, after = p.get("perplexity_before"), p.get("perplexity_after")
    change = ""
    if isinstance(before, (int, float)) and isinstance(after, (int, float)) and before > 0:
        relative = f"{(after - before) / before:+.0%}".replace("-", "\u2212")
        change = (f" Perplexity on {count(p.get('holdout_rows'))} held-out domain texts went from {fmt(before, 2)} "
                  f"to {fmt(after, 2)} ({relative}; lower means the model predicts the domain's words better).")
        if p.get("new_head"):
            change += (" The checkpoint had no pretraining head, so a new one was trained: the 'before' value is "
                       "that of an untrained head, and most of the drop is the head learning.")
    return (f"Before fine-tuning, the pretrained body continued {objective} pretraining on {count(p.get('rows'))} "
            f"unlabelled domain texts (Gururangan et al. 2020); the task head was then trained on the adapted body. "
            f"The baselines measure the original model.{change}")


def adapt_table(report: RunReport) -> Table:
    """The corpus and the pretraining in numbers."""
    p = _pretrain(report)
    rows = [
        ("Pretraining texts", count(p.get("rows"))),
        ("Held-out texts (perplexity)", count(p.get("holdout_rows"))),
        ("Texts from adapt.text", count(p.get("from_file"))),
        ("Texts from the training split", count(p.get("from_train"))),
        ("Dropped: near-duplicate of a validation/test text", count(p.get("dropped_leaking"))),
        ("Dropped: repeated or empty", count((p.get("dropped_duplicate") or 0) + (p.get("dropped_empty") or 0))),
        ("Perplexity before", fmt(p.get("perplexity_before"), 2)),
        ("Perplexity after", fmt(p.get("perplexity_after"), 2)),
        ("Optimizer steps", count(p.get("steps"))),
        ("Pretraining time", duration(p.get("runtime_s"))),
    ]
    return Table(["", "Value"], [[Cell(name), Cell(value)] for name, value in rows], frozenset({1}))


def self_train_lead(report: RunReport) -> str:
    """What the teacher labelled, the rule that picks teacher or student, and which one this run kept."""
    st = _self_training(report)
    first, last = st["rounds"][0], st["rounds"][-1]
    return (f"Self-training: the tuned model (the teacher) labelled {count(first.get('candidates'))} unlabelled "
            f"texts ({count(first.get('dropped_leaking'))} more were dropped as near-duplicates of a train, validation "
            f"or test text); those it gave a calibrated confidence of at least {fmt(first.get('threshold'), 2)} became "
            f"pseudo-labelled training rows, and a student was trained from the same starting point on both. The "
            f"student is kept only if its validation {st.get('metric')} is not worse than the teacher's. Round "
            f"{last.get('round')}: {last.get('reason')}. The tuned results in this report are the kept model's.")


def self_train_table(report: RunReport) -> Table:
    """One row per round: pseudo-labels per label, validation and test main metric of teacher and student."""
    st = _self_training(report)
    metric = str(st.get("metric"))

    def score(side: Any, split: str) -> str:
        return fmt(side.get(split, {}).get(metric), 4) if isinstance(side, dict) else "—"

    rows = []
    for r in st["rounds"]:
        labels = ", ".join(f"{k} {count(v)}" for k, v in (r.get("pseudo_labelled") or {}).items())
        rows.append([Cell(str(r.get("round"))), Cell(count(r.get("pseudo_total"))), Cell(labels),
                     Cell(score(r.get("teacher"), "validation")), Cell(score(r.get("student"), "validation")),
                     Cell(score(r.get("teacher"), "test")), Cell(score(r.get("student"), "test")),
                     Cell(str(r.get("kept")))])
    headers = ["Round", "Pseudo-labels", "Per label", f"Teacher validation {metric}", f"Student validation {metric}",
               f"Teacher test {metric}", f"Student test {metric}", "Kept"]
    return Table(headers, rows, frozenset({1, 3, 4, 5, 6}))
