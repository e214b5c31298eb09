"""``augment.gate``: train with and without augmentation, keep the augmented model only when it clearly helps.

Augmentation often does not help pretrained transformers (Longpre et al. 2020), so the default is to measure it.
The augmented run is ``output_dir`` itself; the plain run (``augment.method: none``, everything else the same) is
``output_dir/augment-off/``. Both are scored on the same validation split (augmentation touches only the training
rows) by the metric that picks checkpoints. After both runs, each saved model predicts the validation texts once
more and a paired bootstrap over those predictions (evaluate/stats.py) gives the 95% interval of the gain; the
augmented model is kept only when the interval's lower end is above ``augment.min_gain`` (the gain is more than
the bootstrap noise). A metric the bootstrap cannot score falls back to the binomial standard error
sqrt(m(1 - m)/n) of the plain run's validation score m over its n rows (plus ``min_gain``). When the plain model
wins, its files replace the augmented run's in ``output_dir`` (which move to ``output_dir/augment-on/``), so
``output_dir`` always holds the kept model; ``metrics.json`` ``augment.gate`` says which was kept and why.
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


def decide(augmented: dict[str, Any], plain: dict[str, Any], metric: str, min_gain: float,
           paired: dict[str, Any] | None = None) -> dict[str, Any]:
    """The gate's record: which model is kept (``augmented`` or ``plain``), the scores, the margin and why.

    ``paired``: the paired bootstrap of augmented minus plain on the validation predictions; None: the binomial
    standard error of the plain score stands in for the noise."""
    a, p = augmented.get("validation", {}).get(metric), plain.get("validation", {}).get(metric)
    rows = int(plain.get("data", {}).get("validation", 0))
    record: dict[str, Any] = {"metric": metric, "augmented": a, "plain": p, "validation_rows": rows,
                              "plain_dir": PLAIN_DIR, "min_gain": min_gain}
    if a is None or p is None:
        return record | {"kept": "plain", "reason": f"no validation {metric} to compare; the plain model stays"}
    if paired is not None and paired.get("low") is not None:
        return record | by_bootstrap(metric, paired, min_gain)
    margin = min_gain + noise(float(p), rows)
    gain = (a - p) if greater_is_better(metric) else (p - a)
    record |= {"gain": gain, "margin": margin, "noise": "binomial standard error of the plain validation score"}
    if gain > margin:
        return record | {"kept": "augmented", "reason": f"kept the augmented model: validation {metric} {a:.4f} vs "
                         f"{p:.4f} without augmentation, a gain of {gain:.4f} > margin {margin:.4f}"}
    return record | {"kept": "plain", "reason": f"kept the plain model: validation {metric} {a:.4f} with "
                     f"augmentation vs {p:.4f} without, a gain of {gain:.4f} is not above the noise margin "
                     f"{margin:.4f}"}


def by_bootstrap(metric: str, paired: dict[str, Any], min_gain: float) -> dict[str, Any]:
    """Keep the augmented model when the lower end of the gain's interval is above ``min_gain``."""
    sign = 1.0 if greater_is_better(metric) else -1.0
    gain = sign * paired["difference"]
    low = min(sign * paired["low"], sign * paired["high"])
    share = round(100 * paired["level"])
    interval = f"validation {metric} gain {gain:+.4f} ({share}% paired bootstrap interval from {low:+.4f})"
    record = {"gain": gain, "margin": min_gain, "noise": "paired bootstrap over validation predictions",
              "bootstrap": paired}
    if low > min_gain:
        return record | {"kept": "augmented", "reason": f"kept the augmented model: {interval}, above {min_gain}"}
    return record | {"kept": "plain", "reason": f"kept the plain model: {interval} is not above {min_gain}, "
                     "so the gain is within the noise"}


def validation_bootstrap(recipe: Recipe, output_dir: Path, metric: str) -> dict[str, Any] | None:
    """Both saved models predict the validation texts; the paired bootstrap of augmented minus plain, or None
    when the metric is not one the bootstrap scores (or there are no validation rows)."""
    from tailorlm.evaluate.predictions import label_rows
    from tailorlm.evaluate.stats import paired_bootstrap, system_stat
    from tailorlm.models.saved import load_saved_model
    from tailorlm.tasks import get_task

    task = get_task(recipe.task)
    data = task.prepare_data(recipe, lambda texts: [len(t.split()) for t in texts])  # the runs' own split
    if not len(data.validation):
        return None
    stats = []
    for folder in (output_dir / "model", output_dir / PLAIN_DIR / "model"):
        loaded = load_saved_model(folder, allow_pickle=recipe.model.allow_pickle)
        labels = list(loaded.meta.get("labels") or data.labels)
        probs = task.predict_proba(loaded.model, loaded.tokenizer, list(data.validation["text"]), loaded.max_length,
                                   32)
        stats.append(system_stat(label_rows(data.validation, probs, labels), metric, labels))
    if stats[0] is None or stats[1] is None:
        return None
    return paired_bootstrap(stats[0], stats[1], len(data.validation))


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
    metric = selection_metric(recipe)
    paired = validation_bootstrap(plain_cfg, Path(recipe.output_dir), metric)
    gate = decide(augmented, plain, metric, recipe.augment.min_gain, paired)
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
