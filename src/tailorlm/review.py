"""Experts in the loop: export the examples a domain expert should look at, and fold their corrections back.

``tailor review RUN_DIR`` writes a CSV of test examples (or of ``--data FILE`` scored by the saved model), most
useful first:

1. errors, most confident first: a model that is sure and "wrong" often points at a wrong gold label;
2. examples on which the seeds (or folds) of a multi-run directory disagree;
3. the least confident of the rest: where the model is guessing.

Columns: ``id, source, row, split, text, label, predicted, confidence, reason, corrected_label, note``; ``split``
says where the row came from (``test``: the run's test split, ``data``: the ``--data`` file). The expert fills
``corrected_label`` (and optionally ``note``) and leaves the rest alone. ``tailor review`` then names the file to
pass to ``apply-review --data`` (the rows' own ``source``) and warns when they are test rows: relabelling the test
rows a model got wrong inflates the next test score.

``tailor apply-review review.csv --data train.csv`` writes a new version of the data file (``train.v2.csv``,
then ``.v3`` ...; the original is never touched) in which exactly the named labels changed, plus a changelog
(``train.v2.changes.csv``, with each correction's ``split``). How a review row finds its data row:

- by ``source`` + ``row`` when the review row's source is this file (same path or same file name): ``row`` is
  tailorlm's 1-based record number (CSV/TSV: data record after the header; JSONL: line number). The texts must
  still agree (compared after Unicode NFKC, whitespace and case folding), else the file changed since the review;
- otherwise by text: every row of the file whose text equals the review's text (same folding) is changed.

Review rows whose source is another file and whose text is not in this one are skipped and counted (test rows
live in the test file). Only the label cell of a changed record is rewritten; every other byte stays as it was.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tailorlm.errors import DataError, UserError
from tailorlm.rundir import atomic_write_text
from tailorlm.safety import csv_safe, csv_unsafe

COLUMNS = ["id", "source", "row", "split", "text", "label", "predicted", "confidence", "reason", "corrected_label",
           "note"]
NOTE_COLUMNS = ("note", "reviewer_note", "comment")
CHANGELOG_COLUMNS = ["row", "id", "split", "text", "old_label", "new_label", "note", "matched_by"]
#: the ``split`` of review rows scored from ``tailor review --data FILE`` (not a split of the run)
DATA_SPLIT = "data"
TEST_WARNING = ("these rows are the run's test split: relabelling the test rows the model got wrong makes the next "
                "test score look better than the model is; correct a test label only when it is truly wrong, and "
                "compare runs only on the same (corrected) test file")


# ================================================================================================ export


def _prediction_runs(run_dir: Path) -> list[list[dict[str, Any]]]:
    """Predictions of a run, of each seed of a ``--seeds`` run, or of each fold of a k-fold run."""
    from tailorlm.evaluate.predictions import FILE, load_runs, read_jsonl, replicate_dirs

    runs = load_runs(run_dir)
    if not runs and (run_dir / "folds").is_dir():
        runs = [read_jsonl(d / FILE) for d in replicate_dirs(run_dir / "folds", "fold-")]
    return runs


def _model_dirs(run_dir: Path) -> list[Path]:
    from tailorlm.evaluate.predictions import replicate_dirs

    if (run_dir / "model").is_dir() or (run_dir / "tailor_model.json").is_file():
        return [run_dir]
    dirs = [d for d in replicate_dirs(run_dir) if (d / "model").is_dir()]
    if not dirs and (run_dir / "folds").is_dir():
        dirs = [d for d in replicate_dirs(run_dir / "folds", "fold-") if (d / "model").is_dir()]
    return dirs


def predict_file(run_dir: Path, data: Path) -> list[list[dict[str, Any]]]:
    """Score a labelled file with the run's saved model (each seed's, for a ``--seeds`` run)."""
    from tailorlm.models.saved import load_saved_model
    from tailorlm.tasks import get_task
    from tailorlm.tasks.base import EvalSettings

    models = _model_dirs(run_dir)
    if not models:
        raise UserError(f"{run_dir}: no saved model (model/); pass the output_dir of a finished `tailor run`")
    runs = []
    for folder in models:
        loaded = load_saved_model(folder)
        task = get_task(loaded.task)
        frame, _ = task.load_eval_file(data, loaded.meta, {"text_column": "text", "label_column": "label"})
        if len(frame) == 0:
            raise DataError(f"{data}: no usable labelled rows to review (see `tailor eval` for the reasons)")
        result = task.evaluate(loaded.model, loaded.tokenizer, frame, loaded.meta, EvalSettings(loaded.max_length))
        if "predictions" not in result:
            raise UserError(f"{run_dir}: review works for classification runs; task '{loaded.task}' has no labels")
        runs.append(result["predictions"])
    return runs


def review_rows(runs: list[list[dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    """The examples to review, most useful first (see the module docstring), at most ``limit``."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for rows in runs:
        for row in rows:
            if "label" in row and "predicted" in row:
                by_id.setdefault(str(row["id"]), []).append(row)
    if not by_id:
        raise UserError("no classification predictions to review (predictions.jsonl holds no labels)")
    errors, disagreements, rest = [], [], []
    for seen in by_id.values():
        entry = _entry(seen)
        if entry["label"] is not None and entry["predicted"] != entry["label"]:
            errors.append(entry)
        elif entry.pop("_disagree"):
            disagreements.append(entry)
        else:
            rest.append(entry)
    errors.sort(key=lambda e: -e["confidence"])
    disagreements.sort(key=lambda e: e["confidence"])
    rest.sort(key=lambda e: e["confidence"])
    for entry in rest:
        entry["reason"] = f"low confidence ({entry['confidence']:.2f})"
    chosen = [*errors, *disagreements, *rest][:limit]
    for entry in chosen:
        entry.pop("_disagree", None)
    return chosen


def _entry(seen: list[dict[str, Any]]) -> dict[str, Any]:
    """One review row from every run's prediction of an example: the majority label and why it is listed."""
    votes = Counter(str(r["predicted"]) for r in seen)
    predicted = votes.most_common(1)[0][0]
    confidence = sum(float(r.get("confidence") or 0.0) for r in seen if str(r["predicted"]) == predicted) / votes[
        predicted]
    first = seen[0]
    reasons = []
    label = first.get("label")
    if label is not None and predicted != str(label):
        reasons.append(f"model says {predicted} ({confidence:.2f} confident)")
    disagree = len(votes) > 1
    if disagree:
        reasons.append("runs disagree: " + ", ".join(f"{k} x{v}" for k, v in votes.most_common()))
    return {"id": first.get("id"), "source": first.get("source"), "row": first.get("row"),
            "split": first.get("split", "test"), "text": first.get("text"),
            "label": None if label is None else str(label), "predicted": predicted,
            "confidence": round(confidence, 4), "reason": "; ".join(reasons), "corrected_label": "", "note": "",
            "_disagree": disagree}


def examples_to_review(run_dir: Path, limit: int = 50, data: Path | None = None) -> list[dict[str, Any]]:
    """The rows ``tailor review`` would write, without writing them (the dashboard's review page shows them)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a folder; pass the output_dir of a finished `tailor run`")
    runs = predict_file(run_dir, Path(data)) if data is not None else _prediction_runs(run_dir)
    if not runs:
        raise UserError(f"{run_dir}: no predictions.jsonl; re-run it with this tailorlm, or pass --data FILE")
    split = DATA_SPLIT if data is not None else "test"
    runs = [[row | {"split": split} for row in rows] for rows in runs]
    return review_rows(runs, limit)


def export_review(run_dir: Path, out: Path, limit: int = 50, data: Path | None = None) -> list[dict[str, Any]]:
    """Write the review CSV; returns its rows."""
    rows = examples_to_review(run_dir, limit, data)
    atomic_write_text(Path(out), review_csv(rows))
    return rows


def source_files(rows: list[dict[str, Any]], run_dir: Path) -> list[str]:
    """The files the review rows came from, most rows first, as paths that work from here: a relative source
    is placed with the run's recorded data files (``run_info.json``) when it does not exist as written."""
    from tailorlm.provenance import recorded_paths

    recorded = [path for path, _ in recorded_paths(Path(run_dir)).values()]
    counts = Counter(str(r["source"]) for r in rows if r.get("source"))
    found = []
    for source, _ in counts.most_common():
        path = Path(source)
        if not path.is_absolute() and not path.exists():
            path = Path(next((p for p in recorded if Path(p).name == path.name), source))
        found.append(str(path))
    return list(dict.fromkeys(found))


def review_advice(rows: list[dict[str, Any]], out: Path, run_dir: Path) -> tuple[str, list[str]]:
    """What ``tailor review`` prints: the next command (``apply-review`` on the rows' own file) and warnings."""
    errors = sum(1 for r in rows if r["label"] is not None and r["predicted"] != r["label"])
    sources = source_files(rows, run_dir) or ["DATA_FILE"]
    line = (f"wrote {len(rows)} examples to {out} ({errors} errors); fill in corrected_label, then "
            f"`tailor apply-review {out} --data {sources[0]}`")
    warnings = []
    if len(sources) > 1:
        warnings.append(f"the rows come from {len(sources)} files ({', '.join(sources)}); run apply-review once per "
                        "file with --data")
    if any(r.get("split") == "test" for r in rows):
        warnings.append(TEST_WARNING)
    return line, warnings


def review_csv(rows: list[dict[str, Any]]) -> str:
    """The review as CSV text. Cells of user text that a spreadsheet would run as a formula (``=HYPERLINK(...)``)
    get a leading quote (``safety.csv_safe``); ``read_corrections`` takes it off again."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if row.get(k) is None else csv_safe(row.get(k))) for k in COLUMNS} for row in rows)
    return buffer.getvalue()


# ================================================================================================ apply


@dataclass
class Correction:
    """One filled-in review row."""

    review_row: int
    new_label: str
    text: str
    source: str | None
    row: int | None
    ident: str
    note: str
    split: str = ""


@dataclass
class Record:
    """One data record of the file being corrected, with the raw lines it spans."""

    row: int
    start: int  # index of its first line
    end: int  # index after its last line
    text: str
    label: str | None
    fields: Any  # CSV: list of fields; JSONL: the parsed object


@dataclass
class ApplyResult:
    path: Path
    changelog: Path
    changes: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)


def fold(text: str) -> str:
    """Text as compared between the review and the file: NFKC, collapsed whitespace, case-folded."""
    return " ".join(unicodedata.normalize("NFKC", str(text)).split()).casefold()


def read_corrections(review: Path) -> list[Correction]:
    """The review rows with a ``corrected_label``; one-line errors for a file that is not a review CSV."""
    if not review.is_file():
        raise DataError(f"{review}: review file not found; write one with `tailor review RUN_DIR --out {review}`")
    try:
        text = review.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{review}: not UTF-8; save the review as CSV UTF-8") from None
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","  # spreadsheets in some locales write ';'
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    if "corrected_label" not in header:
        raise DataError(f"{review}: no 'corrected_label' column (columns: {', '.join(header)}); "
                        "use the CSV written by `tailor review`")
    if not ({"text", "id"} & set(header)):
        raise DataError(f"{review}: needs a 'text' or 'id' column to find each row; use the CSV of `tailor review`")
    note_column = next((c for c in NOTE_COLUMNS if c in header), None)
    corrections = []
    for number, raw in enumerate(reader, start=1):
        new = (raw.get("corrected_label") or "").strip()
        if not new:
            continue
        raw = {key: csv_unsafe(value) if isinstance(value, str) else value for key, value in raw.items()}
        ident = (raw.get("id") or "").strip()
        source = (raw.get("source") or "").strip() or None
        row_text = (raw.get("row") or "").strip()
        if source is None and re.fullmatch(r".+:\d+", ident):
            source, _, row_text = ident.rpartition(":")
        corrections.append(Correction(
            review_row=number, new_label=new, text=raw.get("text") or "", source=source,
            row=int(row_text) if row_text.isdigit() else None, ident=ident,
            note=(raw.get(note_column) or "").strip() if note_column else "",
            split=(raw.get("split") or "").strip(),
        ))
    return corrections


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    formats = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
    if suffix not in formats:
        raise DataError(f"{path}: apply-review edits CSV, TSV or JSONL files; convert it to one of those first")
    return formats[suffix]


def _read_text(path: Path) -> tuple[str, bool]:
    if not path.is_file():
        raise DataError(f"{path}: data file not found (--data); pass the training file the review should correct")
    data = path.read_bytes()
    bom = data.startswith(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8-sig"), bom
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8; re-save it as UTF-8 before applying a review") from None


def _lines(text: str) -> list[str]:
    return io.StringIO(text, newline="").readlines()


def csv_records(lines: list[str], delimiter: str, path: Path, text_column: str, label_column: str
                ) -> list[Record]:
    """Data records with the lines they span, numbered exactly as tailorlm's CSV reader numbers them."""
    reader = csv.reader(iter(lines), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    records: list[Record] = []
    number = 0
    while True:
        start = reader.line_num
        try:
            fields: list[str] | None = next(reader)
        except StopIteration:
            break
        except csv.Error:
            fields = None
        if fields is not None and not (len(fields) > 1 or (fields and fields[0].strip())):
            continue
        if header is None:
            header = [h.strip() for h in fields or []]
            if text_column not in header or label_column not in header:
                raise DataError(f"{path}: needs columns '{text_column}' and '{label_column}' "
                                f"(has: {', '.join(header)}); pass --text-column / --label-column")
            continue
        number += 1
        ok = fields is not None and len(fields) >= len(header)
        records.append(Record(
            row=number, start=start, end=reader.line_num,
            text=fields[header.index(text_column)] if ok and fields else "",
            label=fields[header.index(label_column)] if ok and fields else None,
            fields=(fields, header.index(label_column)) if ok else None,
        ))
    return records


def jsonl_records(lines: list[str], path: Path, text_column: str, label_column: str) -> list[Record]:
    """One record per JSON object line; ``row`` is the line number, as tailorlm's JSONL reader counts."""
    from tailorlm.data.load import cell

    records = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        ok = isinstance(value, dict)
        records.append(Record(row=index + 1, start=index, end=index + 1,
                              text=cell(value.get(text_column)) or "" if ok else "",
                              label=cell(value.get(label_column)) if ok else None, fields=value if ok else None))
    return records


def _ending(line: str) -> str:
    return "\r\n" if line.endswith("\r\n") else line[-1] if line.endswith(("\n", "\r")) else ""


def rewrite(record: Record, lines: list[str], fmt: str, new_label: str, label_column: str) -> str:
    """The record's text with only its label changed, ending with the same line break."""
    ending = _ending(lines[record.end - 1])
    if fmt == "jsonl":
        obj = dict(record.fields)
        old = obj.get(label_column)
        keep_int = isinstance(old, int) and not isinstance(old, bool) and re.fullmatch(r"-?\d+", new_label)
        obj[label_column] = int(new_label) if keep_int else new_label
        return json.dumps(obj, ensure_ascii=False) + ending
    fields, label_at = record.fields
    fields = list(fields)
    fields[label_at] = new_label
    buffer = io.StringIO()
    csv.writer(buffer, delimiter="\t" if fmt == "tsv" else ",", lineterminator=ending).writerow(fields)
    return buffer.getvalue()


def _same_file(source: str | None, data: Path) -> bool:
    if source is None:
        return False
    given = Path(source)
    try:
        if given.exists() and given.resolve() == data.resolve():
            return True
    except OSError:
        pass
    return given.name == data.name


def next_version(path: Path) -> Path:
    """``train.csv`` -> ``train.v2.csv``; ``train.v2.csv`` -> ``train.v3.csv``; never an existing file."""
    stem, suffix = path.name[: -len(path.suffix)] if path.suffix else path.name, path.suffix
    match = re.fullmatch(r"(.*)\.v(\d+)", stem)
    base, version = (match.group(1), int(match.group(2)) + 1) if match else (stem, 2)
    while (candidate := path.with_name(f"{base}.v{version}{suffix}")).exists():
        version += 1
    return candidate


def _match(correction: Correction, records: list[Record], by_row: dict[int, Record],
           by_text: dict[str, list[Record]], data: Path, review: Path) -> tuple[list[Record], str]:
    """The records a correction names, and how they were found ("row" or "text")."""
    where = f"{review} row {correction.review_row}"
    if _same_file(correction.source, data) and correction.row is not None:
        record = by_row.get(correction.row)
        if record is None:
            raise DataError(f"{where}: {data} has no row {correction.row}; was the review made on another version?")
        if correction.text and fold(record.text) != fold(correction.text):
            raise DataError(f"{where}: row {correction.row} of {data} holds another text ({record.text[:60]!r}); "
                            "the file changed since the review, run `tailor review` again")
        return [record], "row"
    found = by_text.get(fold(correction.text), []) if correction.text else []
    if not found and (correction.source is None or _same_file(correction.source, data)):
        raise DataError(f"{where}: text {correction.text[:60]!r} is not in {data}; check --data")
    return found, "text"


def apply_review(review: Path, data: Path, out: Path | None = None, allow_new_labels: bool = False,
                 text_column: str = "text", label_column: str = "label") -> ApplyResult:
    """Write the corrected copy of ``data`` and its changelog; the original file is left byte-identical."""
    review, data = Path(review), Path(data)
    fmt = _format(data)
    corrections = read_corrections(review)
    text, bom = _read_text(data)
    lines = _lines(text)
    records = (jsonl_records(lines, data, text_column, label_column) if fmt == "jsonl"
               else csv_records(lines, "\t" if fmt == "tsv" else ",", data, text_column, label_column))
    known = sorted({r.label for r in records if r.label})
    for c in corrections:
        if c.new_label not in known and not allow_new_labels:
            raise UserError(f"{review} row {c.review_row}: corrected_label '{c.new_label}' is not a label of {data} "
                            f"(allowed: {', '.join(known)}); fix it or pass --allow-new-labels")
    target = Path(out) if out is not None else next_version(data)
    if target.resolve() == data.resolve():
        raise UserError(f"--out {target}: is the data file itself; apply-review never overwrites the original")
    by_row = {r.row: r for r in records}
    by_text: dict[str, list[Record]] = {}
    for r in records:
        by_text.setdefault(fold(r.text), []).append(r)
    result = ApplyResult(path=target, changelog=target.with_name(f"{target.name[:-len(target.suffix)]}.changes.csv"))
    replaced: dict[int, tuple[Record, str]] = {}
    for c in corrections:
        found, how = _match(c, records, by_row, by_text, data, review)
        if not found:
            result.skipped.append(c.ident or c.text[:40])
            continue
        for record in found:
            current = replaced[record.row][1] if record.row in replaced else record.label
            if record.fields is None:
                raise DataError(f"{data}: row {record.row} could not be parsed, so its label cannot be corrected")
            if current == c.new_label:
                result.unchanged += 1
                continue
            replaced[record.row] = (record, c.new_label)
            result.changes.append({"row": record.row, "id": c.ident, "split": c.split, "text": record.text,
                                   "old_label": record.label,
                                   "new_label": c.new_label, "note": c.note, "matched_by": how})
    new_lines = list(lines)
    for record, label in replaced.values():
        new_lines[record.start] = rewrite(record, lines, fmt, label, label_column)
        for i in range(record.start + 1, record.end):
            new_lines[i] = ""
    body = "".join(new_lines)
    _write(target, ("\ufeff" if bom else "") + body)
    _write_changelog(result.changelog, result.changes)
    return result


def _write(path: Path, text: str) -> None:
    """Bytes exactly as built (no newline translation), written atomically."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_changelog(path: Path, changes: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CHANGELOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(changes)
    atomic_write_text(path, buffer.getvalue())
