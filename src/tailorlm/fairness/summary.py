"""The audit in plain language: the sentences metrics.json, the reports and ``tailor audit`` show.

Written once, when the audit is made, from the numbers it holds; the reports only lay them out, so the HTML page,
the Markdown twin and the terminal can never tell different stories. Gaps are in points (hundredths of a score),
the unit a reader of "accuracy 0.71 vs 0.83" thinks in.
"""

from __future__ import annotations

from typing import Any

from tailorlm.fairness.audit import GAP_METRICS

#: a gap below this (half a point) reads as "the same"
SAME = 0.005
#: how each system is named in prose
SYSTEM_PROSE = {"tuned": "the fine-tuned model", "zero_shot": "zero-shot", "linear_probe": "the linear probe"}


def points(value: float) -> str:
    """A score difference in points: 0.123 -> "12", 0.034 -> "3.4" (one decimal below ten points)."""
    v = abs(value) * 100
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def signed_points(value: float) -> str:
    text = f"{value * 100:+.1f}"
    return text.replace("-", "\u2212")


def _test_text(gap: dict[str, Any]) -> str:
    p_holm = gap.get("p_holm")
    return "" if p_holm is None else f", permutation p = {p_holm:.3f} Holm-adjusted"


def gap_sentence(metric: str, gap: dict[str, Any]) -> str:
    """"Accuracy is 12 points lower for group 'north' (0.71) than for group 'south' (0.83) (95% CI 4–20, ...)."

    When the permutation test finds no difference between groups (Holm-adjusted p >= 0.05) the sentence says so
    in words: "no evidence of a gap".
    """
    title = GAP_METRICS.get(metric, metric)
    title = title[:1].upper() + title[1:]
    if gap["difference"] < SAME:
        return f"{title} is the same ({gap['highest_value']:.2f}) in every compared group."
    ci = gap.get("ci") or {}
    interval = ""
    if ci.get("low") is not None and ci.get("high") is not None:
        interval = f"{ci.get('level', 0.95):.0%} CI {signed_points(ci['low'])} to {signed_points(ci['high'])}"
    detail = ", ".join(x for x in (interval, _test_text(gap).lstrip(", ")) if x)
    sentence = (f"{title} is {points(gap['difference'])} points lower for group "
                f"'{gap['lowest']}' ({gap['lowest_value']:.2f}) than for group '{gap['highest']}' "
                f"({gap['highest_value']:.2f})" + (f" ({detail})" if detail else ""))
    if gap.get("significant") is False:
        sentence += "; no evidence of a gap: a difference this size arises by chance between groups of these sizes"
    elif gap.get("significant"):
        sentence += "; the groups differ beyond chance"
    return sentence + "."


def change_sentence(metric: str, change: dict[str, Any], baseline: str) -> str:
    """Whether tuning widened or narrowed a gap against the best baseline, with the interval of the change."""
    title = GAP_METRICS.get(metric, metric)
    baseline = SYSTEM_PROSE.get(baseline, baseline.replace("_", " "))
    interval = ""
    if change.get("low") is not None and change.get("high") is not None:
        interval = f", 95% CI {signed_points(change['low'])} to {signed_points(change['high'])}"
    if abs(change["change"]) < SAME:
        return (f"Fine-tuning left the {title} gap between groups as it was with {baseline} "
                f"({points(change['tuned_gap'])} points).")
    verdict = "" if change.get("significant") else "; not significant at 5%"
    verb = "narrowed" if change["change"] < 0 else "widened"
    return (f"Fine-tuning {verb} the {title} gap between groups from {points(change['baseline_gap'])} points "
            f"({baseline}) to {points(change['tuned_gap'])} (change {signed_points(change['change'])} points"
            f"{interval}){verdict}.")


def _parity_sentence(tuned: dict[str, Any]) -> str:
    parity = {k: v for k, v in (tuned.get("demographic_parity_difference") or {}).items() if v is not None}
    if not parity:
        return ""
    label = max(parity, key=lambda k: (parity[k], k))
    return (f"The share of texts labelled '{label}' differs by up to {points(parity[label])} points between groups "
            "(demographic-parity difference; equalized odds per label in the table).")


def group_sentences(audit: dict[str, Any]) -> list[str]:
    """The by-group findings: the tuned model's gaps, the change against the best baseline, small groups."""
    tuned = audit["systems"]["tuned"]
    lines: list[str] = []
    if len(tuned["compared"]) < 2:
        lines.append(f"Fewer than two groups of '{audit['group_column']}' have at least {audit['min_group_size']} "
                     "test rows, so no gap between groups is measured.")
    for metric in GAP_METRICS:
        gap = tuned["gaps"].get(metric)
        if gap is not None:
            lines.append(gap_sentence(metric, gap))
    change = audit.get("vs_best_baseline") or {}
    lines += [change_sentence(m, change[m], change["baseline"]) for m in GAP_METRICS if m in change]
    parity = _parity_sentence(tuned)
    lines += [parity] if parity else []
    small = audit.get("small_groups") or []
    if small:
        shown = ", ".join(f"'{g}' ({audit['groups'][g]} rows)" for g in small[:5]) + (", ..." if len(small) > 5 else "")
        lines.append(f"Too small to compare (fewer than {audit['min_group_size']} test rows): {shown}; shown, but "
                     "left out of gaps and differences.")
    if audit.get("missing"):
        lines.append(f"{audit['missing']} test rows have an empty '{audit['group_column']}' cell: they form the group "
                     "'(missing)'.")
    return lines


def counterfactual_sentence(cf: dict[str, Any]) -> str:
    """How often swapping the terms changed the label, and how much of the test split the probe covered."""
    what = "gendered terms" if cf.get("pairs") == "gender" else "the listed terms"
    if not cf.get("rows_swapped"):
        return f"None of the {cf['n']} test texts holds one of the {what}, so the counterfactual swap measured nothing."
    return (f"Swapping {what} in {cf['rows_swapped']} of {cf['n']} test texts changed the predicted label of "
            f"{cf['flips']} ({cf['flip_rate']:.1%}); the probability of the predicted label moved by "
            f"{cf['mean_abs_change']:.3f} on average. {cf['rows_without_terms']} texts hold no term to swap.")


def mitigation_sentence(mitigation: dict[str, Any]) -> str:
    weights = [cell["weight"] for cell in mitigation.get("cells") or []]
    if not weights:
        return ""
    return (f"Training rows were reweighed (Kamiran & Calders 2012) so that group and label look independent: "
            f"{len(weights)} (group, label) cells, weights from {min(weights):.2f} to {max(weights):.2f}.")


def summarize(result: dict[str, Any]) -> list[str]:
    """Every sentence of a fairness result, in report order."""
    lines = group_sentences(result) if "systems" in result else []
    if result.get("counterfactual"):
        lines.append(counterfactual_sentence(result["counterfactual"]))
    if result.get("mitigation"):
        sentence = mitigation_sentence(result["mitigation"])
        lines += [sentence] if sentence else []
    return lines
