"""How long `tailor runs` takes on 300 run directories (issue 17: under 1 s).

Builds ``--runs`` run directories (default 300) in a temporary folder, each holding copies of one real run's small
files (metrics.json, recipe.resolved.yaml, log_history.json, data_report.json, plus its status.json and
run_info.json) and a ``model/`` folder the index must skip, laid out as a week of work: single runs, seed sets
(a top folder and three seed-N runs each) and a tune study with its trials. Then it times
``python -m tailorlm runs FOLDER --json`` in fresh processes (interpreter start and imports included; median of
``--repeat`` after one warm-up) and the in-process index build alone.

    python -m benchmarks.runs_index [--runs 300] [--source RUN_DIR] [--repeat 5] [--json]

``--source`` defaults to tests/fixtures/run_dir (the small files of a finished classification run); pass the
output_dir of any real run to time it on yours.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 1.0
REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
SMALL_FILES = ("metrics.json", "recipe.resolved.yaml", "log_history.json", "data_report.json", "run_info.json",
               "report.html")


def copy_run(source: Path, target: Path, status: dict, seed: int | None = None) -> None:
    """One run directory: the source's small files, its status, and a model/ folder (never read by the index)."""
    target.mkdir(parents=True)
    for name in SMALL_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
    if not (target / "run_info.json").exists():
        (target / "run_info.json").write_text(json.dumps({"command": "tailor run"}))
    (target / "status.json").write_text(json.dumps(status | {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
    (target / "model").mkdir()
    (target / "model" / "config.json").write_text("{}")
    if seed is not None:
        (target / "seed.txt").write_text(str(seed))


def build(folder: Path, source: Path, runs: int) -> int:
    """``runs`` run directories under ``folder``; returns how many were made."""
    finished = {"status": "finished"}
    made = 0
    study = folder / "study"
    study.mkdir(parents=True)
    (study / "tune.json").write_text(json.dumps({"metric": "f1_macro", "counts": {"complete": 20}, "trials_target":
                                                 20, "best": {"number": 3, "value": 0.87}}))
    (study / "status.json").write_text(json.dumps(finished))
    for trial in range(min(20, runs)):
        copy_run(source, study / "trials" / f"trial-{trial:04d}", finished)
        made += 1
    seed_sets = 0
    while made + 4 <= runs and seed_sets < 20:
        top = folder / "seeds" / f"set-{seed_sets:02d}"
        copy_run(source, top, finished)
        for seed in (42, 43, 44):
            copy_run(source, top / f"seed-{seed}", finished, seed)
        made += 4
        seed_sets += 1
    single = 0
    while made < runs:
        status = {"status": "failed", "reason": "DataError: x"} if single % 25 == 7 else finished
        copy_run(source, folder / "runs" / f"exp-{single:03d}", status)
        made += 1
        single += 1
    return made


def time_cli(folder: Path, repeat: int) -> tuple[float, int]:
    """Median wall seconds of ``python -m tailorlm runs FOLDER --json`` and the rows it printed."""
    env = os.environ | {"PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "tailorlm", "runs", str(folder), "--json"]
    times, rows = [], 0
    for attempt in range(repeat + 1):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"tailor runs failed: {done.stderr.strip()}")
        rows = len(json.loads(done.stdout))
        if attempt:  # the first warms the file cache
            times.append(elapsed)
    return statistics.median(times), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--source", type=Path, default=REPO / "tests" / "fixtures" / "run_dir")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(SRC))
    from tailorlm.dashboard.index import build_index

    with tempfile.TemporaryDirectory(prefix="tailor-runs-bench-") as tmp:
        folder = Path(tmp)
        made = build(folder, args.source, args.runs)
        cli_s, rows = time_cli(folder, args.repeat)
        started = time.perf_counter()
        indexed = len(build_index(folder))
        index_s = time.perf_counter() - started
    result = {"run_dirs": made, "rows": rows, "cli_median_s": round(cli_s, 3), "index_only_s": round(index_s, 3),
              "target_s": TARGET_S, "under_target": cli_s < TARGET_S, "indexed_in_process": indexed}
    if args.json:
        print(json.dumps(result))
        return
    print(f"tailor runs on {made} run directories ({rows} rows incl. the study): {cli_s:.3f} s median wall time in a "
          f"fresh process ({'under' if cli_s < TARGET_S else 'OVER'} the {TARGET_S:.0f} s target); the index alone "
          f"{index_s:.3f} s")


if __name__ == "__main__":
    main()
