"""Charts for the HTML report, drawn with matplotlib and returned as SVG text.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot: no global backend is chosen and no
figure is left open, so rendering a report inside a long-lived process (a notebook, ``tailor serve``) has no
side effects. SVG keeps the charts sharp at any zoom and lets the page stay a single self-contained file.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

#: One colour per system, the same in every chart; the tuned model gets the strongest one.
SYSTEM_COLOURS = {"zero_shot": "#b6c0cc", "linear_probe": "#7f9cc0", "pretrained": "#b6c0cc", "copy_source": "#d9cfae",
                  "tuned": "#2454d6"}
INK, MUTED, GRID = "#1f2733", "#5b6675", "#e3e7ed"
TRAIN_COLOUR, EVAL_COLOUR = "#2454d6", "#d9731f"
METRIC_COLOURS = ["#14915f", "#8a4fd1", "#c23b6b", "#0f8fa8"]

STYLE = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9.5,
    "axes.edgecolor": "#b9c1cc",
    "axes.labelcolor": INK,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.titlecolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "legend.frameon": False,
    "svg.hashsalt": "tailorlm-report",  # stable ids: the same run renders byte-identical charts
    "svg.fonttype": "path",  # text as outlines: looks the same without the font installed
}


def to_svg(fig: Figure) -> str:
    """Serialise a figure to an ``<svg>`` element without the XML prolog, DOCTYPE or metadata block."""
    buffer = io.StringIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buffer, format="svg", bbox_inches="tight", pad_inches=0.08, facecolor="white",
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)


def figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def short(label: str, limit: int = 22) -> str:
    """Long names would squeeze the plot to nothing; cut the middle, since names often differ at the end."""
    if len(label) <= limit:
        return label
    head = (limit - 1) // 2
    return label[:head] + "…" + label[-(limit - 1 - head):]


def style_axes(ax: Any, grid_axis: str = "y") -> None:
    ax.grid(axis=grid_axis, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(length=0)


def comparison_chart(
    systems: Sequence[tuple[str, str, dict[str, Any]]], columns: Sequence[tuple[str, str]]
) -> str:
    """Grouped bars: one group per metric, one bar per system (``(key, name, metrics)``), values on top."""
    with matplotlib.rc_context(STYLE):
        fig = figure(9.6, 3.6)
        ax = fig.subplots()
        x = np.arange(len(columns))
        width = 0.8 / max(len(systems), 1)
        for i, (key, name, metrics) in enumerate(systems):
            values = [float(metrics.get(col) or 0.0) for col, _ in columns]
            offset = (i - (len(systems) - 1) / 2) * width
            bars = ax.bar(x + offset, values, width * 0.92, label=name, color=SYSTEM_COLOURS.get(key, "#999"))
            ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=2, fontsize=7.5, color=MUTED)
        ax.set_xticks(x, [title for _, title in columns])
        top = _axis_top([float(m.get(col) or 0.0) for _, _, m in systems for col, _ in columns])
        ax.set_ylim(0, top * 1.12)
        ax.set_yticks(np.linspace(0, top, 6))
        ax.set_ylabel("score (higher is better)")
        style_axes(ax)
        ax.legend(loc="upper center", ncols=len(systems), bbox_to_anchor=(0.5, 1.13))
        return to_svg(fig)


def _axis_top(values: Sequence[float]) -> float:
    """1 for shares (classification), 100 for 0-100 scores (BLEU, chrF), else the largest value rounded up."""
    largest = max([v for v in values if np.isfinite(v)], default=1.0)
    if largest <= 1.0:
        return 1.0
    if largest <= 100.0:
        return 100.0
    return float(10 ** np.ceil(np.log10(largest)))


def learning_curves_chart(
    train_points: Sequence[tuple[float, float]],
    eval_entries: Sequence[dict[str, Any]],
    metric_names: Sequence[str],
    best_step: int | None,
) -> str | None:
    """Training loss by step, validation loss and scores by epoch; a panel without data is left out."""
    panels = []
    if train_points:
        panels.append("train")
    if any(_has(e, "eval_loss") for e in eval_entries):
        panels.append("eval_loss")
    if metric_names:
        panels.append("eval_metrics")
    if not panels:
        return None
    kept = [e.get("epoch") for e in eval_entries if best_step is not None and e.get("step") == best_step]
    best_epoch = kept[0] if kept else None
    with matplotlib.rc_context(STYLE):
        fig = figure(3.6 * len(panels) + 0.6, 3.0)
        axes = np.atleast_1d(fig.subplots(1, len(panels)))
        for ax, panel in zip(axes, panels, strict=True):
            style_axes(ax, "both")
            if panel == "train":
                steps, losses = zip(*train_points, strict=True)
                ax.plot(steps, losses, color=TRAIN_COLOUR, linewidth=1.6)
                ax.set(title="Training loss", xlabel="step", ylabel="loss")
                if best_step is not None:
                    ax.axvline(best_step, color=MUTED, linestyle="--", linewidth=1)
            elif panel == "eval_loss":
                _plot_points(ax, _by_epoch(eval_entries, "eval_loss"), EVAL_COLOUR, "validation loss")
                ax.set(title="Validation loss", xlabel="epoch", ylabel="loss")
            else:
                for colour, name in zip(METRIC_COLOURS, metric_names, strict=False):  # at most 4 lines
                    label = name.removeprefix("eval_").replace("_", " ")
                    _plot_points(ax, _by_epoch(eval_entries, name), colour, label)
                ax.set(title="Validation score", xlabel="epoch", ylabel="score")
                ax.legend(loc="lower right")
            if panel != "train" and best_epoch is not None:
                ax.axvline(best_epoch, color=MUTED, linestyle="--", linewidth=1)  # the kept checkpoint
        return to_svg(fig)


def _has(entry: dict[str, Any], key: str) -> bool:
    value = entry.get(key)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _by_epoch(entries: Sequence[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(e["epoch"], e[key]) for e in entries if _has(e, key) and _has(e, "epoch")]


def _plot_points(ax: Any, points: Sequence[tuple[float, float]], colour: str, label: str) -> None:
    if points:
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, color=colour, linewidth=1.6, marker="o", markersize=4, label=label)


def confusion_chart(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """Heat map coloured by row share (so rare labels are as readable as common ones), counts in the cells."""
    counts = np.asarray(matrix, dtype=float)
    n = len(labels)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    side = float(np.clip(0.55 * n + 2.2, 4.2, 13.0))
    with matplotlib.rc_context(STYLE):
        fig = figure(side + 1.2, side)
        ax = fig.subplots()
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="equal")
        if n <= 30:
            font = 9 if n <= 10 else 7
            for (i, j), value in np.ndenumerate(counts):
                colour = "white" if shares[i, j] > 0.55 else INK
                ax.text(j, i, f"{int(value)}", ha="center", va="center", fontsize=font, color=colour)
        names = [short(label) for label in labels]
        ax.set_xticks(range(n), names, rotation=40 if n > 3 else 0, ha="right" if n > 3 else "center")
        ax.set_yticks(range(n), names)
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label")
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        bar = fig.colorbar(image, ax=ax, shrink=0.7)
        bar.set_label("share of the true label's texts")
        bar.outline.set_visible(False)
        return to_svg(fig)


def per_class_chart(
    labels: Sequence[str], tuned: dict[str, Any], baseline: dict[str, Any] | None, baseline_key: str,
    baseline_name: str,
) -> str:
    """Horizontal bars of per-label F1: the fine-tuned model against the best baseline."""
    n = len(labels)
    series = [("tuned", "Fine-tuned", tuned)]
    if baseline is not None:
        series.insert(0, (baseline_key, baseline_name, baseline))
    with matplotlib.rc_context(STYLE):
        fig = figure(8.0, float(np.clip(0.42 * n * len(series) / 2 + 1.3, 2.4, 16.0)))
        ax = fig.subplots()
        y = np.arange(n)
        height = 0.8 / len(series)
        for i, (key, name, per_class) in enumerate(series):
            values = [float((per_class.get(label) or {}).get("f1") or 0.0) for label in labels]
            offset = (i - (len(series) - 1) / 2) * height
            colour = SYSTEM_COLOURS.get(key, "#999")
            bars = ax.barh(y - offset, values, height * 0.9, label=name, color=colour)
            ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=3, fontsize=7.5, color=MUTED)
        ax.set_yticks(y, [short(label, 28) for label in labels])
        ax.invert_yaxis()
        ax.set_xlim(0, 1.08)
        ax.set_xlabel("F1 (higher is better)")
        style_axes(ax, "x")
        handles, names = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], names[::-1], loc="lower center", ncols=len(series),
                  bbox_to_anchor=(0.5, 1.0))
        return to_svg(fig)


def lr_find_chart(lrs: Sequence[float], losses: Sequence[float | None], smoothed: Sequence[float | None],
                  suggestion: float | None, min_lr: float | None) -> str:
    """The learning-rate range test: loss against rate (log scale), the smoothed curve, the suggested rate."""
    with matplotlib.rc_context(STYLE):
        fig = figure(5.6, 3.2)
        ax = fig.subplots()
        style_axes(ax, "both")
        raw = [(x, y) for x, y in zip(lrs, losses, strict=False) if y is not None and np.isfinite(y)]
        smooth = [(x, y) for x, y in zip(lrs, smoothed, strict=False) if y is not None and np.isfinite(y)]
        if raw:
            ax.plot(*zip(*raw, strict=True), color=GRID, linewidth=1.0, marker=".", markersize=3,
                    markeredgecolor=MUTED, label="loss per step")
        if smooth:
            ax.plot(*zip(*smooth, strict=True), color=TRAIN_COLOUR, linewidth=1.8, label="smoothed")
            ys = [y for _, y in smooth]
            ax.set_ylim(min(ys) - 0.05 * (max(ys) - min(ys) + 1e-9), max(ys) * 1.1 + 1e-9)
        if min_lr:
            ax.axvline(min_lr, color=MUTED, linestyle=":", linewidth=1, label=f"minimum {min_lr:.2g}")
        if suggestion:
            ax.axvline(suggestion, color=EVAL_COLOUR, linestyle="--", linewidth=1.4,
                       label=f"suggested {suggestion:.2g}")
        ax.set_xscale("log")
        ax.set(title="Learning-rate range test", xlabel="learning rate", ylabel="training loss")
        ax.legend(loc="upper left")
        return to_svg(fig)


def data_curve_chart(points: Sequence[tuple[float, float]], fitted: Sequence[tuple[float, float]],
                     extrapolated: Sequence[tuple[float, float, float, float]], metric: str) -> str:
    """Test metric against labelled training rows (log scale): measured points, the fitted power law, and the
    extrapolation to more labels with its interval (``(rows, value, low, high)``)."""
    with matplotlib.rc_context(STYLE):
        fig = figure(5.6, 3.2)
        ax = fig.subplots()
        style_axes(ax, "both")
        if fitted:
            ax.plot(*zip(*fitted, strict=True), color=MUTED, linewidth=1.2, linestyle="--",
                    label="power-law slope (through 100%)")
        if points:
            ax.plot(*zip(*points, strict=True), color=TRAIN_COLOUR, linestyle="none", marker="o", markersize=6,
                    label="measured")
        if extrapolated:
            xs, ys, lows, highs = zip(*extrapolated, strict=True)
            errors = [np.subtract(ys, lows), np.subtract(highs, ys)]
            ax.errorbar(xs, ys, yerr=np.clip(errors, 0, None), color=EVAL_COLOUR, linestyle="none", marker="s",
                        markersize=5, capsize=4, label="extrapolated (95% interval)")
        ax.set_xscale("log")
        ax.set(title="Would more labels help?", xlabel="labelled training rows", ylabel=f"test {metric}")
        ax.legend(loc="lower right")
        return to_svg(fig)
