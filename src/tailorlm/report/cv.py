"""The cross-validation section of the report: each fold's scores and their mean ± std (``metrics.json["cv"]``).

Only lays out what ``tune/cv.py`` computed; shared by the HTML and Markdown reports.
"""

from __future__ import annotations

from typing import Any

from tailorlm.report.format import fmt
from tailorlm.report.model import RunReport
from tailorlm.report.tables import Cell, Table

#: the scores shown per fold: (split, metric) pairs, validation first
COLUMNS = [("validation", "f1_macro"), ("validation", "accuracy"), ("validation", "loss"),
           ("test", "f1_macro"), ("test", "accuracy")]


def has_cv(report: RunReport) -> bool:
    return isinstance(report.metrics.get("cv"), dict)


def _columns(cv: dict[str, Any], main: str) -> list[tuple[str, str]]:
    """Classification's fixed columns when present, else the main metric of both splits."""
    means = {split: (cv.get(split) or {}).get("mean") or {} for split in ("validation", "test")}
    columns = [(s, m) for s, m in COLUMNS if m in means[s]]
    return columns or [(s, main) for s in ("validation", "test") if main in means[s]]


def cv_lead(report: RunReport) -> str:
    cv = report.metrics.get("cv") or {}
    how = "stratified by label" if cv.get("stratified") else "not stratified"
    return (f"{cv.get('k')}-fold cross-validation ({how}, seed {cv.get('seed')}): each fold trains on the other "
            "folds and is validated on its own held-out rows; every fold is scored on the same test split. The "
            "summary and comparison above show the mean over folds; std is the sample standard deviation.")


def cv_table(report: RunReport) -> Table:
    """One row per fold, then the mean and the std of every column."""
    cv = report.metrics.get("cv") or {}
    columns = _columns(cv, report.main_metric)
    rows = []
    for fold in cv.get("folds") or []:
        sizes = fold.get("data") or {}
        cells = [Cell(f"fold {fold.get('fold')}"), Cell(str(sizes.get("train", "—"))),
                 Cell(str(sizes.get("validation", "—")))]
        rows.append(cells + [Cell(fmt((fold.get(split) or {}).get(metric), 4)) for split, metric in columns])
    for stat in ("mean", "std"):
        cells = [Cell(stat, "strong"), Cell(""), Cell("")]
        rows.append(cells + [Cell(fmt(((cv.get(split) or {}).get(stat) or {}).get(metric), 4), "strong")
                             for split, metric in columns])
    headers = ["Fold", "Train rows", "Validation rows", *(f"{split} {metric.replace('_', ' ')}"
                                                          for split, metric in columns)]
    return Table(headers, rows, frozenset(range(1, len(headers))))
