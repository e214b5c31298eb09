"""The fairness gate: a run whose tuned model is too unequal between groups, or too sensitive to swapped terms,
is marked failed, so a pipeline (CI, a release script) can refuse to ship it.

The gate reads the audit that ``audit_run`` already wrote; it measures nothing itself. ``fairness.max_gap`` bounds
the tuned model's best-minus-worst gap between the compared groups (accuracy and macro-F1, as fractions: 0.05 = 5
points): a gap fails it when it is above the limit *and* the permutation test says the groups differ beyond
chance (Holm-adjusted p < 0.05; audits written before the test existed count every gap as significant), so a
small test split's noise never fails a run, and a gap above the limit that is not significant is noted;
``fairness.max_flip_rate`` bounds the share of test texts whose label flips when the terms are swapped.
Everything is still written (model, report, metrics) so the failure can be studied; ``tailor run`` then exits 3.
"""

from __future__ import annotations

from typing import Any

from tailorlm.recipe import FairnessConfig

#: exit status of ``tailor run`` when the gate fails (2 is a user error, 1 a crash)
GATE_EXIT_CODE = 3


def check_gate(fairness: dict[str, Any], cfg: FairnessConfig) -> dict[str, Any] | None:
    """``{"passed", "failures", "checked"}`` for metrics.json's ``fairness.gate``; None when no limit is set."""
    if cfg.max_gap is None and cfg.max_flip_rate is None:
        return None
    failures: list[str] = []
    checked: list[str] = []
    notes: list[str] = []
    for grouping in fairness.get("groupings") or [fairness]:
        if cfg.max_gap is None:
            break
        gaps = ((grouping.get("systems") or {}).get("tuned") or {}).get("gaps") or {}
        where = f" by {grouping['group_column']}" if fairness.get("groupings") else ""
        for metric, gap in gaps.items():
            if gap is None:
                continue
            checked.append(f"{metric} gap{where}")
            if gap["difference"] > cfg.max_gap and gap.get("significant", True):
                failures.append(
                    f"{metric} gap {gap['difference']:.3f} between '{gap['highest']}' and '{gap['lowest']}' "
                    f"is above fairness.max_gap {cfg.max_gap}")
            elif gap["difference"] > cfg.max_gap:
                notes.append(f"{metric} gap {gap['difference']:.3f} is above fairness.max_gap {cfg.max_gap} but "
                             f"not beyond chance (permutation p = {gap.get('p_holm')}, Holm-adjusted): not failed")
    families = fairness.get("counterfactual_families") or [fairness.get("counterfactual") or {}]
    for family in families:
        flip_rate = family.get("flip_rate")
        if cfg.max_flip_rate is None or flip_rate is None:
            continue
        name = f" ({family['pairs']})" if len(families) > 1 else ""
        checked.append(f"counterfactual flip rate{name}")
        if flip_rate > cfg.max_flip_rate:
            failures.append(f"counterfactual flip rate{name} {flip_rate:.3f} is above fairness.max_flip_rate "
                            f"{cfg.max_flip_rate}")
    if not checked:
        failures.append("nothing to check: the audit compared no groups and swapped no terms (see the Fairness "
                        "section); a gate that checks nothing does not pass")
    return {"passed": not failures, "failures": failures, "checked": checked, "notes": notes,
            "max_gap": cfg.max_gap, "max_flip_rate": cfg.max_flip_rate}


def gate_failure(metrics: dict[str, Any]) -> str | None:
    """One line for the terminal when a finished run failed its gate, else None."""
    gate = (metrics.get("fairness") or {}).get("gate")
    if not gate or gate.get("passed"):
        return None
    return "fairness gate failed: " + "; ".join(gate["failures"]) + " (report.html, Fairness section)"
