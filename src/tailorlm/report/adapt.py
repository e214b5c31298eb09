"""The report's "Domain adaptation" section: what metrics.json holds under ``adapt`` (adapt/), laid out.

Both renderers draw the same lead sentence and table, so the HTML page and the Markdown twin agree.
"""

from __future__ import annotations

from typing import Any

from tailorlm.report import Cell, RunReport, Table, count, duration, fmt


def _pretrain(report: RunReport) -> dict[str, Any]:
    adapt = report.metrics.get("adapt")
    pretrain = adapt.get("pretrain") if isinstance(adapt, dict) else None
    return pretrain if isinstance(pretrain, dict) else {}


def has_adapt(report: RunReport) -> bool:
    return bool(_pretrain(report))


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
        ("Dropped: equal to a validation/test text", count(p.get("dropped_leaking"))),
        ("Dropped: repeated or empty", count((p.get("dropped_duplicate") or 0) + (p.get("dropped_empty") or 0))),
        ("Perplexity before", fmt(p.get("perplexity_before"), 2)),
        ("Perplexity after", fmt(p.get("perplexity_after"), 2)),
        ("Optimizer steps", count(p.get("steps"))),
        ("Pretraining time", duration(p.get("runtime_s"))),
    ]
    return Table(["", "Value"], [[Cell(name), Cell(value)] for name, value in rows], frozenset({1}))
