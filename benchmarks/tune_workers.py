"""`tailor tune --workers 2` against `--workers 1` on the demo, same search, same cores (issue 19, acceptance 1:
the two-worker wall time at most 0.65x the one-worker time on 2 cores, one torch thread per worker).

    python -m benchmarks.tune_workers                          # 300 rows, 1 epoch, a 4-point grid, minilm
    python -m benchmarks.tune_workers --cores 2 --out benchmarks/results/tune-workers-DATE.json
    python -m benchmarks.tune_workers --rows 40 --trials 2     # a smoke run

Both sides run the real CLI in a subprocess on the demo data (`tailor demo-data`, generated into --work), with
the same recipe: the shipped MiniLM, ``data.max_rows`` rows per file, a grid over the learning rate (``--trials``
points, so both sides train exactly the same trials), no pruning. ``--workers 1`` runs with ``OMP_NUM_THREADS``
= cores (torch's threads in one process); ``--workers 2`` gives each worker half (tune/spawn.py). ``--cores``
pins both to the first N cores (``sched_setaffinity``), so the comparison is on N cores whatever the machine has;
each side has its own empty tokenised-splits cache, so the second does not reuse the first's.
Each side is checked (every trial finished once, best_recipe.yaml written) and its trials' torch threads read
from their run_info.json. Prints both wall times and the ratio; ``--out`` writes them as JSON. Every figure is
measured in this run; a busy machine makes both slower, so run it on a quiet one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: learning rates of the grid, the first ``--trials`` of them
RATES = [2.0e-5, 5.0e-5, 1.0e-4, 2.0e-4, 3.0e-4, 5.0e-4]
TARGET_RATIO = 0.65


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300, help="data.max_rows: rows read from each demo file")
    parser.add_argument("--trials", type=int, default=4, choices=range(2, len(RATES) + 1), metavar="2-6")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--cores", type=int, default=None, help="pin both runs to the first N cores (default: all)")
    parser.add_argument("--work", type=Path, default=None, help="folder for data and runs (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    return parser.parse_args(argv)


def write_recipe(work: Path, args: argparse.Namespace) -> Path:
    data = work / "data"
    rates = ", ".join(f"{r:.1e}" for r in RATES[: args.trials])
    recipe = work / "tune-workers.yaml"
    recipe.write_text(f"""task: classification
output_dir: {work / "runs"}
model: {{name: {args.model}}}
data:
  train: {data / "train.csv"}
  validation: {data / "validation.csv"}
  test: {data / "test.csv"}
  max_rows: {args.rows}
training: {{epochs: {args.epochs}, batch_size: 32, learning_rate: 5.0e-5, early_stopping_patience: null}}
search:
  method: grid
  trials: {args.trials}
  pruner: none
  space:
    training.learning_rate: {{type: loguniform, low: 1.0e-5, high: 1.0e-3, grid: [{rates}]}}
""", encoding="utf-8")
    return recipe


def tailor(args: list[str], cores: list[int] | None, threads: int, cache: Path | None = None) -> float:
    """Run the CLI (pinned to ``cores``; ``cache``: its own tokenised-splits cache); its wall seconds."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(threads)}
    env |= {"TAILORLM_TOKENIZED_CACHE": str(cache)} if cache is not None else {}

    def pin() -> None:
        if cores is not None:
            os.sched_setaffinity(0, cores)

    started = time.monotonic()
    code = subprocess.run([sys.executable, "-m", "tailorlm", *args], env=env, preexec_fn=pin, check=False).returncode
    if code:
        sys.exit(f"tailor {' '.join(args)} exited {code}")
    return time.monotonic() - started


def check_side(out: Path, trials: int) -> dict[str, Any]:
    """Every trial finished once and best_recipe.yaml written; the trials' torch threads and the best value."""
    with (out / "trials.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    done = [r for r in rows if r["state"] == "complete"]
    rates = {r["training.learning_rate"] for r in done}
    if len(done) != trials or len(rates) != trials or not (out / "best_recipe.yaml").is_file():
        sys.exit(f"{out}: expected {trials} complete trials, each rate once, and best_recipe.yaml; got {rows}")
    threads = sorted({json.loads((Path(r["dir"]) / "run_info.json").read_text())["torch_threads"] for r in done})
    summary = json.loads((out / "tune.json").read_text())
    trial_s = [float(r["duration_s"]) for r in done]
    return {"threads": threads, "best": summary["best"], "trial_s": trial_s,
            "trial_s_mean": round(sum(trial_s) / len(trial_s), 2)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    available = sorted(os.sched_getaffinity(0))
    cores = available[: args.cores] if args.cores else None
    n = len(cores) if cores else len(available)
    with tempfile.TemporaryDirectory(prefix="tune-workers-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        tailor(["demo-data", "--out", str(work / "data")], cores, n)
        recipe = write_recipe(work, args)
        sides: dict[str, Any] = {}
        load_before = os.getloadavg()
        for workers in (1, 2):
            out = work / "runs" / f"workers-{workers}"
            command = ["tune", str(recipe), "--workers", str(workers), "--set", f"output_dir={out}"]
            wall = tailor(command, cores, n, cache=work / f"token-cache-{workers}")  # neither side reuses the other's
            sides[f"workers_{workers}"] = {"wall_s": round(wall, 1)} | check_side(out, args.trials)
    ratio = sides["workers_2"]["wall_s"] / sides["workers_1"]["wall_s"]
    result = {
        "benchmark": "tune_workers", "cores": n, "rows_per_file": args.rows, "trials": args.trials,
        "epochs": args.epochs, "model": args.model, **sides, "ratio": round(ratio, 3), "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO, "load_average_before": [round(x, 2) for x in load_before],
    }
    w1, w2 = sides["workers_1"], sides["workers_2"]
    for name, side in (("--workers 1", w1), ("--workers 2", w2)):
        threads = "/".join(str(t) for t in side["threads"])
        print(f"{name} ({threads} torch thread{'s' if side['threads'] != [1] else ''} per process): "
              f"{side['wall_s']:.1f} s, {side['trial_s_mean']:.1f} s per trial")
    print(f"ratio {ratio:.3f} on {n} cores (target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'not met'})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
