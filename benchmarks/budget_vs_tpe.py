"""``tailor run --budget`` against a 12-trial TPE search over the same space, on the same real data (issue 13,
acceptance 2: the budget's tuned metric within 1 point of the TPE search's best, wall time within 10% of the budget).

    python -m benchmarks.budget_vs_tpe                                   # amazon_books, 300 training rows, minilm, 20m
    python -m benchmarks.budget_vs_tpe --budget 5m --train-rows 200      # shorter
    python -m benchmarks.budget_vs_tpe --skip-budget                     # reuse the budget run in --out
    python -m benchmarks.budget_vs_tpe --tpe-from benchmarks/results/budget-vs-tpe-amazon-books-2026-12-03.json
                                                                         # a new budget run, an earlier TPE side

Both sides go through the real CLI in a subprocess (the budget's clock includes start-up, as a user's does). The
recipe names only the data files and the model: every training key is ``auto``. The TPE side searches the space
the budget run recorded (``metrics.json`` → ``search.space``) with ``tailor tune --method bayes --trials 12
--pruner none`` (whole trials: a reference, not a rival under the same time), then retrains its best with
``tailor run best_recipe.yaml``. Prints validation (what both selected on) and test scores of both, and the budget's
wall time; writes ``summary.json`` into ``--out``. Every figure is measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "amazon_books.csv"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a labelled CSV with text,label")
    parser.add_argument("--train-rows", type=int, default=300)
    parser.add_argument("--test-rows", type=int, default=500)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--budget", default="20m")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--max-length", type=int, help="training.max_length for both sides (default: auto); long "
                        "reviews at 512 tokens make one trial minutes long on a CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "budget_vs_tpe")
    parser.add_argument("--skip-budget", action="store_true", help="reuse the budget run already in --out")
    parser.add_argument("--tpe-from", type=Path, help="reuse the TPE side of an earlier summary.json made with the "
                                                      "same data, rows, model, max length and seed (checked)")
    return parser.parse_args(argv)


def write_data(args: argparse.Namespace) -> tuple[Path, Path]:
    """A random train set of ``train_rows`` and a disjoint test set of ``test_rows``, deterministic from the seed."""
    if not args.data.is_file():
        sys.exit(f"{args.data}: not found; pass --data (the shared sets live in ../shared/data/)")
    frame = pd.read_csv(args.data, dtype=str, keep_default_na=False).sample(frac=1.0, random_state=args.seed)
    train, test = frame.iloc[: args.train_rows], frame.iloc[args.train_rows: args.train_rows + args.test_rows]
    args.out.mkdir(parents=True, exist_ok=True)
    train.to_csv(args.out / "train.csv", index=False)
    test.to_csv(args.out / "test.csv", index=False)
    return args.out / "train.csv", args.out / "test.csv"


def write_recipe(path: Path, train: Path, test: Path, model: str, output_dir: Path, search: str = "",
                 max_length: int | None = None) -> Path:
    training = f"training: {{max_length: {max_length}}}\n" if max_length else ""
    path.write_text(f"task: classification\noutput_dir: {output_dir}\nmodel: {{name: {model}}}\n"
                    f"data: {{train: {train}, test: {test}}}\n{training}{search}", encoding="utf-8")
    return path


def tailor(*args: str) -> float:
    """Run the CLI; the wall seconds it took. Its output goes to the terminal (long runs show progress)."""
    started = time.monotonic()
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    code = subprocess.run([sys.executable, "-m", "tailorlm", *args], env=env, check=False).returncode
    if code:
        sys.exit(f"tailor {' '.join(args)} exited {code}")
    return time.monotonic() - started


def run_tpe(args: argparse.Namespace, search: dict[str, Any], train: Path, test: Path, tpe_dir: Path) -> dict[str, Any]:
    """The reference: ``tailor tune`` (TPE, whole trials) over the space the budget run recorded, then its best
    retrained with the baselines by ``tailor run best_recipe.yaml``."""
    space = json.dumps({"space": search["space"]})
    tune_recipe = write_recipe(args.out / "tpe.yaml", train, test, args.model, tpe_dir, f"search: {space}\n",
                               args.max_length)
    elapsed = tailor("tune", str(tune_recipe), "--method", "bayes", "--trials", str(args.trials), "--pruner", "none")
    elapsed += tailor("run", str(tpe_dir / "best_recipe.yaml"))
    tune = json.loads((tpe_dir / "tune.json").read_text(encoding="utf-8"))
    final = json.loads((tpe_dir / "best" / "metrics.json").read_text(encoding="utf-8"))
    return {"trials": args.trials, "elapsed_s": round(elapsed, 1), "best_validation": tune["best"]["value"],
            "test": final["tuned"].get(search["metric"]), "params": tune["best"]["params"]}


def earlier_tpe(args: argparse.Namespace, metric: str) -> dict[str, Any]:
    """The TPE side of an earlier summary.json, if it was made on the same data and settings (else exit)."""
    earlier = json.loads(args.tpe_from.read_text(encoding="utf-8"))
    wanted = {"data": str(args.data), "train_rows": args.train_rows, "test_rows": args.test_rows,
              "model": args.model, "max_length": args.max_length, "seed": args.seed, "metric": metric}
    differs = [k for k, v in wanted.items() if earlier.get(k, 0 if k == "seed" else None) != v]
    if differs or earlier["tpe"]["trials"] != args.trials:
        sys.exit(f"{args.tpe_from}: made with other settings ({', '.join(differs) or 'trials'}); "
                 "run without --tpe-from")
    return earlier["tpe"] | {"from": str(args.tpe_from)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    train, test = write_data(args)
    budget_dir, tpe_dir = args.out / "budget", args.out / "tpe"
    recipe = write_recipe(args.out / "recipe.yaml", train, test, args.model, budget_dir, max_length=args.max_length)
    budget_elapsed = None if args.skip_budget else tailor("run", str(recipe), "--budget", args.budget)
    budget = json.loads((budget_dir / "metrics.json").read_text(encoding="utf-8"))
    search = budget["search"]
    metric = search["metric"]
    summary = {
        "data": str(args.data), "train_rows": args.train_rows, "max_length": args.max_length,
        "test_rows": args.test_rows, "model": args.model, "seed": args.seed,
        "metric": metric,
        "budget": {"budget_s": search["budget_s"], "wall_s": search["wall_s"], "elapsed_s": budget_elapsed,
                   "trials": search["counts"], "best_validation": (search.get("best") or {}).get("validation"),
                   "defaults_validation": search["defaults"].get("validation"),
                   "defaults_test": search["defaults"].get("test"), "test": budget["tuned"].get(metric),
                   "params": (search.get("best") or {}).get("params")},
        "tpe": earlier_tpe(args, metric) if args.tpe_from else run_tpe(args, search, train, test, tpe_dir),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    b, t = summary["budget"], summary["tpe"]
    print(f"\n{args.data.name}, {args.train_rows} training rows, {args.model}, {metric}")
    print(f"defaults (trial 0)     validation {b['defaults_validation']:.4f}  test {b['defaults_test']:.4f}")
    print(f"--budget {args.budget:<13} validation {b['best_validation']:.4f}  test {b['test']:.4f}  "
          f"wall {b['wall_s']:.0f} s of {b['budget_s']:.0f} s ({b['wall_s'] / b['budget_s']:.0%})")
    print(f"TPE, {args.trials} trials         validation {t['best_validation']:.4f}  test {t['test']:.4f}  "
          f"({t['elapsed_s']:.0f} s)")
    print(f"budget - TPE: validation {100 * (b['best_validation'] - t['best_validation']):+.1f} points, "
          f"test {100 * (b['test'] - t['test']):+.1f} points")
    return summary


if __name__ == "__main__":
    main()
