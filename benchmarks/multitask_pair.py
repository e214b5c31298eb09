"""Issue 15, acceptance 1: two real tasks trained jointly on the shipped MiniLM vs each alone, over seeds.

    python -m benchmarks.multitask_pair --out /tmp/mt-pair [--seeds 3] [--sts-rows 500] [--sentiment-rows 300]
                                       [--steps auto] [--max-length N] [--model minilm]

Tasks, cut from ../shared/data with ``random.Random(0)``-style seeded shuffles (pandas ``random_state=0``):
- ``sts``: STS Benchmark sentence pairs, a similarity score 0-5 (``regression``, text pairs), train and test
  disjoint rows of ``stsb_train_3000.csv``;
- ``books``: Amazon book-review sentiment (``classification``), train and test disjoint rows of
  ``amazon_books.csv``.
It writes ``OUT/recipe.yaml`` (``multitask.comparison: single_task``: each task also alone with the batches the
joint run gave it; ``training.seeds``) and runs it as ``tailor run`` does, into ``OUT/run/`` (``seed-<s>/`` per
seed; the top level's metrics.json and report.md hold the per-task summary). The printed Markdown table gives,
per task, the main metric of the multi-task model (mean ± std over seeds) and of the single-task one, the paired
bootstrap of the seed-means on the same test rows (evaluate/stats.py), the best reference baseline, the training
time of one joint run vs the single runs together, and the parameters served. It never runs in the test suite.

The single-task column trains each task on the batches the joint run gave it: a controlled comparison, not the
best a careful user would do alone. ``--alone`` adds that anchor: each task as its own ``tailor run`` with every
training key ``auto`` (its own epochs and rate for its own rows), the same seeds and max length, into
``OUT/alone-<task>/``; the table gains its mean ± std. ``--skip-multitask`` reuses the joint run already in OUT.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def cut(out: Path, sts_rows: int, sentiment_rows: int, test_rows: int, shared: Path = SHARED) -> dict[str, Path]:
    if not shared.is_dir():
        sys.exit(f"{shared}: not found; this benchmark needs ../shared/data beside the project (or --shared DIR)")
    out.mkdir(parents=True, exist_ok=True)
    sts = pd.read_csv(shared / "stsb_train_3000.csv").sample(frac=1.0, random_state=0).reset_index(drop=True)
    books = pd.read_csv(shared / "amazon_books.csv").sample(frac=1.0, random_state=0).reset_index(drop=True)
    files = {"sts_test": out / "sts_test.csv", "sts_train": out / "sts_train.csv",
             "books_test": out / "books_test.csv", "books_train": out / "books_train.csv"}
    columns = ["sentence1", "sentence2", "score"]
    sts.iloc[:test_rows][columns].to_csv(files["sts_test"], index=False)
    sts.iloc[test_rows:test_rows + sts_rows][columns].to_csv(files["sts_train"], index=False)
    books.iloc[:test_rows][["text", "label"]].to_csv(files["books_test"], index=False)
    books.iloc[test_rows:test_rows + sentiment_rows][["text", "label"]].to_csv(files["books_train"], index=False)
    return files


def recipe(files: dict[str, Path], out: Path, seed: int, steps: str | int, model: str) -> dict[str, Any]:
    return {
        "output_dir": str(out),
        "model": {"name": model},
        "tasks": [
            {"name": "sts", "task": "regression", "data": {
                "train": str(files["sts_train"]), "test": str(files["sts_test"]), "text_column": "sentence1",
                "text_pair_column": "sentence2", "label_column": "score"}},
            {"name": "books", "task": "classification", "data": {
                "train": str(files["books_train"]), "test": str(files["books_test"])}},
        ],
        "training": {"seed": seed},
        "multitask": {"sampling": "temperature", "steps": steps, "comparison": "single_task"},
    }


def table(metrics: dict[str, Any], alone: dict[str, dict[str, Any]] | None = None) -> str:
    """The per-task comparison of a ``--seeds`` multi-task run's top-level metrics.json, as Markdown; ``alone``:
    each task's own seeds run at ``auto`` (its top-level metrics.json), when measured."""
    comparison = metrics["comparison"]
    lines = ["| task | metric | multi-task (mean ± std) | single-task, same batches | multi vs single (paired, "
             "seed-means) | alone at auto (mean ± std) | best reference baseline |", "|---|---|---|---|---|---|---|"]
    for name, task in metrics["tasks"].items():
        metric, row = task["main_metric"], comparison["tasks"][name]
        test = row.get("paired_test") or {}
        paired = (f"diff {test['bootstrap']['difference']:+.4f} ({test['metric']}), p = {test['p_value']:.3g}"
                  if test else "–")
        verdict = metrics["verdict"][name]
        reference = f"{verdict.get('best_reference')} {verdict.get('best_reference_value', float('nan')):.4f}"
        own = (alone or {}).get(name)
        by_itself = f"{own['tuned'][metric]:.4f} ± {(own.get('tuned_std') or {}).get(metric, 0):.4f}" if own else "–"
        lines.append(f"| {name} | {metric} | {task['tuned'][metric]:.4f} ± {task['tuned_std'].get(metric, 0):.4f} | "
                     f"{row['single_task']:.4f} | {paired} | {by_itself} | {reference} |")
    time_s = comparison["train_time_s"]
    lines.append(f"\ntraining time per seed: multi-task {time_s['multi_task']:.0f} s vs the single-task runs "
                 f"together {time_s['single_tasks_sum']:.0f} s; parameters served {comparison['parameters_served']}")
    return "\n".join(lines)


def run_alone(raw: dict[str, Any], out: Path, seeds: int) -> dict[str, dict[str, Any]]:
    """Each task of the multi-task recipe as its own seeds run with every training key ``auto``; the top-level
    metrics.json of each, by task name."""
    from rich.console import Console

    from tailorlm.launch import run_recipe
    from tailorlm.recipe import recipe_from_dict

    results = {}
    for task in raw["tasks"]:
        folder = out / f"alone-{task['name']}"
        if (folder / "metrics.json").is_file():  # measured by an earlier invocation: kept, not trained again
            results[task["name"]] = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
            continue
        single = {"task": task["task"], "output_dir": str(folder), "model": raw["model"], "data": task["data"],
                  "training": {k: v for k, v in raw["training"].items() if k != "seeds"} | {"seeds": seeds}}
        results[task["name"]] = run_recipe(recipe_from_dict(single, f"{task['name']} alone"), Console(stderr=True))
    return results


def versus_alone(out: Path, metrics: dict[str, Any], seeds: int) -> dict[str, Any]:
    """Per task, the paired bootstrap of the multi-task seed-means against the alone-at-auto seed-means on the
    same test rows (evaluate/stats.py), from the per-seed predictions.jsonl of both."""
    from tailorlm.evaluate.predictions import read_jsonl
    from tailorlm.evaluate.stats import paired_test

    tests = {}
    for name, task in metrics["tasks"].items():
        multi = [read_jsonl(out / "run" / f"seed-{s}" / "tasks" / name / "predictions.jsonl") for s in range(seeds)]
        alone = [read_jsonl(out / f"alone-{name}" / f"seed-{s}" / "predictions.jsonl") for s in range(seeds)]
        if [r.get("id") for r in multi[0]] != [r.get("id") for r in alone[0]]:
            sys.exit(f"{name}: the multi-task and alone runs were scored on different test rows")
        metric = "f1_macro" if task["task"] == "classification" else "squared_error"
        test = paired_test(multi, alone, metric, task.get("labels") or [])
        tests[name] = {"metric": metric, **{k: test["bootstrap"][k] for k in ("difference", "low", "high")},
                       "p_value": test["p_value"], "verdict": test["verdict"]} if test else None
    return tests


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multitask_pair")
    parser.add_argument("--out", type=Path, default=Path("/tmp/mt-pair"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sts-rows", type=int, default=500)
    parser.add_argument("--sentiment-rows", type=int, default=300)
    parser.add_argument("--test-rows", type=int, default=500)
    parser.add_argument("--steps", default="auto")
    parser.add_argument("--max-length", type=int, default=None,
                        help="training.max_length for both tasks (default auto: up to 512 tokens for the reviews)")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder (../shared/data)")
    parser.add_argument("--model", default="minilm", help="the shared encoder (a smoke test: a tiny local model)")
    parser.add_argument("--alone", action="store_true", help="also each task alone at its own auto defaults")
    parser.add_argument("--skip-multitask", action="store_true", help="reuse the joint run already in --out")
    args = parser.parse_args(argv)
    import yaml
    from rich.console import Console

    from tailorlm.launch import run_recipe
    from tailorlm.recipe import load_recipe

    files = cut(args.out / "data", args.sts_rows, args.sentiment_rows, args.test_rows, args.shared)
    steps = args.steps if args.steps == "auto" else int(args.steps)
    raw = recipe(files, args.out / "run", 0, steps, args.model)
    raw["training"]["seeds"] = args.seeds
    if args.max_length:
        raw["training"]["max_length"] = args.max_length
    path = args.out / "recipe.yaml"  # `tailor run OUT/recipe.yaml` reruns it
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    if args.skip_multitask:
        metrics = json.loads((args.out / "run" / "metrics.json").read_text(encoding="utf-8"))
    else:
        metrics = run_recipe(load_recipe(path), Console(stderr=True))
    alone = run_alone(raw, args.out, args.seeds) if args.alone else None
    print(table(metrics, alone))
    summary = {"comparison": metrics["comparison"], "verdict": metrics["verdict"],
               "tasks": {k: {"tuned": v["tuned"], "tuned_std": v["tuned_std"]} for k, v in metrics["tasks"].items()}}
    if alone:
        summary["alone_at_auto"] = {k: {"tuned": v["tuned"], "tuned_std": v.get("tuned_std")} for k, v in alone.items()}
        summary["multi_vs_alone"] = versus_alone(args.out, metrics, args.seeds)
        for name, test in summary["multi_vs_alone"].items():
            if test:
                print(f"{name}: multi-task - alone at auto {test['difference']:+.4f} ({test['metric']}), 95% CI "
                      f"{test['low']:+.4f} to {test['high']:+.4f}, p = {test['p_value']:.3g}")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
