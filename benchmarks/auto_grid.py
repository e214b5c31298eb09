"""The grid that chose the ``auto`` training defaults (train/auto.py, docs/defaults.md), on real shared data.

Each row is one ``tailor run`` of a scenario (benchmarks/realdata.py: a task at a size a small team has, or the
whole shared file) under one setting: ``before`` is the defaults before ``auto`` existed (3 epochs, 5e-5, batch
32, warm-up 0.06), ``auto`` is a recipe that names only the data, and ``lr=...``/``steps=...`` rows vary one thing.
Printed and appended to a JSON Lines file, with the best *reference* baseline of the same run beside the tuned score.

    python -m benchmarks.auto_grid --scenarios ner-small qa-small --settings before auto "lr=3e-4"
    python -m benchmarks.auto_grid --list

Settings are ``name`` (before, auto) or ``key=value[,key=value]`` recipe overrides (``training.`` may be left off);
``budget=20m`` runs ``tailor run --budget 20m`` (the search, then the winner with its baselines), its clock
started where the run starts.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.realdata import build

BEFORE = {"training.epochs": 3, "training.learning_rate": 5e-5, "training.batch_size": 32, "training.warmup": 0.06}
NAMED = {"before": BEFORE, "auto": {}}
#: short spellings for the grid's command line
ALIASES = {"lr": "learning_rate", "budget": "search.budget"}


def parse_setting(text: str) -> dict[str, Any]:
    if text in NAMED:
        return dict(NAMED[text])
    overrides: dict[str, Any] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = ALIASES.get(key, key)
        key = key if "." in key else f"training.{key}"
        overrides[key] = _number(value)
    return overrides


def _number(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def run_one(scenario: Any, setting: str, out: Path, baselines: bool) -> dict[str, Any]:
    from rich.console import Console

    from tailorlm.recipe import apply_overrides, recipe_from_dict
    from tailorlm.run import run
    from tailorlm.tune.budget import run_with_budget

    raw = scenario.recipe(out / scenario.name / setting.replace("=", "-").replace(",", "_"))
    if not baselines:
        raw["baseline"] = {"zero_shot": False, "linear_probe": False}
    overrides = [f"{k}={v}" for k, v in parse_setting(setting).items()]
    recipe = recipe_from_dict(apply_overrides(raw, overrides), f"{scenario.name}:{setting}")
    started = time.perf_counter()
    console = Console(stderr=True, quiet=True)
    metrics = run_with_budget(recipe, console, started=time.monotonic()) if recipe.search.budget else \
        run(recipe, console)
    return summarize(metrics, scenario.name, scenario.task, setting, time.perf_counter() - started)


def summarize(metrics: dict[str, Any], name: str, task: str, setting: str, wall_s: float) -> dict[str, Any]:
    """One result row from a run's metrics.json: the tuned score beside the best reference baseline's."""
    from tailorlm.evaluate.floors import is_floor
    from tailorlm.metric_names import TASK_MAIN_METRIC, greater_is_better

    main = TASK_MAIN_METRIC.get(task, "loss")
    pick = max if greater_is_better(main) else min
    refs = {k: v.get(main) for k, v in (metrics.get("baseline") or {}).items()
            if isinstance(v, dict) and isinstance(v.get(main), int | float) and not is_floor(k, task, v)}
    best = pick(refs, key=refs.__getitem__) if refs else None
    auto = {k: v["value"] for k, v in (metrics.get("auto") or {}).items()}
    return {
        "scenario": name, "setting": setting, "metric": main,
        "tuned": (metrics.get("tuned") or {}).get(main),
        "best_reference": best, "best_reference_value": refs.get(best) if best else None,
        "baselines": {k: (v or {}).get(main) for k, v in (metrics.get("baseline") or {}).items()
                      if isinstance(v, dict)},
        "validation": (metrics.get("validation") or {}).get(main),
        "steps": (metrics.get("train") or {}).get("global_step"),
        "epochs_run": (metrics.get("train") or {}).get("epochs_run"),
        "auto": auto, "train_rows": (metrics.get("data") or {}).get("train"),
        "test_rows": (metrics.get("data") or {}).get("test"),
        "wall_s": round(wall_s, 1),
        "significance": (metrics.get("significance") or {}).get("vs_baseline"),
        "search": search_summary(metrics.get("search")),
    }


def search_summary(search: dict[str, Any] | None) -> dict[str, Any] | None:
    """A budgeted run's time against its budget and its trial counts, so the row can show the budget was kept."""
    if not search:
        return None
    keys = ("budget", "budget_s", "wall_s", "wall_over_budget", "counts", "stopped")
    return {k: search.get(k) for k in keys} | {"winner": (search.get("best") or {}).get("params")}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Scenario x setting: tuned score, best reference baseline, the difference, steps and wall time."""
    lines = ["| scenario | setting | train rows | steps | tuned | best reference baseline | tuned - reference | "
             "wall |", "|---|---|---|---|---|---|---|---|"]
    references = {r["scenario"]: (r["best_reference"], r["best_reference_value"]) for r in rows
                  if r.get("best_reference")}
    for r in rows:
        name, value = references.get(r["scenario"], (None, None))
        gain = f"{r['tuned'] - value:+.3f}" if value is not None and r.get("tuned") is not None else "–"
        auto = ", ".join(f"{k.removeprefix('training.')} {v}" for k, v in (r.get("auto") or {}).items())
        setting = r["setting"] + (f" ({auto})" if auto else "")
        tuned = f"{r['tuned']:.3f}" if r.get("tuned") is not None else "–"
        ref = f"{name.replace('_', ' ')} {value:.3f}" if name else "–"
        lines.append(f"| {r['scenario']} | {setting} | {r.get('train_rows')} | {r.get('steps')} | {tuned} | "
                     f"{ref} | {gain} | {r['wall_s'] / 60:.0f} min |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="*", default=["classification-small", "qa-small", "ner-small"])
    parser.add_argument("--settings", nargs="*", default=["before", "auto"])
    parser.add_argument("--data", type=Path, default=Path("/tmp/tailorlm-realdata"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/tailorlm-auto-grid"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/auto_grid.jsonl"))
    parser.add_argument("--no-baselines", action="store_true", help="skip baselines (grid rows after the first)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the results file as a Markdown table")
    args = parser.parse_args()
    if args.table:
        print(markdown_table([json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]))
        return
    scenarios = build(args.data)
    if args.list:
        print("\n".join(scenarios))
        return
    args.results.parent.mkdir(parents=True, exist_ok=True)
    for name in args.scenarios:
        for setting in args.settings:
            row = run_one(scenarios[name], setting, args.out, baselines=not args.no_baselines)
            row["date"] = time.strftime("%Y-%m-%d")
            print(json.dumps(row), flush=True)
            with args.results.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
