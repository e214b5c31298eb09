"""``tailor compare RUN_DIR RUN_DIR ...``: runs side by side, and whether their difference is more than noise.

For each run: the recipe keys that differ between the runs (from ``recipe.resolved.yaml``, flattened to dotted
keys), the test metrics (mean ± std for a ``--seeds`` run), the baselines, and the bootstrap interval of the main
metric. Every run after the first is tested against the first on the same test examples (paired bootstrap on the
main metric, plus McNemar on accuracy for two single runs); runs scored on different test sets cannot be paired,
and the comparison says so instead of guessing.

Outputs: ``compare.md`` (tables and verdicts), ``compare.csv`` (one row per run) and ``compare.png`` (the main
metric of each run with its 95% interval as error bars).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tailorlm.errors import UserError
from tailorlm.evaluate.floors import is_floor
from tailorlm.evaluate.predictions import load_runs
from tailorlm.evaluate.stats import paired_test, same_test_set
from tailorlm.metric_names import METRIC_COLUMNS, TASK_MAIN_METRIC, greater_is_better
from tailorlm.provenance import recorded_paths
from tailorlm.rundir import atomic_write_text

#: Keys that always differ between runs and say nothing about the method (nor does where a run was logged).
IGNORED_KEYS = frozenset({"output_dir", "overwrite", "tracking.mlflow", "tracking.uri", "tracking.experiment",
                          "tracking.log_model", "tracking.run_name"})


@dataclass
class RunSummary:
    """What the comparison needs of one run directory."""

    path: Path
    name: str
    recipe: dict[str, Any]
    metrics: dict[str, Any]
    runs: list[list[dict[str, Any]]] = field(default_factory=list)

    @property
    def tuned(self) -> dict[str, Any]:
        return self.metrics.get("tuned") or {}

    @property
    def std(self) -> dict[str, Any]:
        return self.metrics.get("tuned_std") or {}

    @property
    def main(self) -> str:
        sig = self.metrics.get("significance") or {}
        if sig.get("metric"):
            return str(sig["metric"])
        return TASK_MAIN_METRIC.get(str(self.metrics.get("task")), "loss")

    @property
    def ci(self) -> tuple[float, float] | None:
        ci = (self.metrics.get("significance") or {}).get("ci") or {}
        return (ci["low"], ci["high"]) if ci.get("low") is not None else None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"training": {"epochs": 2}}`` -> ``{"training.epochs": 2}``; lists stay values."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, child in value.items():
        flat.update(flatten(child, f"{prefix}{key}." if isinstance(child, dict) else f"{prefix}{key}"))
    return flat


def load_summary(run_dir: Path) -> RunSummary:
    run_dir = Path(run_dir)
    metrics_file = run_dir / "metrics.json"
    if not metrics_file.is_file():
        raise UserError(f"{run_dir}: no metrics.json; pass the output_dir of a finished `tailor run`")
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    except ValueError:
        raise UserError(f"{metrics_file}: not valid JSON; run `tailor run` again to rewrite it") from None
    recipe_file = run_dir / "recipe.resolved.yaml"
    recipe = yaml.safe_load(recipe_file.read_text(encoding="utf-8")) if recipe_file.is_file() else {}
    flat = flatten(recipe or {})
    # one file, one spelling: data/x.csv from one folder and /home/me/data/x.csv are the same file
    flat |= {key: path for key, (path, _) in recorded_paths(run_dir).items()}
    return RunSummary(run_dir, run_dir.name, flat, metrics, load_runs(run_dir))


def differing_keys(summaries: list[RunSummary]) -> list[str]:
    keys = sorted({k for s in summaries for k in s.recipe} - IGNORED_KEYS)
    return [k for k in keys if len({json.dumps(s.recipe.get(k), sort_keys=True) for s in summaries}) > 1]


def metric_keys(summaries: list[RunSummary]) -> list[str]:
    """Flat test metrics every run reports, the main metric first."""
    shared = [k for k, v in summaries[0].tuned.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n"
              and all(isinstance(s.tuned.get(k), (int, float)) for s in summaries)]
    classic = [k for k, _ in METRIC_COLUMNS if k in shared]
    ordered = classic or shared
    main = summaries[0].main
    return [main, *(k for k in ordered if k != main)] if main in ordered else ordered


def pair_verdict(reference: RunSummary, other: RunSummary) -> dict[str, Any]:
    """``other`` minus ``reference`` on the same test examples, or why that cannot be tested."""
    head = {"run": other.name, "reference": reference.name, "metric": reference.main}
    if not reference.runs or not other.runs:
        missing = reference if not reference.runs else other
        return head | {"verdict": f"cannot be tested: {missing.name} has no predictions.jsonl"}
    if not same_test_set(reference.runs[0], other.runs[0]):
        return head | {"verdict": "cannot be tested: the runs were scored on different test sets (paired tests need "
                                  "the same examples)"}
    labels = reference.metrics.get("labels") or other.metrics.get("labels") or []
    test = paired_test(other.runs, reference.runs, reference.main, labels)
    if test is None:
        return head | {"verdict": f"cannot be tested: no per-example {reference.main} in predictions.jsonl"}
    return head | test


@dataclass
class Comparison:
    runs: list[RunSummary]
    keys: list[str]
    metrics: list[str]
    tests: list[dict[str, Any]]


def compare(run_dirs: list[Path]) -> Comparison:
    if len(run_dirs) < 2:
        raise UserError("compare needs at least two run directories: tailor compare RUN_A RUN_B")
    summaries = [load_summary(Path(d)) for d in run_dirs]
    names = [s.name for s in summaries]
    for s in summaries:
        if names.count(s.name) > 1:
            s.name = f"{s.path.parent.name}/{s.path.name}"
    tests = [pair_verdict(summaries[0], other) for other in summaries[1:]]
    return Comparison(summaries, differing_keys(summaries), metric_keys(summaries), tests)


# ------------------------------------------------------------------------------------------------ rendering


def value_text(summary: RunSummary, key: str) -> str:
    value = summary.tuned.get(key)
    if not isinstance(value, (int, float)):
        return "—"
    std = summary.std.get(key)
    if isinstance(std, (int, float)) and summary.metrics.get("seeds"):
        return f"{value:.4f} ± {std:.4f}"
    return f"{value:.4f}"


def _best_baseline(summary: RunSummary) -> str:
    """The best *reference* baseline's main metric; floors (evaluate/floors.py) are never the bar."""
    main = summary.main
    task = str(summary.metrics.get("task"))
    measured = {k: v for k, v in (summary.metrics.get("baseline") or {}).items()
                if isinstance(v, dict) and isinstance(v.get(main), (int, float))}
    scored = {k: v[main] for k, v in measured.items() if not is_floor(k, task, v)}
    if not scored:
        return "— (only floors measured)" if measured else "—"
    best = (max if greater_is_better(main) else min)(scored, key=scored.__getitem__)
    return f"{scored[best]:.4f} ({best.replace('_', ' ')})"


def rows(comparison: Comparison) -> list[tuple[str, list[str]]]:
    """(row heading, one cell per run) for the side-by-side table."""
    runs = comparison.runs
    out: list[tuple[str, list[str]]] = []
    for key in comparison.keys:
        out.append((f"recipe: {key}", [_short(s.recipe.get(key)) for s in runs]))
    for key in comparison.metrics:
        out.append((f"test {key}", [value_text(s, key) for s in runs]))
    main = runs[0].main
    out.append((f"test {main} 95% CI", [f"{s.ci[0]:.4f} – {s.ci[1]:.4f}" if s.ci else "—" for s in runs]))
    out.append((f"best baseline {main}", [_best_baseline(s) for s in runs]))
    out.append(("seeds", [str(len(s.runs)) if s.metrics.get("seeds") else "1" for s in runs]))
    return out + fairness_rows(runs)


def fairness_rows(runs: list[RunSummary]) -> list[tuple[str, list[str]]]:
    """The bias audit's headline numbers side by side (fairness/): each counterfactual family's flip rate and each
    grouping's accuracy gap with its Holm-adjusted permutation p-value, so a mitigated run is read against an
    unmitigated one beside its accuracy above."""
    audits = [s.metrics.get("fairness") or {} for s in runs]
    out: list[tuple[str, list[str]]] = []

    def families(audit: dict[str, Any]) -> dict[str, Any]:
        found = audit.get("counterfactual_families") or ([audit["counterfactual"]] if audit.get("counterfactual")
                                                         else [])
        return {str(f.get("pairs")): f for f in found}

    def groupings(audit: dict[str, Any]) -> dict[str, Any]:
        found = audit.get("groupings") or ([audit] if "systems" in audit else [])
        return {str(g.get("group_column")): g for g in found}

    for name in sorted({k for a in audits for k in families(a)}):
        rates = [families(a).get(name, {}).get("flip_rate") for a in audits]
        out.append((f"fairness flip rate ({name})", [f"{r:.1%}" if isinstance(r, (int, float)) else "—"
                                                     for r in rates]))
    for name in sorted({k for a in audits for k in groupings(a)}):
        cells = []
        for audit in audits:
            gap = ((groupings(audit).get(name, {}).get("systems") or {}).get("tuned") or {}).get("gaps", {})
            gap = gap.get("accuracy") or {}
            p = gap.get("p_holm")
            cells.append("—" if "difference" not in gap else
                         f"{gap['difference']:.4f}" + (f" (p {p:.3f})" if isinstance(p, (int, float)) else ""))
        out.append((f"fairness accuracy gap ({name})", cells))
    return out


def _short(value: Any) -> str:
    """A recipe value as text, whole (a cut path would hide where two runs differ)."""
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def verdict_line(test: dict[str, Any]) -> str:
    head = f"{test['run']} vs {test['reference']} ({test['metric']})"
    if "bootstrap" not in test:
        return f"{head}: {test['verdict']}"
    boot = test["bootstrap"]
    line = (f"{head}: difference {boot['difference']:+.4f} (95% CI {boot['low']:+.4f} to {boot['high']:+.4f}), "
            f"paired bootstrap p = {boot['p_value']:.3f}: {test['verdict']}")
    if "mcnemar" in test:
        mc = test["mcnemar"]
        line += f"; accuracy McNemar p = {mc['p_value']:.3f}: {mc['verdict']}"
    return line


def markdown(comparison: Comparison) -> str:
    names = [s.name for s in comparison.runs]
    lines = ["# tailorlm: comparison of runs", "", "| | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    lines += ["| " + " | ".join([head, *cells]).replace("\n", " ") + " |" for head, cells in rows(comparison)]
    lines += ["", "## Is the difference real?", ""]
    lines += [f"- {verdict_line(t)}" for t in comparison.tests]
    lines += ["", "Paired tests on the same test examples: bootstrap (2,000 resamples, seed 0) of the main metric; "
              "McNemar (exact) on accuracy for two single runs. 'significant at 5%' means p < 0.05.", "",
              "![main metric with 95% intervals](compare.png)", ""]
    return "\n".join(lines)


def csv_text(comparison: Comparison) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    table = rows(comparison)
    writer.writerow(["run", "path", *(head for head, _ in table)])
    for i, s in enumerate(comparison.runs):
        writer.writerow([s.name, str(s.path), *(cells[i] for _, cells in table)])
    return buffer.getvalue()


def plot(comparison: Comparison, path: Path) -> None:
    """Bar per run of the main metric, with its 95% bootstrap interval as an error bar."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    runs = comparison.runs
    main = runs[0].main
    values = [float(s.tuned.get(main) or 0.0) for s in runs]
    lows = [v - s.ci[0] if s.ci else 0.0 for v, s in zip(values, runs, strict=True)]
    highs = [s.ci[1] - v if s.ci else 0.0 for v, s in zip(values, runs, strict=True)]
    fig = Figure(figsize=(max(4.0, 1.3 * len(runs) + 1.5), 3.2), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(range(len(runs)), values, yerr=[lows, highs], capsize=6, color="#2454d6", alpha=0.85)
    ax.set_xticks(range(len(runs)), [s.name for s in runs], rotation=15)
    ax.set_ylabel(f"test {main}")
    ax.set_title(f"test {main} with 95% bootstrap interval")
    fig.savefig(path, dpi=110)


def write(comparison: Comparison, out: Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare.md", markdown(comparison))
    atomic_write_text(out / "compare.csv", csv_text(comparison))
    plot(comparison, out / "compare.png")
    return [out / "compare.md", out / "compare.csv", out / "compare.png"]
