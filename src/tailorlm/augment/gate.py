"""``augment.gate``: train with and without augmentation, keep the augmented model only when it clearly helps.

Augmentation often does not help pretrained transformers (Longpre et al. 2020), so the default is to measure it.
The augmented run is ``output_dir`` itself; the plain run (``augment.method: none``, everything else the same) is
``output_dir/augment-off/``. Both are scored on the same validation split (augmentation touches only the training
rows) by the metric that picks checkpoints. The augmented model is kept only when it beats the plain one by more
than ``augment.min_gain`` plus the noise of that score. The noise is the binomial standard error
sqrt(m(1 - m)/n) of the plain run's validation score m over its n rows (the normal approximation of a bootstrap
over validation predictions, which the runs do not store); a metric outside [0, 1] (a loss) gets ``min_gain``
alone. When the plain model wins, its files replace the augmented run's in ``output_dir`` (which move to
``output_dir/augment-on/``), so ``output_dir`` always holds the kept model; ``metrics.json`` ``augment.gate``
says which was kept and why.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from tailorlm.metric_names import greater_is_better
from tailorlm.recipe import Recipe

PLAIN_DIR = "augment-off"
AUGMENTED_DIR = "augment-on"


def plain_recipe(recipe: Recipe) -> Recipe:
    """The same recipe without augmentation, in ``output_dir/augment-off/``."""
    plain = recipe.model_copy(deep=True)
    plain.augment.method = "none"
    plain.output_dir = str(Path(recipe.output_dir) / PLAIN_DIR)
    return plain


def noise(score: float, rows: int) -> float:
    """The binomial standard error of a validation score in [0, 1]; 0 for other scores or no rows."""
    if rows <= 0 or not 0.0 <= score <= 1.0:
        return 0.0
    return math.sqrt(score * (1.0 - score) / rows)


def decide(augmented: dict[str, Any], plain: dict[str, Any], metric: str, min_gain: float) -> dict[str, Any]:
    """The gate's record: which model is kept (``augmented`` or ``plain``), the scores, the margin and why."""
    a, p = augmented.get("validation", {}).get(metric), plain.get("validation", {}).get(metric)
    rows = int(plain.get("data", {}).get("validation", 0))
    record: dict[str, Any] = {"metric": metric, "augmented": a, "plain": p, "validation_rows": rows,
                              "plain_dir": PLAIN_DIR}
    if a is None or p is None:
        return record | {"kept": "plain", "reason": f"no validation {metric} to compare; the plain model stays"}
    margin = min_gain + noise(float(p), rows)
    gain = (a - p) if greater_is_better(metric) else (p - a)
    record |= {"gain": gain, "margin": margin, "noise": "binomial standard error of the plain validation score"}
    if gain > margin:
        return record | {"kept": "augmented", "reason": f"kept the augmented model: validation {metric} {a:.4f} vs "
                         f"{p:.4f} without augmentation, a gain of {gain:.4f} > margin {margin:.4f}"}
    return record | {"kept": "plain", "reason": f"kept the plain model: validation {metric} {a:.4f} with "
                     f"augmentation vs {p:.4f} without, a gain of {gain:.4f} is not above the noise margin "
                     f"{margin:.4f}"}


def keep_plain(output_dir: Path) -> None:
    """Put the plain run's files in ``output_dir``; the augmented run's same-named files go to augment-on/."""
    plain, aside = output_dir / PLAIN_DIR, output_dir / AUGMENTED_DIR
    if aside.exists():
        shutil.rmtree(aside)
    aside.mkdir()
    for entry in sorted(plain.iterdir()):
        target = output_dir / entry.name
        if target.exists():
            shutil.move(str(target), str(aside / entry.name))
        copy = shutil.copytree if entry.is_dir() else shutil.copy2
        copy(entry, target)


def selection_metric(recipe: Recipe) -> str:
    """The validation metric that picks checkpoints (training.metric or the task's), as metrics.json names it."""
    from tailorlm.tasks import get_task

    return (recipe.training.metric or get_task(recipe.task).default_metric).removeprefix("eval_")


def run_gated(recipe: Recipe, console: Console, extra_callbacks: list[Any] | None = None) -> dict[str, Any]:
    """The augmented run, the plain run, the choice; returns the kept run's metrics.json with ``augment.gate``."""
    from tailorlm.report import render_report
    from tailorlm.run import run
    from tailorlm.rundir import RunDir

    plain_cfg = plain_recipe(recipe)  # copied before the run resolves ``auto`` keys in place
    augmented = run(recipe, console, extra_callbacks)
    console.print("[bold]augment.gate: the same run without augmentation[/]")
    plain = run(plain_cfg, console, extra_callbacks)
    gate = decide(augmented, plain, selection_metric(recipe), recipe.augment.min_gain)
    console.print(f"augment.gate: {gate['reason']}")
    output_dir = Path(recipe.output_dir)
    if gate["kept"] == "plain":
        keep_plain(output_dir)
        gate["augmented_dir"] = AUGMENTED_DIR
    kept = plain if gate["kept"] == "plain" else augmented
    metrics = kept | {"augment": {**augmented.get("augment", {}), "gate": gate}}
    RunDir(output_dir).write_json("metrics.json", metrics)
    render_report(output_dir)
    return metrics
