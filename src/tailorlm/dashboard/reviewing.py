"""The review page's data: the examples ``tailor review`` exports, and saving an expert's corrections as
``tailor apply-review`` does (review.py's own functions: one definition of which rows to show and how a new data
version is written).

Saving writes the corrected rows as a review CSV under ``RUN_DIR/reviews/`` (a new file each time, never over an
existing one), then applies it to each data file the rows came from: a new version next to it
(``train.v2.csv``, then ``.v3``), with its changelog; the original file is left untouched.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tailorlm.dashboard.index import read_json
from tailorlm.errors import UserError
from tailorlm.review import TEST_WARNING, apply_review, examples_to_review, review_csv, source_files
from tailorlm.rundir import atomic_write_text

#: examples shown on one review page (``tailor review --limit``'s default)
DEFAULT_LIMIT = 50


def review_data(run_dir: Path, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """The rows to review, the labels an expert can pick, and the files a correction would go to."""
    rows = examples_to_review(run_dir, limit)
    labels = read_json(run_dir / "metrics.json").get("labels")
    if not isinstance(labels, list) or not labels:
        labels = sorted({str(r["label"]) for r in rows if r.get("label") is not None} |
                        {str(r["predicted"]) for r in rows})
    return {"rows": rows, "labels": [str(label) for label in labels], "sources": source_files(rows, run_dir),
            "test_warning": TEST_WARNING if any(r.get("split") == "test" for r in rows) else None}


def _new_review_file(run_dir: Path) -> Path:
    folder = run_dir / "reviews"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = folder / f"review-{stamp}.csv", 1
    while path.exists():
        n += 1
        path = folder / f"review-{stamp}-{n}.csv"
    return path


def save_review(run_dir: Path, corrections: list[dict[str, Any]], limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """Fold ``corrections`` (``{"id", "corrected_label", "note"}``) into a new version of each source file.

    The rows are recomputed here rather than taken from the page, so only a label and a note come from the
    browser: the text, row and source an apply matches on are the run's own."""
    rows = {str(row["id"]): row for row in examples_to_review(run_dir, limit)}
    chosen = []
    for item in corrections:
        ident, label = str(item.get("id", "")), str(item.get("corrected_label") or "").strip()
        if not label:
            continue
        if ident not in rows:
            raise UserError(f"review of {run_dir}: example {ident!r} is not among the examples to review; reload "
                            "the page (the run may have changed)")
        chosen.append(rows[ident] | {"corrected_label": label, "note": str(item.get("note") or "").strip()})
    if not chosen:
        raise UserError("no corrected label was chosen; pick the right label for at least one example, then save")
    review_file = _new_review_file(run_dir)
    atomic_write_text(review_file, review_csv(chosen))
    applied = []
    for source in source_files(chosen, run_dir):
        result = apply_review(review_file, Path(source))
        applied.append({"data": source, "path": str(result.path), "changelog": str(result.changelog),
                        "changes": result.changes, "unchanged": result.unchanged, "skipped": result.skipped})
    test_rows = sum(1 for row in chosen if row.get("split") == "test")
    return {"review": str(review_file), "applied": applied, "test_rows": test_rows,
            "warning": TEST_WARNING if test_rows else None}
