"""report.md of a multi-task run: per task, the tuned model beside its baselines (and its single-task run), the
verdict, how batches were shared, the learned weights and the gradient cosines between tasks."""

from __future__ import annotations

from typing import Any

from tailorlm.metric_names import metric_name


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def _task_table(name: str, section: dict[str, Any], comparison: dict[str, Any] | None) -> list[str]:
    metric = section["main_metric"]
    lines = [f"### {name} ({section['task']})", "", f"| system | {metric_name(metric)} |", "|---|---|"]
    for base, result in section.get("baseline", {}).items():
        if isinstance(result, dict) and metric in result:
            floor = " (floor)" if result.get("floor") else ""
            lines.append(f"| baseline: {base.replace('_', ' ')}{floor} | {_fmt(result[metric])} |")
    if comparison:
        lines.append(f"| single-task fine-tune | {_fmt(comparison.get('single_task'))} |")
    lines.append(f"| **multi-task fine-tune** | **{_fmt(section['tuned'].get(metric))}** |")
    if comparison and comparison.get("paired_test"):
        test = comparison["paired_test"]
        lines += ["", f"Multi-task vs single-task on the same test rows ({test['metric']}): p = "
                      f"{test['p_value']:.3g} ({test['verdict']})."]
    return [*lines, ""]


def markdown_report(metrics: dict[str, Any]) -> str:
    mt = metrics.get("multitask", {})
    sampling = mt.get("sampling", {})
    comparison = metrics.get("comparison", {})
    lines = [f"# Multi-task run: {', '.join(mt.get('tasks', []))}", ""]
    for name, verdict in metrics.get("verdict", {}).items():
        lines.append(f"- **{name}**: {verdict.get('sentence', '')}")
    lines += ["", "## Per task", ""]
    for name, section in metrics.get("tasks", {}).items():
        lines += _task_table(name, section, comparison.get("tasks", {}).get(name))
    lines += ["## How the tasks were trained", "",
              f"Sampling {sampling.get('method')} over {sampling.get('steps')} batches: planned shares "
              f"{sampling.get('probabilities')}, batches per task {sampling.get('batches')}. Balance: "
              f"{mt.get('balance')}. Checkpoint chosen by {mt.get('select', {}).get('metric')}.", ""]
    if "uncertainty_weights" in mt:
        lines += [f"Learned loss weights exp(-s): {mt['uncertainty_weights']}.", ""]
    cosines = mt.get("gradient_cosines") or []
    if cosines:
        last = {k: v for k, v in cosines[-1].items() if k != "step"}
        lines += ["Cosine between the tasks' gradients on the shared encoder at the last evaluation (negative: "
                  f"they pull it apart): {last}.", ""]
    if comparison:
        time_s, params = comparison["train_time_s"], comparison["parameters_served"]
        lines += [f"Training time: multi-task {time_s['multi_task']:.1f} s vs {time_s['single_tasks_sum']:.1f} s for "
                  f"the single-task runs together; parameters served: {params['multi_task']:,} (one encoder) vs "
                  f"{params['single_tasks_sum']:,}.", ""]
    return "\n".join(lines)
