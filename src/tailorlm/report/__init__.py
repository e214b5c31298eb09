"""The run report: one HTML page (and a Markdown twin) proving how much fine-tuning helped on this data.

``render_report(run_dir)`` reads the files a run leaves behind (``metrics.json``, and when present
``data_report.json``, ``log_history.json`` and ``recipe.resolved.yaml``) and writes ``report.html`` and
``report.md`` next to them. It only reads files, so ``tailor report RUN_DIR`` can redraw an old run.

The package's modules: ``model`` (loading the run and deciding what it means: ``RunReport``), ``format``
(numbers as text), ``tables`` (``Cell``, ``Table``), ``summary``, ``results`` and ``data_tables`` (the shared
sections' content) and one module per optional section (``adapt``, ``cv``, ``data_curve``, ``fairness``,
``lr_find``, ``search``, ``significance``); ``html`` and ``markdown`` only lay those out, so the two reports can
never disagree about a number. No module of the package imports the package itself.
"""

from __future__ import annotations

from pathlib import Path

from tailorlm.report.model import load_run
from tailorlm.rundir import atomic_write_text

__all__ = ["render_report"]


def _is_multitask(run_dir: Path) -> bool:
    try:
        import json

        return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")).get("task") == "multi-task"
    except (OSError, ValueError, AttributeError):
        return False  # load_run says what is wrong with the file


def render_report(run_dir: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``run_dir`` (atomically) and return their paths."""
    # Imported here: matplotlib is only needed when a report is drawn, not whenever the package is imported.
    from tailorlm.report.html import render_html
    from tailorlm.report.markdown import render_markdown

    run_dir = Path(run_dir)
    if _is_multitask(run_dir):  # several tasks on one encoder: their own report (multitask/report.py)
        import json

        from tailorlm.multitask.report import write_report

        return write_report(run_dir, json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")))
    report = load_run(run_dir)
    html_path, md_path = run_dir / "report.html", run_dir / "report.md"
    atomic_write_text(html_path, render_html(report))
    atomic_write_text(md_path, render_markdown(report))
    return html_path, md_path
