"""The report's uncertainty lines: the bootstrap interval of the main metric, the paired test against the best
reference baseline (never a floor: evaluate/floors.py), and a multi-seed run's mean ± std. Only formats what
metrics.json already holds (evaluate/stats.py)."""

from __future__ import annotations

from typing import Any


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "—"


def _signed(value: Any) -> str:
    return f"{value:+.4f}" if isinstance(value, (int, float)) else "—"


def _p(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def significance_facts(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(heading, sentence) rows for the report's summary; empty when the run recorded no significance."""
    rows: list[tuple[str, str]] = []
    seeds = metrics.get("seeds")
    if isinstance(seeds, dict) and seeds.get("values"):
        per_seed = ", ".join(f"{s}: {_num(v)}" for s, v in (seeds.get("per_seed") or {}).items())
        rows.append((f"Seeds ({len(seeds['values'])})",
                     f"{seeds.get('metric')} {_num(seeds.get('mean'))} ± {_num(seeds.get('std'))} "
                     f"(mean ± std; {per_seed})"))
    sig = metrics.get("significance")
    if not isinstance(sig, dict):
        return rows
    ci = sig.get("ci") or {}
    if ci.get("low") is not None:
        rows.append((f"{sig.get('metric')} {ci.get('level', 0.95):.0%} interval",
                     f"{_num(ci.get('low'))} – {_num(ci.get('high'))} (bootstrap over {sig.get('n')} test examples, "
                     f"{ci.get('resamples')} resamples)"))
    vs = sig.get("vs_baseline")
    if isinstance(vs, dict):
        boot = vs.get("bootstrap") or {}
        text = (f"{sig.get('metric')} {_signed(boot.get('difference'))} vs {str(vs.get('baseline')).replace('_', ' ')}"
                f" (paired bootstrap {_p(boot.get('p_value'))}): {vs.get('verdict')}")
        mc = vs.get("mcnemar")
        if isinstance(mc, dict):
            text += (f"; accuracy McNemar {_p(mc.get('p_value'))} (mid-p {_num(mc.get('mid_p'), 3)}): "
                     f"{mc.get('verdict')}")
        rows.append(("Gain vs best baseline", text))
    elif sig.get("no_reference"):  # only floors were measured: say so rather than test a gain over a lower bound
        rows.append(("Gain vs best baseline", f"not tested: {sig['no_reference']}"))
    return rows
