"""report.html: one self-contained page for the domain expert who has to trust (or reject) the tuned model.

Self-contained means it opens from an e-mail attachment or an air-gapped share: CSS is inlined, charts are
SVG embedded as data URIs, and nothing is fetched from the network. Every piece of text that came from the
user's data or recipe goes through ``escape`` before it reaches the page.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from html import escape

from tailorlm import __version__
from tailorlm.metric_names import METRIC_HELP, greater_is_better
from tailorlm.report.adapt import (
    adapt_lead,
    adapt_table,
    has_adapt,
    has_pretrain,
    has_self_train,
    self_train_lead,
    self_train_table,
)
from tailorlm.report.augment import augment_lead, augment_table, has_augment
from tailorlm.report.charts import comparison_chart, confusion_chart, learning_curves_chart, per_class_chart
from tailorlm.report.cv import cv_lead, cv_table, has_cv
from tailorlm.report.data_curve import (
    data_curve_answer,
    data_curve_chart_svg,
    data_curve_lead,
    data_curve_table,
    has_data_curve,
)
from tailorlm.report.data_tables import (
    input_overlap,
    label_table,
    length_table,
    other_length_tables,
    removed_table,
    sources_table,
    stages_table,
    unknown_labels,
)
from tailorlm.report.fairness import fairness_blocks, has_fairness
from tailorlm.report.format import count, fmt, number, signed
from tailorlm.report.html_blocks import empty, html_table, page, paragraph, safe_chart, section
from tailorlm.report.lr_find import has_lr_find, lr_find_chart_svg, lr_find_lead, lr_find_table
from tailorlm.report.model import RunReport
from tailorlm.report.results import (
    comparison_table,
    errors_table,
    eval_table,
    floor_note,
    per_class_table,
    samples_table,
)
from tailorlm.report.search import has_search, search_lead, search_table
from tailorlm.report.shift import has_shift, shift_lead, shift_table
from tailorlm.report.summary import facts
from tailorlm.report.tables import record_text_columns
from tailorlm.report.weighting import has_instance_weighting, weighted_rows_table, weighting_lead, weighting_table

#: (section id, navigation label, heading), in page order; the ids are a stable contract for tests and links.
SECTIONS: list[tuple[str, str, str]] = [
    ("summary", "Summary", "Summary"),
    ("comparison", "Before vs after", "Baselines vs fine-tuned model"),
    ("cross-validation", "Folds", "Cross-validation"),
    ("budget-search", "Search", "Search within the time budget"),
    ("samples", "Samples", "Before and after"),
    ("domain-adaptation", "Adaptation", "Domain adaptation"),
    ("data-curve", "More labels?", "Would more labels help?"),
    ("learning-curves", "Training", "Learning curves"),
    ("lr-find", "LR test", "Learning-rate range test"),
    ("confusion", "Confusions", "Where the model confuses labels"),
    ("per-class", "Per label", "Results per label"),
    ("fairness", "Fairness", "Fairness"),
    ("errors", "Errors", "Most confident errors"),
    ("data-quality", "Data", "Data quality"),
    ("recipe", "Recipe", "Recipe"),
]


def sections_for(report: RunReport) -> list[tuple[str, str, str]]:
    """The sections this run has data for: classification keeps every section (empty ones say why); other
    tasks leave out the confusion matrix and per-label results when their metrics have none, and any run
    without before/after samples leaves that section out."""
    tuned = report.tuned or {}
    present = {
        "samples": bool(report.samples),
        "cross-validation": has_cv(report),
        "budget-search": has_search(report),
        "domain-adaptation": has_adapt(report) or has_augment(report) or has_shift(report),
        "data-curve": has_data_curve(report),
        "lr-find": has_lr_find(report),
        "confusion": report.is_classification or bool(tuned.get("confusion_matrix")),
        "per-class": report.is_classification or bool(tuned.get("per_class")),
        "fairness": has_fairness(report),
    }
    errors_heading = "Most confident errors" if report.classification_errors else "Examples to review"
    return [
        (sid, label, errors_heading if sid == "errors" else heading)
        for sid, label, heading in SECTIONS
        if present.get(sid, True)
    ]


def render_html(report: RunReport) -> str:
    """The whole page as one string."""
    builders: dict[str, Callable[[RunReport], str]] = {
        "summary": _summary,
        "comparison": _comparison,
        "cross-validation": lambda r: paragraph(cv_lead(r), "lead") + html_table(cv_table(r)),
        "budget-search": lambda r: paragraph(search_lead(r), "lead") + html_table(search_table(r)),
        "samples": _samples,
        "domain-adaptation": _adaptation,
        "data-curve": _data_curve,
        "learning-curves": _learning_curves,
        "lr-find": _lr_find,
        "confusion": _confusion,
        "per-class": _per_class,
        "fairness": _fairness,
        "errors": _errors,
        "data-quality": _data_quality,
        "recipe": _recipe,
    }
    sections = sections_for(report)
    body = "\n".join(section(sid, heading, builders[sid](report)) for sid, _, heading in sections)
    name = report.run_dir.resolve().name
    lead = (f'<p class="lead">Fine-tuning report for the run in <code>{escape(str(report.run_dir.resolve()))}</code>.'
            "\nAll scores are measured on the test split, which neither training nor model selection saw.</p>")
    footer = f"Generated by tailorlm {__version__} on {time.strftime('%Y-%m-%d %H:%M')} from {_sources(report)}."
    return page(f"tailorlm report · {name}", "run report", name, lead, [(sid, label) for sid, label, _ in sections],
                body, footer)


# ------------------------------------------------------------------------------------------ building blocks


def _sources(report: RunReport) -> str:
    """The input files this page was drawn from, so a reader knows what a missing section means."""
    names = ["metrics.json"]
    names += ["data_report.json"] if report.data_report else []
    names += ["log_history.json"] if report.log_history else []
    names += ["recipe.resolved.yaml"] if report.recipe_text is not None else []
    return ", ".join(names)


def _adaptation(r: RunReport) -> str:
    """Continued pretraining (adapt.pretrain), self-training (adapt.self_train) and instance weighting
    (adapt.instance_weighting), each only when it ran."""
    html = paragraph(adapt_lead(r), "lead") + html_table(adapt_table(r)) if has_pretrain(r) else ""
    if has_shift(r):
        html += "<h3>Domain shift</h3>" + paragraph(shift_lead(r)) + html_table(shift_table(r))
    if has_self_train(r):
        html += "<h3>Self-training</h3>" + paragraph(self_train_lead(r)) + html_table(self_train_table(r))
    if has_instance_weighting(r):
        html += ("<h3>Instance weighting</h3>" + paragraph(weighting_lead(r)) + html_table(weighting_table(r))
                 + html_table(weighted_rows_table(r)))
    if has_augment(r):
        html += "<h3>Augmentation</h3>" + paragraph(augment_lead(r)) + html_table(augment_table(r))
    return html


def _data_curve(r: RunReport) -> str:
    """The answer first, then how it was reached, the curve and the numbers (evaluate/data_curve.py)."""
    return (f'<p class="headline">{escape(data_curve_answer(r))}</p>' + paragraph(data_curve_lead(r), "lead")
            + safe_chart(lambda: data_curve_chart_svg(r), "test score against labelled training rows, log scale, "
                         "with the fitted power law and the extrapolation") + html_table(data_curve_table(r)))


def _lr_find(r: RunReport) -> str:
    """The range test's rule and result, the loss-vs-rate curve and its numbers (train/lr_find.py)."""
    return (paragraph(lr_find_lead(r), "lead") + safe_chart(lambda: lr_find_chart_svg(r), "training loss against "
            "learning rate on a log scale, with the suggested rate marked") + html_table(lr_find_table(r)))


# ------------------------------------------------------------------------------------------ sections


def _summary(report: RunReport) -> str:
    better = report.improvement()
    tone = "up" if better and better > 0 else "down" if better and better < 0 else ""
    parts = [_verdict(report), f'<p class="headline {tone}">{escape(report.headline())}</p>', _kpis(report)]
    parts.append('<dl class="facts">' + "".join(
        f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts(report)
    ) + "</dl>")
    return "\n".join(parts)


def _verdict(report: RunReport) -> str:
    """The verdict sentence (evaluate/verdict.py) above everything else, with what to try when the model lost."""
    verdict = report.verdict
    if not verdict.get("sentence"):
        return ""
    tone = {True: "up", False: "down"}.get(verdict.get("beats_best_reference"), "")
    tips = "".join(f"<li>{escape(tip)}</li>" for tip in verdict.get("advice") or [])
    return (f'<p class="headline verdict {tone}"><strong>{escape(verdict["sentence"])}</strong></p>'
            + (f'<ul class="advice">{tips}</ul>' if tips else ""))


def _kpis(report: RunReport) -> str:
    """Four big numbers: the tuned headline metric, the best baseline's, the change, one more tuned score."""
    tuned = report.tuned
    base = report.best_baseline
    gain = report.gain()
    better = report.improvement()
    main, title = report.main_metric, report.main_title
    n = count((tuned or {}).get("n"))
    if report.is_classification:
        fourth = (fmt(number(tuned, "accuracy")), f"accuracy on {n} test texts")
    else:
        other = next((k for k, _ in report.metric_columns if k != main), None)
        fourth = ((fmt(number(tuned, other)), f"{dict(report.metric_columns)[other]} after fine-tuning ({n} test rows)")
                  if other else (n, "test rows"))
    cards: list[tuple[str, str, str]] = [
        (fmt(number(tuned, main)), f"{title} after fine-tuning", ""),
        (fmt(number(base.metrics, main)) if base else "—",
         f"{title} of the best baseline ({base.name.lower()})" if base else
         "no reference baseline (only floors measured)" if report.measured_floors else "no baseline measured", ""),
        (signed(gain) if gain is not None else "—",
         "change from fine-tuning" + (" (lower is better)" if report.lower_is_better else ""),
         "up" if better and better > 0 else "down" if better and better < 0 else ""),
        (*fourth, ""),
    ]
    return '<div class="kpis">' + "".join(
        f'<div class="kpi {tone}"><div class="value">{escape(value)}</div>'
        f'<div class="label">{escape(label)}</div></div>'
        for value, label, tone in cards
    ) + "</div>"


def _comparison(report: RunReport) -> str:
    lead = (
        "The same test texts scored by two cheap alternatives measured before tuning and by the fine-tuned "
        "model. The best value in each column is highlighted (not the calibration error: its lowest value does not "
        "make a better model)." if report.is_classification else
        "The same test rows scored before tuning and by the fine-tuned model. The best value in each column is "
        "highlighted (the lowest for losses, perplexity and error rates)."
    )
    parts = [paragraph(lead, "lead"), html_table(comparison_table(report))]
    if floor_note(report):
        parts.append(paragraph(floor_note(report), "muted"))
    measured = [(s.key, s.name, s.metrics) for s in report.systems if s.measured and s.metrics]
    columns = [c for c in report.metric_columns if greater_is_better(c[0])]
    if measured and columns:
        parts.append(safe_chart(lambda: comparison_chart(measured, columns),
                                "grouped bar chart of the scores of each system"))
    methods = [(s.name, str(s.metrics.get("method"))) for s in report.systems
               if s.metrics and s.metrics.get("method")]
    if methods:
        parts.append("<h3>How the baselines were measured</h3><ul class=\"plain\">" + "".join(
            f"<li><strong>{escape(name)}</strong>: {escape(how)}</li>" for name, how in methods
        ) + "</ul>")
    parts.append('<dl class="glossary">' + "".join(
        f"<dt>{escape(title)}</dt><dd>{escape(METRIC_HELP.get(key, ''))}</dd>"
        for key, title in report.metric_columns
    ) + "</dl>")
    return "\n".join(parts)


def _samples(report: RunReport) -> str:
    table = samples_table(report)
    return "\n".join([paragraph(
        "Held-out test examples with the reference and the model's output before and after fine-tuning, "
        "decoded with the same settings.", "lead"
    ), html_table(table, text_columns=record_text_columns(table))])


def _learning_curves(report: RunReport) -> str:
    if not report.log_history:
        return empty("No training log (log_history.json) in this run directory, so no curves to show.")
    best_step = report.train.get("best_step")
    parts = [paragraph(
        "Training loss should fall; validation loss and score show whether the model kept improving on texts "
        "it was not trained on. The dashed line marks the checkpoint that was kept.", "lead"
    ), safe_chart(
        lambda: learning_curves_chart(
            report.train_loss_points(), report.eval_entries(), report.eval_metric_names(),
            best_step if isinstance(best_step, int) else None,
        ),
        "line charts of training loss by step and validation loss and scores by epoch",
    )]
    table = eval_table(report)
    if table:
        parts += ["<h3>Validation after each evaluation</h3>", html_table(table)]
    return "\n".join(parts)


def _confusion(report: RunReport) -> str:
    matrix = (report.tuned or {}).get("confusion_matrix")
    if not matrix:
        return empty("No confusion matrix in metrics.json.")
    parts = [paragraph(
        "Rows are the true label, columns the label the fine-tuned model predicted; cells count test texts. "
        "Colour shows the share of each true label's texts, so the diagonal is what it got right.", "lead"
    ), safe_chart(lambda: confusion_chart(matrix, report.labels),
                  "confusion matrix heat map of the fine-tuned model")]
    confusions = report.top_confusions()
    if confusions:
        parts.append("<h3>Most frequent mix-ups</h3><ul class=\"plain\">" + "".join(
            f"<li>{n} of {total} <strong>{escape(true)}</strong> texts ({n / total:.0%}) were labelled "
            f"<strong>{escape(pred)}</strong></li>"
            for true, pred, n, total in confusions
        ) + "</ul>")
    return "\n".join(parts)


def _per_class(report: RunReport) -> str:
    tuned = (report.tuned or {}).get("per_class")
    if not tuned:
        return empty("No per-label results in metrics.json.")
    base = report.best_baseline
    base_pc = (base.metrics or {}).get("per_class") if base else None
    lead = "F1 for each label of the fine-tuned model"
    lead += f", next to the best baseline ({base.name.lower()})." if base_pc else "."
    parts = [paragraph(lead + " Labels with few test texts give less certain scores.", "lead")]
    parts.append(safe_chart(
        lambda: per_class_chart(report.labels, tuned, base_pc, base.key if base else "",
                                base.name if base else ""),
        "bar chart of F1 per label",
    ))
    parts.append(html_table(per_class_table(report)))
    return "\n".join(parts)


def _fairness(report: RunReport) -> str:
    """The bias audit (report/fairness.py builds the blocks; the Markdown report draws the same)."""
    parts = []
    for kind, value in fairness_blocks(report):
        if kind == "p":
            parts.append(paragraph(value, "lead"))
        elif kind == "h3":
            parts.append(f"<h3>{escape(value)}</h3>")
        elif kind == "list":
            parts.append('<ul class="plain">' + "".join(f"<li>{escape(s)}</li>" for s in value) + "</ul>")
        else:
            text = record_text_columns(value) if value.headers[:1] == ["Text"] else frozenset()
            parts.append(html_table(value, text_columns=text))
    return "\n".join(parts)


def _errors(report: RunReport) -> str:
    table = errors_table(report)
    if not table:
        return empty("No errors were recorded (the model got every test text right, or top_errors is 0).")
    if not report.classification_errors:
        return "\n".join([paragraph(
            "Test examples the fine-tuned model got wrong or scored worst on, as the task recorded them: worth "
            "an expert's look, since some reveal a wrong or ambiguous reference in the data.", "lead"
        ), html_table(table, text_columns=record_text_columns(table))])
    return "\n".join([paragraph(
        "The wrong predictions the fine-tuned model was most sure of. They are worth an expert's look: "
        "some are model mistakes, others reveal a wrong or ambiguous label in the data.", "lead"
    ), html_table(table, text_columns=frozenset({1}))])


def _data_quality(report: RunReport) -> str:
    data = report.data_report
    if not data:
        return empty("No data report (data_report.json) in this run directory.")
    parts: list[str] = []
    warnings = [str(w) for w in data.get("warnings") or []] + unknown_labels(data) + input_overlap(data)
    if warnings:
        parts.append('<div class="callout"><strong>Warnings</strong><ul>' + "".join(
            f"<li>{escape(w)}</li>" for w in warnings
        ) + "</ul></div>")
    parts += ["<h3>Sources</h3>", html_table(sources_table(data))]
    blocks = [("Rows after each stage", stages_table(data)), ("Rows removed, by reason", removed_table(data))]
    parts.append('<div class="grid-2">' + "".join(
        f"<div><h3>{escape(title)}</h3>{html_table(t) if t else empty('nothing recorded')}</div>"
        for title, t in blocks
    ) + "</div>")
    labels = label_table(data)
    if labels:
        parts += ["<h3>Texts per label</h3>", html_table(labels)]
    lengths = length_table(data)
    unit = escape(str(data.get("length_unit") or "characters"))
    if lengths:
        parts += [f"<h3>Text length ({unit})</h3>", html_table(lengths)]
    for title, table in other_length_tables(data):
        parts += [f"<h3>{escape(title)} ({unit})</h3>", html_table(table)]
    return "\n".join(parts)


def _recipe(report: RunReport) -> str:
    if report.recipe_text is None:
        return empty("No recipe (recipe.resolved.yaml) in this run directory.")
    return (
        '<p class="lead">Every setting this run used, defaults filled in: rerun it with '
        "<code>tailor run</code> on this file.</p>"
        + f"<details><summary>recipe.resolved.yaml</summary><pre>{escape(report.recipe_text)}</pre></details>"
    )

