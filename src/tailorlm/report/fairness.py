"""The report's Fairness section: what metrics.json holds under ``fairness`` (fairness/), as tables and sentences.

Only lays out numbers the audit already computed. Both renderers draw the same blocks, so the HTML page and the
Markdown twin agree: a block is ``("p", text)``, ``("h3", heading)``, ``("list", [sentences])`` or
``("table", Table)``.
"""

from __future__ import annotations

from typing import Any

from tailorlm.report.format import count, fmt
from tailorlm.report.model import RunReport, system_name
from tailorlm.report.tables import Cell, Table

Block = tuple[str, Any]
#: per-label columns shown in the by-group label table (more would not fit a page)
MAX_LABEL_COLUMNS = 6


def has_fairness(report: RunReport) -> bool:
    return isinstance(report.metrics.get("fairness"), dict) and bool(report.metrics["fairness"])


def _points(value: Any) -> str:
    return f"{value * 100:.1f}" if isinstance(value, (int, float)) else "—"


def by_group_table(audit: dict[str, Any]) -> Table:
    """Each group's size, accuracy and macro-F1 (fine-tuned; the best baseline's macro-F1 beside it)."""
    tuned = audit["systems"]["tuned"]
    base = (audit.get("vs_best_baseline") or {}).get("baseline")
    base_groups = audit["systems"].get(base, {}).get("by_group", {}) if base else {}
    worst = {m: (tuned["gaps"].get(m) or {}).get("lowest") for m in ("accuracy", "f1_macro")}
    headers = ["Group", "Test texts", "Accuracy", "Macro-F1"]
    headers += [f"Macro-F1 {system_name(base).lower()}"] if base else []
    rows = [[Cell("all groups", "strong"), Cell(count(tuned["overall"]["n"]), "strong"),
             Cell(fmt(tuned["overall"]["accuracy"]), "strong"), Cell(fmt(tuned["overall"]["f1_macro"]), "strong")]
            + ([Cell(fmt(audit["systems"][base]["overall"]["f1_macro"]), "strong")] if base else [])]
    for group, scores in tuned["by_group"].items():
        style = "muted" if scores["too_small"] else ""
        row = [Cell(group, style), Cell(count(scores["n"]), style)]
        row += [Cell(fmt(scores[m]), "down" if worst[m] == group else style) for m in ("accuracy", "f1_macro")]
        row += [Cell(fmt((base_groups.get(group) or {}).get("f1_macro")), style)] if base else []
        rows.append(row)
    numeric = frozenset(range(1, len(headers)))
    notes = [""] + ["too small to compare" if s["too_small"] else "" for s in tuned["by_group"].values()]
    if any(notes):
        headers.append("Note")
        rows = [[*row, Cell(note, "muted")] for row, note in zip(rows, notes, strict=True)]
    return Table(headers, rows, numeric)


def label_rates_table(audit: dict[str, Any]) -> Table:
    """Per group and label: the share of texts given the label, and the recall of the label (fine-tuned)."""
    tuned = audit["systems"]["tuned"]
    labels = list(tuned["overall"]["selection_rate"])[:MAX_LABEL_COLUMNS]
    headers = ["Group", *(h for label in labels for h in (f"{label}: share labelled", f"{label}: recall"))]
    rows = []
    for group, scores in [("all groups", tuned["overall"]), *tuned["by_group"].items()]:
        style = "muted" if scores.get("too_small") else ""
        rows.append([Cell(group, style), *(Cell(fmt(scores[kind][label]), style)
                                          for label in labels for kind in ("selection_rate", "recall"))])
    return Table(headers, rows, frozenset(range(1, len(headers))))


def gaps_table(audit: dict[str, Any]) -> Table:
    """For each system and metric: the gap between the best and worst compared group, its interval and ratio."""
    rows = []
    for key, system in audit["systems"].items():
        for metric, title in (("accuracy", "Accuracy"), ("f1_macro", "Macro-F1")):
            gap = system["gaps"].get(metric)
            if gap is None:
                continue
            ci = gap.get("ci") or {}
            interval = f"{_points(ci.get('low'))} – {_points(ci.get('high'))}" if ci.get("low") is not None else "—"
            p_holm = gap.get("p_holm")
            rows.append([Cell(system_name(key), "strong" if key == "tuned" else ""), Cell(title),
                         Cell(_points(gap["difference"])), Cell(interval),
                         Cell(f"{p_holm:.3f}" if p_holm is not None else "—", "down" if gap.get("significant") else ""),
                         Cell(fmt(gap.get("ratio"))), Cell(f"{gap['lowest']} ({fmt(gap['lowest_value'])})"),
                         Cell(f"{gap['highest']} ({fmt(gap['highest_value'])})")])
    headers = ["System", "Metric", "Gap (points)", "95% CI (points)", "p (Holm)", "Ratio worst/best", "Worst group",
               "Best group"]
    return Table(headers, rows, frozenset({2, 3, 4, 5}))


def gaps_method(audit: dict[str, Any]) -> str:
    """How the gaps' intervals and p-values were computed, in one paragraph."""
    return ("Interval: the signed difference between the two named groups (worst and best on this split), "
            "bootstrapped within each group (2,000 resamples), estimate ± 1.96 standard errors; it contains the "
            "gap and includes zero when the difference is within noise. p: permutation test of the group labels "
            "(2,000 shuffles) for any difference between the compared groups, Holm-adjusted over the accuracy and "
            "macro-F1 gaps and each label's share labelled (demographic parity) of the same system.")


def parity_table(audit: dict[str, Any]) -> Table:
    """One-vs-rest demographic-parity and equalized-odds differences per label, fine-tuned model (fairlearn)."""
    tuned = audit["systems"]["tuned"]
    parity, odds = tuned["demographic_parity_difference"], tuned["equalized_odds_difference"]
    tests = tuned.get("parity_tests") or {}

    def p_cell(label: str) -> Cell:
        test = tests.get(label) or {}
        value = test.get("p_holm")
        return Cell(f"{value:.3f}" if value is not None else "—", "down" if test.get("significant") else "")

    rows = [[Cell(label), Cell(fmt(parity.get(label))), p_cell(label), Cell(fmt(odds.get(label)))]
            for label in parity]
    return Table(["Label (vs the rest)", "Demographic-parity difference", "p (Holm)", "Equalized-odds difference"],
                 rows, frozenset({1, 2, 3}))


def counterfactual_table(cf: dict[str, Any]) -> Table:
    """Flip rate and mean probability change per swapped pair, and for all pairs at once."""
    def row(name: str, stats: dict[str, Any], style: str = "") -> list[Cell]:
        rate = stats.get("flip_rate")
        return [Cell(name, style), Cell(count(stats.get("rows", stats.get("rows_swapped"))), style),
                Cell(count(stats.get("flips")), style), Cell(f"{rate:.1%}" if rate is not None else "—", style),
                Cell(fmt(stats.get("mean_abs_change")), style)]

    rows = [row("all pairs at once", cf, "strong"), *(row(p["pair"], p) for p in cf.get("by_pair") or [])]
    return Table(["Swap", "Texts swapped", "Label flips", "Flip rate", "Mean |change| of p(label)"], rows,
                 frozenset({1, 2, 3, 4}))


def flips_table(cf: dict[str, Any], max_chars: int = 300) -> Table:
    def short(text: str) -> str:
        text = " ".join(str(text).split())
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    rows = [[Cell(short(e["text"])), Cell(short(e["swapped"])), Cell(str(e["label"])), Cell(str(e["swapped_label"]))]
            for e in cf.get("examples") or []]
    return Table(["Text", "Swapped text", "Label", "Label after the swap"], rows)


def mitigation_table(mitigation: dict[str, Any]) -> Table:
    rows = [[Cell(str(c["group"])), Cell(str(c["label"])), Cell(count(c["rows"])), Cell(f"{c['expected_rows']:.1f}"),
             Cell(f"{c['weight']:.3f}")] for c in mitigation.get("cells") or []]
    return Table(["Group", "Label", "Training rows", "Rows if independent", "Weight"], rows, frozenset({2, 3, 4}))


def families_table(families: list[dict[str, Any]]) -> Table:
    """One row per counterfactual family (axis): texts swapped, flips, flip rate, mean probability change."""
    rows = []
    for cf in families:
        rate = cf.get("flip_rate")
        rows.append([Cell(str(cf["pairs"]), "strong"), Cell(str(cf.get("axis", ""))), Cell(count(cf["rows_swapped"])),
                     Cell(count(cf.get("flips"))), Cell(f"{rate:.1%}" if rate is not None else "—"),
                     Cell(fmt(cf.get("mean_abs_change"))), Cell(str(cf.get("source", "")), "muted")])
    return Table(["Family", "Axis", "Texts swapped", "Label flips", "Flip rate", "Mean |change| of p(label)",
                  "Terms from"], rows, frozenset({2, 3, 4, 5}))


def representation_table(split: str, grouping: str, table: dict[str, Any]) -> Table:
    """Each group's rows, share of the split, and each label's share within the group."""
    labels = sorted({label for row in table.values() for label in row["labels"]})[:MAX_LABEL_COLUMNS]
    rows = [[Cell(group), Cell(count(row["rows"])), Cell(f"{row['share']:.1%}"),
             *(Cell(f"{row['labels'].get(label, 0):.0%}") for label in labels)] for group, row in table.items()]
    return Table([f"{grouping} ({split})", "Rows", "Share", *(f"'{label}'" for label in labels)], rows,
                 frozenset(range(1, 3 + len(labels))))


def terms_table(split: str, terms: dict[str, Any]) -> Table:
    """Per family and label: the share of the label's texts that hold one of the family's terms."""
    labels = sorted({label for per in terms.values() for label in per})[:MAX_LABEL_COLUMNS]
    rows = [[Cell(family), *(Cell(f"{per.get(label, {}).get('share', 0):.0%}") for label in labels)]
            for family, per in terms.items()]
    return Table([f"Terms ({split})", *(f"share of '{label}' texts" for label in labels)], rows,
                 frozenset(range(1, 1 + len(labels))))


def representation_blocks(rep: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = [("h3", "Representation of the data (before training)")]
    for split, found in rep.get("splits", {}).items():
        blocks += [("table", representation_table(split, g, t)) for g, t in found["groups"].items()]
        if found.get("terms"):
            blocks.append(("table", terms_table(split, found["terms"])))
    return blocks


def postprocess_table(post: dict[str, Any]) -> Table:
    """The unmitigated model and ThresholdOptimizer on the same test split."""
    keys = ("accuracy", "f1_macro", "demographic_parity_difference", "equalized_odds_difference")
    rows = [[Cell(name, "strong" if name == "mitigated" else ""), *(Cell(fmt(post[name][k])) for k in keys)]
            for name in ("unmitigated", "mitigated")]
    return Table(["Test split", "Accuracy", "Macro-F1", "Demographic-parity difference", "Equalized-odds difference"],
                 rows, frozenset({1, 2, 3, 4}))


def _grouping_blocks(fair: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = [("h3", f"By group ('{fair.get('group_column')}')"), ("table", by_group_table(fair)),
                           ("h3", "Share labelled and recall, per label"), ("table", label_rates_table(fair))]
    gaps = gaps_table(fair)
    blocks += [("h3", "Gaps between groups"), ("table", gaps), ("p", gaps_method(fair))] if gaps else []
    return [*blocks, ("h3", "Parity per label"), ("table", parity_table(fair))]


def _mitigation_blocks(fair: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    post = fair.get("postprocess")
    if post and not post.get("skipped"):
        blocks += [("h3", "Post-processing: ThresholdOptimizer vs the unmitigated model (predict applies it to "
                          "inputs that give their group)"),
                   ("table", postprocess_table(post))]
    mitigation = fair.get("mitigation")
    if mitigation and mitigation.get("method") == "reweight":
        how = f"{mitigation.get('reference')}: {mitigation.get('formula')}"
        blocks += [("h3", "Reweighing (training)"), ("p", how), ("table", mitigation_table(mitigation))]
    return blocks


def fairness_blocks(report: RunReport) -> list[Block]:
    """The section's content in order: sentences, by-group tables (each grouping), gaps, parity, counterfactual
    families, representation, mitigations."""
    fair = report.metrics.get("fairness") or {}
    blocks: list[Block] = [("p", "How the fine-tuned model does for each group of test texts, whether swapping "
                                 "terms such as he/she or names changes its answers, who is in the data, and what "
                                 "mitigation did. Gaps are best group minus worst group, in points (hundredths); "
                                 f"groups below {fair.get('min_group_size', 10)} test rows are shown but not "
                                 "compared.")]
    gate = fair.get("gate")
    if gate:
        verdict = "passed" if gate["passed"] else "FAILED: " + "; ".join(gate["failures"])
        blocks.append(("p", f"Fairness gate (max_gap {gate.get('max_gap')}, max_flip_rate "
                            f"{gate.get('max_flip_rate')}): {verdict}."))
    if fair.get("summary"):
        blocks.append(("list", [str(s) for s in fair["summary"]]))
    for grouping in fair.get("groupings") or ([fair] if "systems" in fair else []):
        blocks += _grouping_blocks(grouping)
    families = fair.get("counterfactual_families") or ([fair["counterfactual"]] if fair.get("counterfactual") else [])
    if families:
        blocks += [("h3", "Counterfactual swaps"), ("table", families_table(families))]
    for cf in families:
        blocks += [("h3", f"Counterfactual swaps: {cf['pairs']}"), ("table", counterfactual_table(cf))]
        flips = flips_table(cf)
        blocks += [("h3", f"Texts whose label flipped ({cf['pairs']})"), ("table", flips)] if flips else []
    if fair.get("representation"):
        blocks += representation_blocks(fair["representation"])
    return blocks + _mitigation_blocks(fair)
