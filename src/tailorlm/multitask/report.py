"""The report of a multi-task run (report.md and report.html): per task the tuned model beside its baselines (and
its single-task run), the verdicts, how batches were shared, the learned weights and the gradient cosines.

The content is built once as blocks (heading, list, table, paragraph) and laid out twice, as Markdown and as a
self-contained HTML page, so the two never disagree. ``tailor report RUN_DIR`` on a multi-task run comes here
(report/__init__.py).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from tailorlm.metric_names import metric_name

Block = tuple[str, Any]


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def _task_blocks(name: str, section: dict[str, Any], comparison: dict[str, Any] | None) -> list[Block]:
    metric = section["main_metric"]
    rows = [[f"baseline: {base.replace('_', ' ')}" + (" (floor)" if result.get("floor") else ""), _fmt(result[metric])]
            for base, result in section.get("baseline", {}).items() if isinstance(result, dict) and metric in result]
    seeds = f" (mean of {len(section['per_seed'])} seeds)" if "per_seed" in section else ""
    if comparison:
        rows.append([f"single-task fine-tune{seeds}", _fmt(comparison.get("single_task"))])
    spread = f" ± {_fmt(section['tuned_std'].get(metric))}" if metric in section.get("tuned_std", {}) else ""
    rows.append([f"multi-task fine-tune{seeds}", _fmt(section["tuned"].get(metric)) + spread])
    blocks: list[Block] = [("h3", f"{name} ({section['task']})"), ("table", (["system", metric_name(metric)], rows))]
    test = (comparison or {}).get("paired_test")
    if test:
        blocks.append(("p", f"Multi-task vs single-task on the same test rows ({test['metric']}): difference "
                            f"{test['bootstrap']['difference']:+.4f}, p = {test['p_value']:.3g} ({test['verdict']})."))
    return blocks


def report_blocks(metrics: dict[str, Any]) -> list[Block]:
    mt, comparison = metrics.get("multitask", {}), metrics.get("comparison", {})
    sampling = mt.get("sampling", {})
    verdicts = [f"{name}: {v.get('sentence', '')}" for name, v in metrics.get("verdict", {}).items()]
    blocks: list[Block] = [("h1", f"Multi-task run: {', '.join(mt.get('tasks', []))}"), ("list", verdicts),
                           ("h2", "Per task")]
    for name, section in metrics.get("tasks", {}).items():
        blocks += _task_blocks(name, section, comparison.get("tasks", {}).get(name))
    blocks += [("h2", "How the tasks were trained"),
               ("p", f"One encoder, {len(mt.get('tasks', []))} heads. Sampling {sampling.get('method')} over "
                     f"{sampling.get('steps')} batches: planned shares {sampling.get('probabilities')}, batches per "
                     f"task {sampling.get('batches')}. Balance: {mt.get('balance')}. Checkpoint chosen by "
                     f"{mt.get('select', {}).get('metric')}.")]
    if "uncertainty_weights" in mt:
        blocks.append(("p", f"Learned loss weights exp(-s): {mt['uncertainty_weights']}."))
    cosines = mt.get("gradient_cosines") or []
    if cosines:
        pairs = [k for k in cosines[0] if k != "step"]
        blocks += [("p", "Cosine between the tasks' gradients on the shared encoder at each evaluation (negative: "
                         "they pull it in opposite directions):"),
                   ("table", (["step", *(p.replace("|", " / ") for p in pairs)],
                              [[str(c.get("step")), *[_fmt(c.get(p)) for p in pairs]] for c in cosines]))]
    if comparison:
        time_s, params = comparison["train_time_s"], comparison["parameters_served"]
        blocks.append(("p", f"Training time: multi-task {time_s['multi_task']:.1f} s vs "
                            f"{time_s['single_tasks_sum']:.1f} s for the single-task runs together; parameters "
                            f"served: {params['multi_task']:,} (one encoder) vs {params['single_tasks_sum']:,}."))
    return blocks


def markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            out += ["#" * int(kind[1]) + " " + value, ""]
        elif kind == "list":
            out += [*(f"- {item}" for item in value), ""]
        elif kind == "table":
            header, rows = value
            out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                    *("| " + " | ".join(row) + " |" for row in rows), ""]
        else:
            out += [value, ""]
    return "\n".join(out)


def html_page(blocks: list[Block]) -> str:
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>tailorlm multi-task report</title><style>"
           "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
           "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .6rem}"
           "</style></head><body>"]
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{e(value)}</{kind}>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in value) + "</ul>")
        elif kind == "table":
            header, rows = value
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>" +
                       "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows) +
                       "</table>")
        else:
            out.append(f"<p>{e(value)}</p>")
    return "".join(out) + "</body></html>\n"


def markdown_report(metrics: dict[str, Any]) -> str:
    return markdown(report_blocks(metrics))


def write_report(run_dir: Path, metrics: dict[str, Any]) -> tuple[Path, Path]:
    """report.html and report.md of a multi-task run, atomically."""
    from tailorlm.rundir import atomic_write_text

    blocks = report_blocks(metrics)
    html_path, md_path = Path(run_dir) / "report.html", Path(run_dir) / "report.md"
    atomic_write_text(html_path, html_page(blocks))
    atomic_write_text(md_path, markdown(blocks))
    return html_path, md_path
