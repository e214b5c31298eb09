"""The runner: the one place that walks a stage list. It asks each stage's predicate, times what runs, merges the
sections it returns into the metrics, and records the plan (which stages ran, which were skipped and why)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from tailorlm.stages.context import RunContext, Stage


def plan(stages: Sequence[Stage], ctx: RunContext) -> list[dict[str, Any]]:
    """Each stage with whether it will run and the condition it runs under (``tailor run --dry-run``)."""
    return [{"stage": s.name, "runs": bool(s.when(ctx)), "when": s.runs_when} for s in stages]


def run_stages(stages: Sequence[Stage], ctx: RunContext) -> dict[str, Any]:
    """Run the stages in order over ``ctx``; returns ``ctx.metrics``.

    The plan is decided before the first stage runs: a predicate reads the recipe (and what the run was given),
    never a result, so the plan a dry run prints is the one that runs.
    """
    ctx.plan = plan(stages, ctx)
    started = time.perf_counter()
    for stage, entry in zip(stages, ctx.plan, strict=True):
        if not entry["runs"] or (stage.main_only and not ctx.main_process):
            continue
        began = time.perf_counter()
        try:
            sections = stage.fn(ctx) or {}
        finally:
            ctx.timings[stage.name] = round(time.perf_counter() - began, 3)
            ctx.timings["total"] = round(time.perf_counter() - started, 3)
        merge_sections(ctx.metrics, sections, stage)
    return ctx.metrics


def merge_sections(metrics: dict[str, Any], sections: dict[str, Any], stage: Stage) -> None:
    """A stage's sections into the metrics: a section two stages share (``adapt``) keeps both stages' keys."""
    unexpected = sorted(set(sections) - set(stage.writes))
    if unexpected:
        raise RuntimeError(f"stage '{stage.name}' returned sections it does not declare: {', '.join(unexpected)}")
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(metrics.get(key), dict):
            metrics[key] = metrics[key] | value
        else:
            metrics[key] = value
