"""Does the learning-rate finder's suggestion fall inside the range the grid found good? (issue 13, acceptance 3)

For each scenario of benchmarks/realdata.py this runs the range test (``tailor lr-find``'s code, the scenario's
recipe with every training key at ``auto``) and reads that scenario's learning-rate rows from the grid's results
(``benchmarks/auto_grid.py``: ``lr=...`` settings, plus the ``auto`` row at the rate ``auto`` picked). The *good
range* is the span of grid rates whose test score is within ``--tolerance`` (default 0.02, i.e. 2 points) of the
grid's best; the suggestion passes when it lies between the lowest and the highest good rate. Grid rows must
come from the same code's ``auto`` epochs and batch, so only rows whose other settings are ``auto`` count.

A grid samples the score at a few rates (factors of 1.5-3 apart), so a single good grid rate makes the point range
a single point that no rule can hit. The *interpolated* range (``good_low_interp`` .. ``good_high_interp``) reads
the score between neighbouring grid rates as linear in log(rate) and extends the good span to where that line
crosses best - tolerance; both ranges are recorded, per rule (``inside_by_rule``, ``inside_interp_by_rule``).

    python -m benchmarks.auto_grid --scenarios classification-small --settings auto "lr=3e-5" "lr=3e-4" --no-baselines
    python -m benchmarks.lr_finder_check --scenarios classification-small qa-small

Prints one line per scenario and appends it to ``benchmarks/results/lr_finder_check.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.auto_grid import parse_setting
from benchmarks.realdata import build


def grid_points(rows: list[dict[str, Any]], scenario: str) -> dict[float, float]:
    """Learning rate -> test score, from the grid rows that vary only the learning rate (the latest row wins).

    Only rows scored on as many test rows as the scenario's latest row count: a scenario whose test split was
    rebuilt (qa-small's test articles were fixed on 2026-12-02) must not mix scores of two test sets; rows from
    before the count was recorded are kept.
    """
    mine = [row for row in rows if row.get("scenario") == scenario]
    latest_test_rows = mine[-1].get("test_rows") if mine else None
    points: dict[float, float] = {}
    for row in mine:
        if row.get("tuned") is None or (None not in (row.get("test_rows"), latest_test_rows) \
                and row["test_rows"] != latest_test_rows):
            continue
        if row["setting"] == "auto":
            lr = (row.get("auto") or {}).get("training.learning_rate")
        else:
            overrides = parse_setting(row["setting"])
            lr = overrides.pop("training.learning_rate", None) if set(overrides) == {"training.learning_rate"} \
                else None
        if isinstance(lr, int | float):
            points[float(lr)] = float(row["tuned"])
    return points


def good_range(points: dict[float, float], tolerance: float) -> tuple[float, float, float]:
    """(lowest good rate, highest good rate, best score): good = within ``tolerance`` of the best."""
    best = max(points.values())
    good = sorted(lr for lr, score in points.items() if score >= best - tolerance)
    return good[0], good[-1], best


def interpolated_good_range(points: dict[float, float], tolerance: float) -> tuple[float, float]:
    """The good span with the score linear in log(rate) between neighbouring grid rates (never past the grid's ends)."""
    import math

    rates = sorted(points)
    best = max(points.values())
    floor = best - tolerance
    good = [lr for lr in rates if points[lr] >= floor]
    low, high = good[0], good[-1]

    def crossing(inside: float, outside: float) -> float:
        a, b = points[inside], points[outside]
        share = (a - floor) / (a - b) if a != b else 0.0
        return math.exp(math.log(inside) + share * (math.log(outside) - math.log(inside)))

    below = [lr for lr in rates if lr < low]
    above = [lr for lr in rates if lr > high]
    return (crossing(low, below[-1]) if below else low), (crossing(high, above[0]) if above else high)


def suggest(scenario: Any, out: Path) -> dict[str, Any]:
    from rich.console import Console

    from tailorlm.launch import lr_find_command
    from tailorlm.recipe import recipe_from_dict

    recipe = recipe_from_dict(scenario.recipe(out / scenario.name), f"{scenario.name}:lr-find")
    started = time.perf_counter()
    found, _ = lr_find_command(recipe, Console(stderr=True, quiet=True))
    return found.as_dict() | {"wall_s": round(time.perf_counter() - started, 1)}


def latest_sweep(results: Path, scenario: str) -> dict[str, Any]:
    """The range test a previous run of this script recorded for ``scenario`` (its curve and suggestions).

    A sweep recorded under an older rule is re-read under today's: the steepest-descent point, which every line
    since 2026-12-03 records, is exactly what today's rule suggests from the same losses (same smoothing, same
    slope), so no sweep needs to run again.
    """
    from tailorlm.train.lr_find import RULE

    lines = [json.loads(line) for line in results.read_text().splitlines() if line.strip()] if results.exists() else []
    mine = [r for r in lines if r.get("scenario") == scenario]
    if not mine:
        raise SystemExit(f"{results}: no sweep recorded for {scenario}; run without --recheck first")
    last = mine[-1]
    steepest = last.get("steepest_lr")
    reread = last.get("rule") != RULE and steepest is not None
    return {"suggestion": float(f"{steepest:.3g}") if reread else last["suggestion"],
            "rule": RULE if reread else last.get("rule"),
            "min_lr": last["min_loss_lr"], "steepest_lr": steepest, "wall_s": last.get("wall_s"),
            **(last.get("curve") or {})}


def check(name: str, found: dict[str, Any], points: dict[float, float], tolerance: float) -> dict[str, Any]:
    low, high, best = good_range(points, tolerance)
    lr = found.get("suggestion")
    low_i, high_i = interpolated_good_range(points, tolerance)
    minimum = found.get("min_lr")
    rules = (("suggestion", lr), ("min/10", minimum / 10 if minimum else None), ("minimum", minimum),
             ("steepest", found.get("steepest_lr")))
    inside = {rule: rate is not None and low <= rate <= high for rule, rate in rules}
    inside_interp = {rule: rate is not None and low_i <= rate <= high_i for rule, rate in rules}
    return {"scenario": name, "suggestion": lr, "min_loss_lr": found.get("min_lr"),
            "steepest_lr": found.get("steepest_lr"),
            "grid": {f"{k:g}": round(v, 4) for k, v in sorted(points.items())}, "tolerance": tolerance,
            "good_low": low, "good_high": high, "grid_best": best,
            "rule": found.get("rule"), "inside": inside["suggestion"], "inside_by_rule": inside,
            "good_low_interp": float(f"{low_i:.3g}"), "good_high_interp": float(f"{high_i:.3g}"),
            "inside_interp_by_rule": inside_interp, "wall_s": found.get("wall_s"),
            "curve": {"lrs": found.get("lrs"), "smoothed": found.get("smoothed")},
            "date": time.strftime("%Y-%m-%d")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="*", default=["classification-small", "qa-small"])
    parser.add_argument("--data", type=Path, default=Path("/tmp/tailorlm-realdata"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/tailorlm-lr-find"))
    parser.add_argument("--grid", type=Path, default=Path("benchmarks/results/auto_grid.jsonl"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/lr_finder_check.jsonl"))
    parser.add_argument("--tolerance", type=float, default=0.02)
    parser.add_argument("--min-grid", type=int, default=3, help="grid rates needed before the sweep runs (1: sweep "
                        "now while the grid is still running, then --recheck)")
    parser.add_argument("--recheck", action="store_true", help="no sweep: score each scenario's latest sweep in "
                        "--results against the grid as it is now")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.grid.read_text().splitlines() if line.strip()]
    for name in args.scenarios:
        points = grid_points(rows, name)
        if len(points) < (1 if args.recheck else args.min_grid):
            raise SystemExit(f"{args.grid}: only {len(points)} learning-rate rows for {name}; run benchmarks.auto_grid "
                             f"with --settings auto \"lr=...\" first")
        found = latest_sweep(args.results, name) if args.recheck else suggest(build(args.data)[name], args.out)
        result = check(name, found, points, args.tolerance)
        print(json.dumps(result), flush=True)
        with args.results.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
