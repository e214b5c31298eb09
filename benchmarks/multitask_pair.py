"""Issue 15, acceptance 1: two real tasks trained jointly on the shipped MiniLM vs each alone, over seeds.

    python -m benchmarks.multitask_pair --out /tmp/mt-pair [--seeds 3] [--sts-rows 500] [--sentiment-rows 300]
                                       [--steps auto] [--model minilm]

Tasks, cut from ../shared/data with ``random.Random(0)``-style seeded shuffles (pandas ``random_state=0``):
- ``sts``: STS Benchmark sentence pairs, a similarity score 0-5 (``regression``, text pairs), train and test
  disjoint rows of ``stsb_train_3000.csv``;
- ``books``: Amazon book-review sentiment (``classification``), train and test disjoint rows of
  ``amazon_books.csv``.
Each seed is one ``tailor run`` of the multi-task recipe with ``multitask.comparison: single_task`` (each task
alone with the batches the joint run gave it) into ``OUT/seed-<s>/``. The summary (``OUT/summary.json`` and the
printed Markdown table) gives, per task, the main metric of the multi-task and single-task models (mean ± std
over seeds), the paired bootstrap over the seed-mean on the same test rows (evaluate/stats.py), the training time
of one joint run vs the single runs together, and the parameters served. It never runs in the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
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


def summarize(seed_metrics: list[dict[str, Any]], seed_dirs: list[Path]) -> dict[str, Any]:
    from tailorlm.evaluate.predictions import FILE, read_jsonl
    from tailorlm.evaluate.stats import paired_test

    tasks: dict[str, Any] = {}
    for name in seed_metrics[0]["tasks"]:
        rows = [m["comparison"]["tasks"][name] for m in seed_metrics]
        multi = np.array([r["multi_task"] for r in rows], dtype=float)
        single = np.array([r["single_task"] for r in rows], dtype=float)
        runs_multi = [read_jsonl(d / "tasks" / name / FILE) for d in seed_dirs]
        runs_single = [read_jsonl(d / "single" / name / FILE) for d in seed_dirs]
        metric = (seed_metrics[0].get("significance", {}).get(name) or {}).get("metric", rows[0]["metric"])
        labels = seed_metrics[0]["tasks"][name].get("labels") or []
        tasks[name] = {"metric": rows[0]["metric"], "greater_is_better": rows[0]["greater_is_better"],
                       "multi_task": {"mean": float(multi.mean()), "std": float(multi.std(ddof=1))},
                       "single_task": {"mean": float(single.mean()), "std": float(single.std(ddof=1))},
                       "paired_test": paired_test(runs_multi, runs_single, metric, labels),
                       "baselines": {k: v.get(rows[0]["metric"]) for k, v in
                                     seed_metrics[0]["tasks"][name]["baseline"].items() if isinstance(v, dict)}}
    times = [m["comparison"]["train_time_s"] for m in seed_metrics]
    return {"seeds": len(seed_metrics), "tasks": tasks,
            "train_time_s": {"multi_task": float(np.mean([t["multi_task"] for t in times])),
                             "single_tasks_sum": float(np.mean([t["single_tasks_sum"] for t in times]))},
            "parameters_served": seed_metrics[0]["comparison"]["parameters_served"]}


def table(summary: dict[str, Any]) -> str:
    lines = ["| task | metric | multi-task | single-task | paired test (multi vs single) | baselines |",
             "|---|---|---|---|---|---|"]
    for name, t in summary["tasks"].items():
        test = t["paired_test"] or {}
        boot = test.get("bootstrap", {})
        p = f"diff {boot.get('difference', float('nan')):+.4f}, p = {test.get('p_value', float('nan')):.3g}" \
            if test else "–"
        bases = ", ".join(f"{k} {v:.4f}" for k, v in t["baselines"].items() if isinstance(v, (int, float)))
        lines.append(f"| {name} | {t['metric']} | {t['multi_task']['mean']:.4f} ± {t['multi_task']['std']:.4f} | "
                     f"{t['single_task']['mean']:.4f} ± {t['single_task']['std']:.4f} | {p} | {bases} |")
    time_s = summary["train_time_s"]
    lines.append(f"\ntraining time per seed: multi-task {time_s['multi_task']:.0f} s vs single tasks together "
                 f"{time_s['single_tasks_sum']:.0f} s; parameters served {summary['parameters_served']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multitask_pair")
    parser.add_argument("--out", type=Path, default=Path("/tmp/mt-pair"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sts-rows", type=int, default=500)
    parser.add_argument("--sentiment-rows", type=int, default=300)
    parser.add_argument("--test-rows", type=int, default=500)
    parser.add_argument("--steps", default="auto")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder (../shared/data)")
    parser.add_argument("--model", default="minilm", help="the shared encoder (a smoke test: a tiny local model)")
    args = parser.parse_args(argv)
    from rich.console import Console

    from tailorlm.recipe import recipe_from_dict
    from tailorlm.run import run

    files = cut(args.out / "data", args.sts_rows, args.sentiment_rows, args.test_rows, args.shared)
    steps = args.steps if args.steps == "auto" else int(args.steps)
    dirs = [args.out / f"seed-{seed}" for seed in range(args.seeds)]
    metrics = [run(recipe_from_dict(recipe(files, d, seed, steps, args.model)), Console(stderr=True))
               for seed, d in enumerate(dirs)]
    summary = summarize(metrics, dirs)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
