"""``tailor runs``: one row per run directory, tune study and comparison under a folder.

Why it reads so little: a team's ``runs/`` holds hundreds of runs, each with weights and checkpoints; the index
opens only ``status.json``, ``metrics.json``, ``tune.json`` (and a resolved recipe when a run died before writing
its metrics), never a model folder, and imports nothing heavy, so ``tailor runs`` answers in well under a second.

What a row says:

- ``status``: ``finished``; ``failed`` with the reason; ``running`` while the process named by ``pid`` is alive;
  ``interrupted`` when it stopped (Ctrl-C, SIGTERM: ``status.json`` says so, with whether ``--resume`` can
  continue) or when ``status.json`` still says running but that process is gone (killed, power cut);
- the headline: the task's main test metric and its change over the best *reference* baseline (the verdict's
  figures when ``metrics.json`` has them; floors never count, evaluate/floors.py); a tune study shows its best
  validation score instead, a comparison its first significance verdict;
- the date the run started (``run_info.json``'s time) and its wall time (``timings_s.total``, or start to the last
  status).

The walk is bounded: at most ``MAX_DEPTH`` folders deep and ``MAX_FOLDERS`` folders in all; hidden folders,
symbolic links and the folders a run fills with weights (``model/``, ``checkpoints/`` ...) are never entered.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tailorlm.errors import UserError
from tailorlm.evaluate.floors import is_floor
from tailorlm.metric_names import TASK_MAIN_METRIC, greater_is_better
from tailorlm.rundir import process_alive

#: folders a run fills with weights, checkpoints or caches: never a run of their own, never entered
SKIP_FOLDERS = frozenset({"model", "model_merged", "checkpoints", "adapted", "lr-find", "__pycache__", "mlruns",
                          "node_modules", "site-packages"})
MAX_DEPTH = 6
MAX_FOLDERS = 20_000
#: JSON files bigger than this are not read (an index must stay fast; tailorlm's own small files are far below)
MAX_JSON_BYTES = 8 * 2**20


@dataclass
class Entry:
    """One row of the index."""

    path: str  # relative to the indexed folder
    kind: str  # run, seeds, kfold, multitask, tune, adapt_study, comparison
    status: str  # finished, failed, running, interrupted, unknown
    detail: str = ""  # the failure's reason, whether --resume can continue, the running job's progress
    task: str | None = None
    model: str | None = None
    metric: str | None = None
    value: float | None = None
    baseline: str | None = None
    baseline_value: float | None = None
    gain: float | None = None
    started: str | None = None  # ISO time
    wall_s: float | None = None
    pid: int | None = None
    resumable: bool | None = None
    files: list[str] = field(default_factory=list)  # report.html, tune_report.html, compare.md ... when present

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_json(path: Path) -> dict[str, Any]:
    """A small JSON object, or {} when it is missing, too big, unreadable or not an object (a half-written run)."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return {}
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _parse_time(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------ status


def resolve_status(status: dict[str, Any], has_metrics: bool) -> tuple[str, str, bool | None]:
    """(status, detail, resumable) from status.json; "running" only while its writer's pid is alive."""
    state = status.get("status")
    resumable = status.get("resumable") if isinstance(status.get("resumable"), bool) else None
    if state == "running":
        pid = status.get("pid")
        if pid is None:
            return "running", "no pid recorded (written by an older tailorlm): cannot tell whether it is alive", None
        if process_alive(pid):
            return "running", f"pid {pid}", None
        return ("interrupted", f"process {pid} is gone (killed?); `tailor run RECIPE --resume` continues it from "
                "its last checkpoint, if it saved one", None)
    if state == "interrupted":
        tail = "; `tailor run RECIPE --resume` continues it" if resumable else "; no checkpoint: rerun it"
        return "interrupted", f"{status.get('reason') or 'interrupted'}{tail}", resumable
    if state == "failed":
        return "failed", str(status.get("reason") or "failed (no reason recorded)"), resumable
    if state == "finished":
        return "finished", "", None
    return ("finished" if has_metrics else "unknown"), "", None


# ------------------------------------------------------------------------------------------------ headline


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The main test metric, the best reference baseline and the change: the verdict's figures when recorded."""
    facts = metrics.get("verdict") if isinstance(metrics.get("verdict"), dict) else {}
    if facts.get("metric") and _number(facts.get("tuned")) is not None:
        return {"metric": facts["metric"], "value": _number(facts["tuned"]), "baseline": facts.get("best_reference"),
                "baseline_value": _number(facts.get("best_reference_value")), "gain": _number(facts.get("gain"))}
    tuned = metrics.get("tuned") if isinstance(metrics.get("tuned"), dict) else {}
    task = str(metrics.get("task"))
    metric = "f1_macro" if "f1_macro" in tuned else TASK_MAIN_METRIC.get(task, "loss")
    value = _number(tuned.get(metric))
    refs = {name: score for name, entry in (metrics.get("baseline") or {}).items()
            if isinstance(entry, dict) and (score := _number(entry.get(metric))) is not None
            and not is_floor(name, task, entry)}
    result: dict[str, Any] = {"metric": metric if value is not None else None, "value": value}
    if refs and value is not None:
        best = (max if greater_is_better(metric) else min)(refs, key=refs.__getitem__)
        result |= {"baseline": best, "baseline_value": refs[best], "gain": value - refs[best]}
    return result


def _model_name(metrics: dict[str, Any]) -> str | None:
    model = metrics.get("model")
    if isinstance(model, dict):
        return model.get("name") or model.get("base")
    return model if isinstance(model, str) else None


def _kind(names: set[str], metrics: dict[str, Any]) -> str:
    if "study.json" in names:
        return "adapt_study"
    if isinstance(metrics.get("seeds"), dict):
        return "seeds"
    if "folds" in names:
        return "kfold"
    if isinstance(metrics.get("tasks"), dict):
        return "multitask"
    return "run"


def _recipe_facts(folder: Path) -> dict[str, Any]:
    """Task and model of a run that died before metrics.json: from recipe.resolved.yaml (small; YAML only then)."""
    path = folder / "recipe.resolved.yaml"
    if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
        return {}
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(raw, dict):
        return {}
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    return {"task": raw.get("task"), "model": model.get("name")}


def _times(folder: Path, status: dict[str, Any], metrics: dict[str, Any], state: str) -> tuple[str | None,
                                                                                               float | None]:
    """(start time as ISO text, wall seconds): run_info.json is written when a run starts, status.json at its end."""
    start = None
    for name in ("run_info.json", "status.json", "metrics.json", "tune.json", "compare.md"):
        try:
            start = (folder / name).stat().st_mtime
            break
        except OSError:
            continue
    total = _number((metrics.get("timings_s") or {}).get("total")) if isinstance(metrics.get("timings_s"),
                                                                                 dict) else None
    end = time.time() if state == "running" else _parse_time(status.get("time"))
    if total is None and start is not None and end is not None and end >= start:
        total = end - start
    started = datetime.fromtimestamp(start).isoformat(timespec="seconds") if start is not None else None
    return started, (round(total, 1) if total is not None else None)


# ------------------------------------------------------------------------------------------------ one folder


REPORT_FILES = ("report.html", "tune_report.html", "compare.md", "compare.png", "study.md")


def run_entry(folder: Path, rel: str, names: set[str]) -> Entry:
    """The row of a run directory (single run, seeds, folds, multi-task, adapt study)."""
    status = read_json(folder / "status.json")
    metrics = read_json(folder / "metrics.json") if "metrics.json" in names else {}
    state, detail, resumable = resolve_status(status, bool(metrics))
    facts = _recipe_facts(folder) if not metrics else {}
    started, wall = _times(folder, status, metrics, state)
    entry = Entry(rel, _kind(names, metrics), state, detail, task=metrics.get("task") or facts.get("task"),
                  model=_model_name(metrics) or facts.get("model"), started=started, wall_s=wall,
                  pid=status.get("pid") if state == "running" else None, resumable=resumable,
                  files=[n for n in REPORT_FILES if n in names])
    for key, value in headline(metrics).items() if metrics else ():
        setattr(entry, key, value)
    if state == "running" and entry.kind == "run":  # a single run's training progress, from log_history.json
        entry.detail = f"{detail} · {progress_text(progress(folder))}"
    return entry


def tune_entry(folder: Path, rel: str, names: set[str]) -> Entry:
    """The row of a ``tailor tune`` study: its best trial's validation score (trials have no test score)."""
    summary = read_json(folder / "tune.json")
    status = read_json(folder / "status.json")
    state, detail, resumable = resolve_status(status, bool(summary))
    counts = summary.get("counts") if isinstance(summary.get("counts"), dict) else {}
    done = ", ".join(f"{n} {k}" for k, n in counts.items())
    target = summary.get("trials_target")
    detail = "; ".join(p for p in (f"trials: {done}" + (f" of {target}" if target else "") if done else "",
                                   detail) if p)
    best = summary.get("best") if isinstance(summary.get("best"), dict) else {}
    facts = _recipe_facts(folder)
    started, wall = _times(folder, status, {}, state)
    metric = summary.get("metric")
    return Entry(rel, "tune", state, detail, task=facts.get("task"), model=facts.get("model"),
                 metric=f"validation {metric}" if metric else None, value=_number(best.get("value")),
                 started=started, wall_s=wall, pid=status.get("pid") if state == "running" else None,
                 resumable=resumable, files=[n for n in REPORT_FILES if n in names])


def comparison_entry(folder: Path, rel: str, names: set[str]) -> Entry:
    """The row of a ``tailor compare`` folder: how many runs, and the first line of its significance verdicts."""
    try:
        text = (folder / "compare.md").read_text(encoding="utf-8")[:200_000]
    except OSError:
        text = ""
    verdicts = [line[2:] for line in text.split("## Is the difference real?", 1)[-1].splitlines()
                if line.startswith("- ")] if "## Is the difference real?" in text else []
    header = next((line for line in text.splitlines() if line.startswith("| |")), "")
    runs = max(0, header.count("|") - 2)
    started, _ = _times(folder, {}, {}, "finished")
    detail = f"{runs} runs" + (f"; {verdicts[0]}" if verdicts else "")
    return Entry(rel, "comparison", "finished", detail, started=started, files=[n for n in REPORT_FILES
                                                                                if n in names])


def classify(folder: Path, rel: str, names: set[str]) -> Entry | None:
    """The row for ``folder`` (whose entries are ``names``), or None when tailorlm wrote nothing there."""
    if "tune.json" in names or ("study.db" in names and "trials" in names):
        return tune_entry(folder, rel, names)
    if "compare.md" in names and "compare.csv" in names:
        return comparison_entry(folder, rel, names)
    if "status.json" in names or "metrics.json" in names:
        return run_entry(folder, rel, names)
    return None


# ------------------------------------------------------------------------------------------------ the walk


def build_index(root: str | Path) -> list[Entry]:
    """Every run, study and comparison under ``root`` (itself included), newest first."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: not a folder; pass the folder your runs are in (default runs/), e.g. "
                        "`tailor runs runs/`")
    entries: list[Entry] = []
    stack: list[tuple[Path, int]] = [(root, 0)]
    seen = 0
    while stack and seen < MAX_FOLDERS:
        folder, depth = stack.pop()
        seen += 1
        try:
            with os.scandir(folder) as listing:
                children = list(listing)
        except OSError:
            continue
        names = {child.name for child in children}
        rel = "." if folder == root else folder.relative_to(root).as_posix()
        entry = classify(folder, rel, names)
        if entry is not None:
            entries.append(entry)
        if depth >= MAX_DEPTH:
            continue
        for child in children:
            if child.name.startswith(".") or child.name in SKIP_FOLDERS or not child.is_dir(follow_symlinks=False):
                continue
            stack.append((Path(child.path), depth + 1))
    return sort_entries(entries, "date")


SORT_KEYS = ("date", "path", "status", "value", "gain", "wall")


def improvement(entry: Entry) -> float | None:
    """The gain over the best baseline, signed so that larger is better (an rmse that fell is a positive one)."""
    if entry.gain is None or entry.metric is None:
        return None
    return entry.gain if greater_is_better(entry.metric) else -entry.gain


def sort_entries(entries: list[Entry], key: str) -> list[Entry]:
    """Rows ordered by ``key``: newest, highest value, best improvement over the baseline, longest first; path and
    status alphabetically. Rows without the key come last."""
    if key not in SORT_KEYS:
        raise UserError(f"--sort {key}: choose one of {', '.join(SORT_KEYS)}")
    if key in ("path", "status"):
        return sorted(entries, key=lambda e: (getattr(e, key), e.path))
    attribute = {"date": "started", "wall": "wall_s"}.get(key, key)
    value = improvement if key == "gain" else (lambda e: getattr(e, attribute))
    present = [e for e in entries if value(e) is not None]
    missing = [e for e in entries if value(e) is None]
    present.sort(key=lambda e: (value(e), e.path), reverse=True)
    return present + sorted(missing, key=lambda e: e.path)


# ------------------------------------------------------------------------------------------------ progress


def progress(folder: Path) -> dict[str, Any]:
    """How far a running job is: the last step, epoch and losses in log_history.json (the Trainer rewrites it at
    every log) against ``training.epochs`` of its resolved recipe."""
    history = []
    path = folder / "log_history.json"
    try:
        if path.stat().st_size <= MAX_JSON_BYTES:
            history = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        history = []
    history = [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []
    result: dict[str, Any] = {"logged": len(history)}
    if history:
        last = history[-1]
        result |= {"step": last.get("step"), "epoch": _number(last.get("epoch"))}
        losses = [h["loss"] for h in history if _number(h.get("loss")) is not None]
        evals = [h for h in history if any(k.startswith("eval_") and k != "eval_loss" for k in h)]
        result |= {"loss": losses[-1] if losses else None, "losses": losses[-200:]}
        if evals:
            result["last_eval"] = {k: v for k, v in evals[-1].items() if k.startswith("eval_")}
    epochs = _recipe_epochs(folder)
    if epochs is not None:
        result["epochs"] = epochs
    checkpoints = folder / "checkpoints"
    result["checkpoints"] = sorted(p.name for p in checkpoints.glob("checkpoint-*")) if checkpoints.is_dir() else []
    return result


def _recipe_epochs(folder: Path) -> float | None:
    path = folder / "recipe.resolved.yaml"
    try:
        text = path.read_text(encoding="utf-8") if path.stat().st_size <= MAX_JSON_BYTES else ""
    except OSError:
        return None
    import yaml

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    training = raw.get("training") if isinstance(raw, dict) else None
    return _number(training.get("epochs")) if isinstance(training, dict) else None


def progress_text(info: dict[str, Any]) -> str:
    """``epoch 1.50 of 4 · step 30 · loss 0.6123`` (what is known of it)."""
    parts = []
    if info.get("epoch") is not None:
        parts.append(f"epoch {info['epoch']:.2f}" + (f" of {info['epochs']:g}" if info.get("epochs") else ""))
    if info.get("step") is not None:
        parts.append(f"step {info['step']}")
    if info.get("loss") is not None:
        parts.append(f"loss {info['loss']:.4f}")
    return " · ".join(parts) or "starting (no training step logged yet)"


# ------------------------------------------------------------------------------------------------ the table


COLUMNS = ("run", "kind", "status", "task", "model", "test metric", "vs best baseline", "started", "wall")


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def table_cells(entry: Entry) -> list[str]:
    """The row as text, in COLUMNS order (the terminal table and the dashboard's list show the same cells)."""
    status = entry.status + (f": {entry.detail}" if entry.detail and entry.status != "finished" else "")
    if entry.kind in ("comparison", "tune") and entry.detail and entry.status == "finished":
        status += f" ({entry.detail})"
    metric = f"{entry.metric} {_fmt(entry.value)}" if entry.metric else "–"
    gain = (f"{entry.gain:+.4f} vs {entry.baseline}" if entry.gain is not None and entry.baseline else "–")
    started = entry.started.replace("T", " ")[:16] if entry.started else "–"
    return [entry.path, entry.kind, status, entry.task or "–", entry.model or "–", metric, gain, started,
            _wall(entry.wall_s)]


#: the terminal's columns: short cells, so that a row fits 80 columns; the reasons go in notes() under the table
TERMINAL_COLUMNS = ("run", "status", "model", "metric", "test", "gain", "started", "wall")
GAIN_NOTE = ("gain: test metric minus the best reference baseline's (rmse, loss, perplexity: lower is better); "
             "val.: a tune study's best validation score")


def terminal_cells(entry: Entry) -> list[str]:
    """The row as ``tailor runs`` prints it (TERMINAL_COLUMNS order: 80 columns; task, baseline and the full
    reasons are in ``--json``, the dashboard and the notes)."""
    run = entry.path + ("" if entry.kind == "run" else f" ({entry.kind})")
    metric = (entry.metric or "–").replace("validation ", "val. ")
    started = entry.started[5:16].replace("T", " ") if entry.started else "–"
    value = "–" if entry.value is None else f"{entry.value:.3f}" if abs(entry.value) < 100 else f"{entry.value:.1f}"
    return [run, entry.status, entry.model or "–", metric, value, "–" if entry.gain is None else f"{entry.gain:+.3f}",
            started, _wall(entry.wall_s)]


def notes(entries: list[Entry]) -> list[str]:
    """One line per row with something to say: why it failed, whether it can resume, how far it is, a verdict."""
    return [f"{entry.path}: {entry.status}: {entry.detail}" for entry in entries if entry.detail]
