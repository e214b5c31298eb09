"""The data-quality section's tables and sentences, from ``data_report.json``: where each split came from, what
each cleaning stage removed and why, labels and lengths per split, overlaps a reader should know about."""

from __future__ import annotations

from typing import Any

from tailorlm.report.format import count, finite
from tailorlm.report.tables import Cell, Table

#: Plain-language description of each reason a data row was removed.
REMOVAL_REASONS: dict[str, str] = {
    "malformed_row": "row could not be parsed",
    "empty_text": "text was empty",
    "too_short": "text was too short",
    "too_long": "text was too long",
    "missing_label": "label was missing",
    "unknown_label": "label not in the label set",
    "duplicate": "exact duplicate of another row",
    "near_duplicate": "near-duplicate of another row",
    "conflicting_label": "same text carried different labels",
    "leakage": "text also appears in another split",
    "context_leakage": "a question about a validation or test passage (qa)",
    "malformed_json": "record was not valid JSON",
    "empty_target": "target (the translation) was empty",
}


def sources_table(data: dict[str, Any]) -> Table:
    """Where each split came from and how many of its rows survived cleaning."""
    sources, split = data.get("sources") or {}, data.get("split_from_train") or {}
    read, kept, rejected = (data.get(k) or {} for k in ("rows_read", "rows_kept", "rows_rejected"))
    rows = []
    for name in ("train", "validation", "test"):
        if sources.get(name):
            origin = str(sources[name])
        elif split.get(name):
            origin = "split from train"
        else:
            origin = "—"
        rows.append([Cell(name), Cell(origin), Cell(count(read.get(name))), Cell(count(rejected.get(name))),
                     Cell(count(kept.get(name)))])
    return Table(["Split", "Source", "Rows read", "Rows rejected", "Rows kept"], rows, frozenset({2, 3, 4}))


def stages_table(data: dict[str, Any]) -> Table:
    """The row count after each cleaning stage, with how many rows that stage removed."""
    rows, previous = [], None
    for stage in data.get("stages") or []:
        rows_now = stage.get("rows")
        delta = rows_now - previous if finite(rows_now) and finite(previous) else None
        rows.append([Cell(str(stage.get("stage", "—"))), Cell(count(rows_now)),
                     Cell(f"{delta:+,}".replace("-", "\u2212") if delta else "—", "" if delta else "muted")])
        previous = rows_now
    return Table(["Stage", "Rows", "Change"], rows, frozenset({1, 2}))


def removed_table(data: dict[str, Any]) -> Table:
    """Rows removed, by reason, in plain words; reasons that removed nothing are left out."""
    removed = {k: v for k, v in (data.get("removed") or {}).items() if finite(v) and v}
    rows = [[Cell(reason), Cell(REMOVAL_REASONS.get(reason, reason.replace("_", " "))), Cell(count(n))]
            for reason, n in sorted(removed.items(), key=lambda kv: -kv[1])]
    if rows:
        rows.append([Cell("total", "strong"), Cell(""), Cell(count(sum(removed.values())), "strong")])
    return Table(["Reason", "Meaning", "Rows"], rows, frozenset({2}))


def label_table(data: dict[str, Any]) -> Table:
    """Texts per label in each split, with each label's share of its split."""
    dist = data.get("label_distribution") or {}
    splits = [s for s in ("train", "validation", "test") if dist.get(s)]
    labels = list(data.get("labels") or [])
    for split in splits:
        labels += [label for label in dist[split] if label not in labels]
    totals = {s: sum(v for v in dist[s].values() if finite(v)) for s in splits}
    rows = []
    for label in labels:
        row = [Cell(str(label))]
        for split in splits:
            n = dist[split].get(label, 0)
            share = f" ({n / totals[split]:.0%})" if totals[split] else ""
            row.append(Cell(f"{count(n)}{share}", "muted" if not n else ""))
        rows.append(row)
    return Table(["Label", *splits], rows, frozenset(range(1, len(splits) + 1)))


def length_table(data: dict[str, Any], key: str = "length") -> Table:
    """Text length per split (min, mean, percentiles, max) in the report's unit."""
    keys = ["min", "mean", "p50", "p95", "p99", "max"]
    rows = []
    lengths = data.get(key)
    for split, stats in (lengths if isinstance(lengths, dict) else {}).items():
        if stats:
            rows.append([Cell(split), *(Cell(_plain(stats.get(k))) for k in keys)])
    headers = ["Split", "Min", "Mean", "Median", "95th pct", "99th pct", "Max"]
    return Table(headers, rows, frozenset(range(1, len(headers))))


def other_length_tables(data: dict[str, Any]) -> list[tuple[str, Table]]:
    """Length tables besides the text's own, e.g. ``target_length`` of translation pairs: (title, table)."""
    tables = []
    for key in data:
        if key.endswith("_length") and isinstance(data[key], dict):
            table = length_table(data, key)
            if table:
                tables.append((key.removesuffix("_length").replace("_", " ").capitalize() + " length", table))
    return tables


def _plain(value: Any) -> str:
    """An integer as an integer, anything else with one decimal."""
    if not finite(value):
        return "—"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"


def input_overlap(data: dict[str, Any]) -> list[str]:
    """Held-out prompts (generation) or sources (translation) that training also has, with another answer: kept,
    since leakage is judged on whole examples, but a reader should know the test asks familiar questions."""
    lines = []
    for key, what in (("prompt_overlap", "prompt"), ("source_overlap", "source sentence")):
        for split, found in (data.get(key) or {}).items():
            rows, total = (found or {}).get("rows", 0), (found or {}).get("of", 0)
            if rows:
                lines.append(f"{split}: {count(rows)} of {count(total)} rows have a {what} that training also has "
                             "(with a different answer; kept, since only whole examples count as leakage)")
    return lines


def unknown_labels(data: dict[str, Any]) -> list[str]:
    """Sentences about labels seen in validation/test that training never had (those rows were dropped)."""
    lines = []
    for split, found in (data.get("unknown_labels") or {}).items():
        for label, n in (found or {}).items():
            lines.append(f"{split}: label '{label}' on {count(n)} rows is not in the training labels")
    return lines
