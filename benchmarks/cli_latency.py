"""How long the `tailor` CLI takes to answer, in fresh processes (issue 20: a first hour of 8-second typos).

Each case runs ``python -m tailorlm ...`` in a subprocess, once to warm the file cache (and, for ``models``,
anything a first use might build), then ``--repeat`` times; the median wall time is printed with whether it is
under the 1 s target. The recipe error is a recipe with an unknown key (``training.lr``), the first thing a new
user types wrong.

    python -m benchmarks.cli_latency [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 1.0
SRC = Path(__file__).resolve().parents[1] / "src"


def cases(folder: Path) -> dict[str, list[str]]:
    recipe = folder / "recipe.yaml"
    recipe.write_text("task: classification\ntraining:\n  lr: 1.0e-4\n", encoding="utf-8")
    return {
        "recipe error (unknown key)": ["run", str(recipe)],
        "--help": ["--help"],
        "keys": ["keys"],
        "models": ["models"],
    }


def time_once(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tailorlm", *args], capture_output=True, env=env, check=False)
    return time.perf_counter() - started, done.returncode


def measure(repeat: int) -> list[dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "COLUMNS": "80"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in cases(Path(tmp)).items():
            time_once(args, env)  # warm: file cache, .pyc files
            runs = [time_once(args, env) for _ in range(repeat)]
            median = statistics.median(t for t, _ in runs)
            rows.append({"case": name, "args": args[:1], "median_s": round(median, 3),
                         "runs_s": [round(t, 3) for t, _ in runs], "exit_codes": sorted({c for _, c in runs}),
                         "under_1s": median < TARGET_S})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case (after one warm-up)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    options = parser.parse_args()
    rows = measure(options.repeat)
    if options.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'case':<28} {'median s':>9}  under {TARGET_S:g} s  exit")
    for row in rows:
        print(f"{row['case']:<28} {row['median_s']:>9.3f}  {'yes' if row['under_1s'] else 'NO':<10}  "
              f"{','.join(str(c) for c in row['exit_codes'])}")  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
