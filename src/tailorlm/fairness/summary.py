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
    """How often swapping a family's terms changed the label, and how much of the test split the probe covered."""
    name = cf.get("pairs")
    what = ("gendered terms" if name == "gender" else "the listed terms" if name == "custom"
            else f"the {str(name).replace('_', ' ')} terms ({cf.get('axis', name)})")
    if not cf.get("rows_swapped"):
        return f"None of the {cf['n']} test texts holds one of {what}, so the counterfactual swap measured nothing."
    return (f"Swapping {what} in {cf['rows_swapped']} of {cf['n']} test texts changed the predicted label of "
            f"{cf['flips']} ({cf['flip_rate']:.1%}); the probability of the predicted label moved by "
            f"{cf['mean_abs_change']:.3f} on average. {cf['rows_without_terms']} texts hold no term to swap.")


def mitigation_sentence(mitigation: dict[str, Any]) -> str:
    if mitigation.get("method") == "counterfactual_augment":
        return (f"Counterfactual data augmentation (Lu et al. 2018): {mitigation['rows_added']} swapped copies of "
                f"training rows ({', '.join(mitigation['families'])}) were added to the training split only "
                f"({mitigation['dropped_leaking']} dropped as copies of held-out texts); compare against a run "
                "without it (tailor compare) for its cost in accuracy.")
    weights = [cell["weight"] for cell in mitigation.get("cells") or []]
    if not weights:
        return ""
    return (f"Training rows were reweighed (Kamiran & Calders 2012) so that group and label look independent: "
            f"{len(weights)} (group, label) cells, weights from {min(weights):.2f} to {max(weights):.2f}.")


def postprocess_sentence(post: dict[str, Any]) -> str:
    """ThresholdOptimizer against the unmitigated model on the same test split, with its cost."""
    if post.get("skipped"):
        return f"ThresholdOptimizer post-processing was not fitted: {post['skipped']}."
    before, after = post["unmitigated"], post["mitigated"]
    cost = post["accuracy_cost"]
    price = f"costing {points(cost)} points of accuracy" if cost > 0 else f"gaining {points(cost)} points of accuracy"
    return (f"ThresholdOptimizer ({post['constraint'].replace('_', ' ')}, fitted on the validation split, by "
            f"'{post['group_column']}') moves the demographic-parity difference on the test split from "
            f"{before['demographic_parity_difference']:.3f} to {after['demographic_parity_difference']:.3f} and "
            f"equalized odds from {before['equalized_odds_difference']:.3f} to "
            f"{after['equalized_odds_difference']:.3f}, {price} ({before['accuracy']:.3f} -> "
            f"{after['accuracy']:.3f}; macro-F1 {before['f1_macro']:.3f} -> {after['f1_macro']:.3f}). "
            "Saved with the model: tailor predict and serve apply it to inputs that give their group.")


def representation_sentences(rep: dict[str, Any]) -> list[str]:
    """The largest label skew within a group of the training split, per grouping, and the term shares."""
    split = rep["splits"].get("train") or next(iter(rep["splits"].values()), None)
    if not split:
        return []
    lines = []
    for grouping, table in split["groups"].items():
        skew = [(share, g, label) for g, row in table.items() for label, share in row["labels"].items()
                if row["rows"] >= 5]
        if skew:
            share, group, label = max(skew)
            lines.append(f"Training data by '{grouping}': {len(table)} groups; the most one-sided is '{group}', "
                         f"{share:.0%} of its rows labelled '{label}'.")
    for family, per_label in split["terms"].items():
        shares = {label: row["share"] for label, row in per_label.items()}
        if shares and max(shares.values()) - min(shares.values()) >= 0.2:
            high, low = max(shares, key=shares.get), min(shares, key=shares.get)
            lines.append(f"The {family.replace('_', ' ')} terms appear in {shares[high]:.0%} of '{high}' training "
                         f"texts but {shares[low]:.0%} of '{low}' ones: a term-label correlation a model can learn.")
    return lines


def summarize(result: dict[str, Any]) -> list[str]:
    """Every sentence of a fairness result, in report order."""
    lines: list[str] = []
    for grouping in result.get("groupings") or ([result] if "systems" in result else []):
        found = group_sentences(grouping)
        if result.get("groupings"):
            found = [f"[{grouping['group_column']}] {line}" for line in found]
        lines += found
    for cf in result.get("counterfactual_families") or ([result["counterfactual"]] if result.get("counterfactual")
                                                          else []):
        lines.append(counterfactual_sentence(cf))
    if result.get("postprocess"):
        lines.append(postprocess_sentence(result["postprocess"]))
    if result.get("mitigation"):
        sentence = mitigation_sentence(result["mitigation"])
        lines += [sentence] if sentence else []
    if result.get("representation"):
        lines += representation_sentences(result["representation"])
    return lines
