"""What a run directory becomes in a tracking store: dotted params, numeric metrics, curve points and tags.

Pure functions over the run directory's files (no MLflow import), so the mapping can be read and tested alone.
Keys follow the files they come from (``training.learning_rate``, ``tuned.f1_macro``, ``eval_loss``), so a
number in the MLflow UI can be found again in ``recipe.resolved.yaml``, ``metrics.json`` or
``log_history.json``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from tailorlm.recipe import Recipe, all_keys

#: metrics.json sections whose numeric leaves become metrics; a --seeds or k-fold summary adds its own
#: ``tasks`` and ``comparison``: a multi-task run's per-task metrics (multitask/), absent from a single-task one
RUN_METRIC_SECTIONS = ("baseline", "tuned", "validation", "train", "timings_s", "tasks", "comparison")
GROUP_METRIC_SECTIONS = (*RUN_METRIC_SECTIONS, "tuned_std", "seeds", "cv")
#: log_history.json keys that are curves; ``eval_*`` scores are added (not their runtime / throughput)
CURVE_KEYS = ("loss", "learning_rate", "grad_norm")
_EVAL_SKIP = ("_runtime", "_per_second")
#: what tracking stores accept in a key (MLflow's rule); anything else becomes "_"
_BAD_KEY_CHARS = re.compile(r"[^\w.\- :]")
#: param value limit: MLflow 3 stores 6000 characters, older MLflow servers refuse a whole batch over 500; the
#: full recipe is an artifact (recipe.resolved.yaml) anyway
DEFAULT_MAX_VALUE = 500
MAX_KEY = 250


def clean_key(key: str) -> str:
    """A key any store accepts: labels such as ``billing & payments`` or ``..`` must not break logging."""
    parts = [_BAD_KEY_CHARS.sub("_", part) for part in key.split(".")]
    parts = [part if part.strip(".") else "_" for part in parts]
    return ".".join(p or "_" for p in parts)[:MAX_KEY]


def param_value(value: Any, limit: int = DEFAULT_MAX_VALUE) -> str:
    """A recipe value as MLflow shows params (``str``; lists and mappings as JSON), cut to the store's limit."""
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def recipe_params(recipe: Recipe, limit: int = DEFAULT_MAX_VALUE) -> dict[str, str]:
    """Every leaf key of the resolved recipe, dotted (sections are walked by the schema, so the keys of a
    mapping value such as ``data.label_descriptions`` stay inside one JSON param)."""
    keys = all_keys()
    sections = {k.rsplit(".", 1)[0] for k in keys if "." in k}
    dumped = recipe.model_dump(mode="json")
    params: dict[str, str] = {}
    for key in keys:
        if key in sections:
            continue
        value: Any = dumped
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        params[key] = param_value(value, limit)
    return params


def numeric_leaves(value: Any, prefix: str) -> dict[str, float]:
    """Dotted numeric leaves of nested mappings; lists (confusion matrices), text and booleans are skipped."""
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for key, child in value.items():
            out |= numeric_leaves(child, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return {clean_key(prefix): float(value)}
    return {}


def run_metrics(metrics: dict[str, Any], sections: tuple[str, ...] = RUN_METRIC_SECTIONS) -> dict[str, float]:
    """``tuned.f1_macro``, ``baseline.linear_probe.f1_macro``, ``timings_s.train``, ... from metrics.json."""
    out: dict[str, float] = {}
    for section in sections:
        if section in metrics:
            out |= numeric_leaves(metrics[section], section)
    return out


def tune_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """A study's tune.json as metrics: the best trial's score and the trial counts per state."""
    out = numeric_leaves(summary.get("counts") or {}, "trials")
    best = summary.get("best") or {}
    if summary.get("metric") and isinstance(best.get("value"), (int, float)):
        out[clean_key(f"best.{summary['metric']}")] = float(best["value"])
        out["best.trial"] = float(best.get("number", -1))
    return out


def curve_points(log_history: list[dict[str, Any]]) -> list[tuple[str, float, int]]:
    """(key, value, step) for the training curves of Trainer's log history: loss, learning rate, eval scores."""
    points = []
    for entry in log_history:
        step = entry.get("step")
        if not isinstance(step, int):
            continue
        for key, value in entry.items():
            is_curve = key in CURVE_KEYS or (key.startswith("eval_") and not key.endswith(_EVAL_SKIP))
            if is_curve and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                points.append((clean_key(key), float(value), step))
    return points


def run_tags(recipe: Recipe, run_dir: Path, info: dict[str, Any], status: str) -> dict[str, str]:
    """What identifies a run: task, model, PEFT, versions, code revision, data hashes, where it lies, status."""
    meta = read_json(run_dir / "metrics.json").get("model") or {}
    tags = {
        "task": recipe.task,
        "model.name": str(meta.get("name") or recipe.model.name),
        "model.peft": recipe.model.peft.method,
        "tailorlm.version": str((info.get("versions") or {}).get("tailorlm", "")),
        "run_dir": str(run_dir.resolve()),
        "status": status,
    }
    if meta.get("base"):
        tags["model.base"] = str(meta["base"])
    if info.get("git_revision"):
        tags["git.revision"] = tags["mlflow.source.git.commit"] = str(info["git_revision"])
    for key, entry in (info.get("data_files") or {}).items():
        if isinstance(entry, dict) and entry.get("sha256"):
            tags[f"{key}.sha256"] = str(entry["sha256"])
    return {k: v for k, v in tags.items() if v}


def read_json(path: Path) -> Any:
    """A run file's content, or ``{}`` when it is missing or unreadable (a failed run has fewer files)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
