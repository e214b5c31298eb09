"""Extractive-QA data: SQuAD JSON (v1.1 and v2) or flat JSONL/CSV/JSON rows, validated, de-duplicated and split.

Every question becomes one row of a frame with the columns in :data:`QA_COLUMNS`; answers are kept as two
parallel lists (texts and character starts) because one question may have several gold answers. Rows that
cannot be learned from or scored go to ``rejects`` with a reason, exactly as for classification, so that
``rows read = rows kept + rows rejected`` holds for every file.

Why the split is by context: SQuAD-style data asks several questions about one passage. If one of them is in
train and another in test, the model has already read the test passage, and the test score flatters it. For the
same reason a train question about a validation or test passage is dropped (``context_leakage``) when the splits
come from separate files; passages are compared by data/clean.py's near-duplicate fingerprint (digits kept), so a
copy that differs in case, spacing or punctuation still counts as the same passage.

The steps are the shared pipeline's (data/pipeline.py); :class:`QARows` is what QA adds to it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from tailorlm.data.clean import fingerprint
from tailorlm.data.load import clip, decode, detect_format, jsonl_lines, keys_for, one_line, read_bytes
from tailorlm.data.pipeline import SPLITS, FilePart, Files, LeakRule, RowSpec, TokenCounter, records_frame
from tailorlm.errors import DataError
from tailorlm.recipe import DataConfig

QA_COLUMNS = ["id", "question", "context", "answer_texts", "answer_starts", "is_impossible", "source", "row"]
QA_REASONS = (
    "malformed_row",
    "missing_question",
    "empty_question",
    "missing_context",
    "missing_answers",
    "malformed_answers",
    "answer_not_in_context",
    "duplicate",
    "leakage",
    "context_leakage",
)
STAGE_NAMES = ("read", "validated", "deduplicated", "leakage removed", "final")
#: the data report's keys, in order
REPORT_KEYS = ("task", "sources", "split_from_train", "split_by", "rows_read", "rows_kept", "rows_rejected",
               "removed", "stages", "contexts", "unanswerable", "labels", "label_distribution", "length_unit",
               "length", "warnings")


@dataclass
class QAFile:
    """One file as read and validated: kept rows, rejects, how many records were read, and whether it is v2."""

    frame: pd.DataFrame
    rejects: list[dict[str, Any]]
    rows_read: int
    version_2: bool
    corrected_starts: int = 0


# ------------------------------------------------------------------------------------------- reading


def _is_squad(value: Any) -> bool:
    data = value.get("data") if isinstance(value, dict) else None
    return isinstance(data, list) and any(isinstance(d, dict) and "paragraphs" in d for d in data)


def _squad_records(value: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """One flat record per question of a SQuAD document; ``row`` counts questions in file order (1-based)."""
    row = 0
    for article in value["data"]:
        for paragraph in _list(article, "paragraphs"):
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            for qa in _list(paragraph, "qas"):
                row += 1
                if not isinstance(qa, dict):
                    yield {"row": row, "malformed": f"question {row}: not an object"}
                    continue
                answers = qa.get("answers")
                if isinstance(answers, list):
                    try:
                        answers = {"text": [a.get("text") for a in answers],
                                   "answer_start": [a.get("answer_start") for a in answers]}
                    except AttributeError:
                        answers = "malformed"
                yield {"row": row, "id": qa.get("id"), "question": qa.get("question"), "context": context,
                       "answers": answers, "is_impossible": qa.get("is_impossible")}


def _list(parent: Any, key: str) -> list[Any]:
    """``parent[key]`` when it is a list; anything else (a string, a number, missing) holds no records."""
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, list) else []


def _flat_answers(value: Any) -> Any:
    """Flat rows: ``{"text": [...], "answer_start": [...]}``, a list of SQuAD answer objects, or JSON of either."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return "malformed"
    if isinstance(value, list):
        if not all(isinstance(a, dict) for a in value):
            return "malformed"
        return {"text": [a.get("text") for a in value], "answer_start": [a.get("answer_start") for a in value]}
    return value


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"))


def _flat_records(objects: Iterable[tuple[int, dict[str, Any]]], cfg: DataConfig) -> Iterable[dict[str, Any]]:
    for row, obj in objects:
        yield {"row": row, "id": obj.get("id"), "question": obj.get(cfg.question_column),
               "context": obj.get(cfg.context_column),
               "answers": _flat_answers(obj[cfg.answers_column]) if cfg.answers_column in obj else None,
               "is_impossible": obj.get("is_impossible")}


def _csv_objects(text: str, path: Path, delimiter: str) -> Iterable[tuple[int, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
        rows = list(reader)
    except StopIteration:
        raise DataError(f"{path}: file is empty; it needs a header row (question, context, answers)") from None
    except csv.Error as exc:  # e.g. a quote never closed: the rest of the file is one field
        where = f"{path}: line {reader.line_num}"
        raise DataError(f"{where}: unreadable CSV ({one_line(exc)}); check the quoting") from None
    for number, fields in enumerate(rows, start=1):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            yield number, f"{len(fields)} fields, the header has {len(header)}; quote texts holding the delimiter"
            continue
        yield number, dict(zip(header, fields, strict=True))


def _parse(path: Path, cfg: DataConfig, split: str) -> tuple[list[dict[str, Any]], bool]:
    """Raw records of any supported file, each with its 1-based row, plus whether the file is SQuAD v2."""
    keys = keys_for(split)
    fmt = "json" if cfg.format == "squad" else cfg.format
    kind = detect_format(path, fmt, keys)
    if kind not in ("json", "jsonl", "csv", "tsv"):
        raise DataError(
            f"{path}: QA data must be SQuAD JSON, JSONL or CSV (got {kind}); convert it or set {keys.format}"
        )
    text = decode(read_bytes(path, keys, cfg.max_file_bytes), path)
    if not text.strip():
        raise DataError(f"{path}: file is empty; it needs SQuAD JSON or one question per row")
    if kind == "json":
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than Python's json allows
            raise DataError(f"{path}: invalid JSON ({one_line(exc)}); check the quoting and commas") from None
        if _is_squad(value):
            records = list(_squad_records(value))
            v2 = str(value.get("version", "")).startswith("v2") or any("is_impossible" in r and r.get(
                "is_impossible") is not None for r in records)
            return records, v2
        if isinstance(value, dict) and isinstance(value.get("data"), list):
            value = value["data"]
        if not isinstance(value, list):
            raise DataError(f'{path}: expected SQuAD JSON ({{"data": [{{"paragraphs": ...}}]}}) or an array of rows')
        objects: Iterable[tuple[int, Any]] = enumerate(value, start=1)
    elif kind == "jsonl":
        objects = ((line.number, line.value if line.error is None else line.error) for line in jsonl_lines(text))
    else:
        objects = _csv_objects(text, path, "," if kind == "csv" else "\t")
    records, good = [], []
    for row, obj in objects:
        if isinstance(obj, dict):
            good.append((row, obj))
        else:
            records.append({"row": row, "malformed": obj if isinstance(obj, str) else "not an object"})
    _check_columns(path, good, cfg, keys.file)
    records.extend(_flat_records(good, cfg))
    records.sort(key=lambda r: r["row"])
    return records, True  # flat files: an empty answer list is the HF squad_v2 way of saying "no answer"


def _check_columns(path: Path, objects: list[tuple[int, dict[str, Any]]], cfg: DataConfig, file_key: str) -> None:
    present = {str(k) for _, obj in objects for k in obj}
    if not objects:
        return
    for column, key in ((cfg.question_column, "question_column"), (cfg.context_column, "context_column"),
                        (cfg.answers_column, "answers_column")):
        if column not in present:
            shown = ", ".join(sorted(present)[:20]) or "none"
            raise DataError(f"{path}: no column '{column}' ({file_key}); columns present: {shown}; "
                            f"set data.{key}")


# ------------------------------------------------------------------------------------------- validation


def _locate(context: str, text: str, start: Any) -> int | None:
    """The answer's character start: as given when it matches, else the occurrence nearest to it, else None."""
    if isinstance(start, str) and start.strip().lstrip("-").isdigit():
        start = int(start)
    if isinstance(start, float) and start.is_integer():
        start = int(start)
    if isinstance(start, int) and not isinstance(start, bool) and context[start:start + len(text)] == text:
        return start
    hits, at = [], context.find(text)
    while at >= 0:
        hits.append(at)
        at = context.find(text, at + 1)
    if not hits:
        return None
    target = start if isinstance(start, int) and not isinstance(start, bool) else 0
    return min(hits, key=lambda h: abs(h - target))


def _reject(rec: dict[str, Any], reason: str, detail: str) -> dict[str, Any]:
    text = rec.get("question") if isinstance(rec.get("question"), str) else None
    return {"row": rec["row"], "reason": reason, "detail": detail, "text": clip(text)}


def validate_record(rec: dict[str, Any], version_2: bool) -> tuple[dict[str, Any] | None, dict[str, Any] | None, int]:
    """(kept row, reject, corrected starts): one question checked against its context and answers."""
    if "malformed" in rec:
        return None, _reject(rec, "malformed_row", rec["malformed"]), 0
    question, context = rec.get("question"), rec.get("context")
    if question is None:
        return None, _reject(rec, "missing_question", "no question"), 0
    if not isinstance(question, str) or not question.strip():
        return None, _reject(rec, "empty_question", "the question is empty"), 0
    if not isinstance(context, str) or not context.strip():
        return None, _reject(rec, "missing_context", "no context passage"), 0
    answers, impossible = rec.get("answers"), _truthy(rec.get("is_impossible"))
    if answers == "malformed" or (answers is not None and not _answers_shape_ok(answers)):
        return None, _reject(rec, "malformed_answers", 'answers must be {"text": [...], "answer_start": [...]}'), 0
    texts = list(answers["text"]) if answers else []
    starts = list(answers.get("answer_start") or [None] * len(texts)) if answers else []
    if impossible or (not texts and version_2 and answers is not None):
        return _row(rec, question, context, [], [], True), None, 0
    if not texts:
        return None, _reject(rec, "missing_answers", "no answer given (and the row is not marked is_impossible)"), 0
    kept_texts, kept_starts, corrected = [], [], 0
    for text, start in zip(texts, starts + [None] * (len(texts) - len(starts)), strict=False):
        if not isinstance(text, str) or not text.strip():
            return None, _reject(rec, "malformed_answers", "an answer text is empty"), 0
        found = _locate(context, text, start)
        if found is None:
            return None, _reject(rec, "answer_not_in_context", f"answer {text[:60]!r} does not occur in the context"), 0
        corrected += int(found != start)
        kept_texts.append(text)
        kept_starts.append(found)
    return _row(rec, question, context, kept_texts, kept_starts, False), None, corrected


def _answers_shape_ok(answers: Any) -> bool:
    return isinstance(answers, dict) and isinstance(answers.get("text"), list) and isinstance(
        answers.get("answer_start", []), list)


def _row(rec: dict[str, Any], question: str, context: str, texts: list[str], starts: list[int],
         impossible: bool) -> dict[str, Any]:
    return {"id": str(rec.get("id") or rec["row"]), "question": " ".join(question.split()), "context": context,
            "answer_texts": texts, "answer_starts": starts, "is_impossible": impossible, "row": rec["row"]}


def _frame(rows: list[dict[str, Any]], source: str) -> pd.DataFrame:
    frame = records_frame(rows, [c for c in QA_COLUMNS if c != "source"])
    frame["source"] = source
    return frame[QA_COLUMNS].reset_index(drop=True)


def read_qa_file(path: str | Path, cfg: DataConfig, split: str = "train") -> QAFile:
    """Read and validate one QA file; every record that cannot be used becomes a reject with its reason."""
    file = Path(path)
    records, version_2 = _parse(file, cfg, split)
    if cfg.max_rows is not None:
        records = records[: cfg.max_rows]
    rows, rejects, corrected = [], [], 0
    for rec in records:
        kept, reject, fixed = validate_record(rec, version_2)
        corrected += fixed
        if kept is not None:
            rows.append(kept)
        else:
            rejects.append(reject | {"split": split, "source": str(file)})
    if not records:
        raise DataError(f"{file}: holds no questions; expected SQuAD JSON or rows with question, context, answers")
    return QAFile(_frame(rows, str(file)), rejects, len(records), version_2, corrected)


# ------------------------------------------------------------------------------------------- cleaning and split


def _key(frame: pd.DataFrame) -> pd.Series:
    return frame["question"].str.casefold() + "\x00" + frame["context"]


def drop_duplicate_questions(frame: pd.DataFrame, split: str) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The same question about the same passage twice: keep the first (it would count twice in the scores)."""
    dup = _key(frame).duplicated()
    return frame[~dup], [_frame_reject(r, split, "duplicate", "same question and context as an earlier row")
                         for r in frame[dup].to_dict("records")]


def _context_fingerprints(frame: pd.DataFrame) -> pd.Series:
    """Each row's passage folded like data/clean.py folds texts for near-duplicates, digits kept: a passage that
    differs only in its numbers (a price, a date) answers different questions, so it is not the same passage."""
    folded = {context: fingerprint(context, keep_digits=True) for context in dict.fromkeys(frame["context"])}
    return frame["context"].map(folded).astype(object)


def _frame_reject(row: dict[str, Any], split: str, reason: str, detail: str) -> dict[str, Any]:
    return {"split": split, "source": row["source"], "row": int(row["row"]), "reason": reason, "detail": detail,
            "text": clip(row["question"])}


#: train rows that let the model read a held-out passage leave train: the same question and context
#: (``leakage``), then any other question about a passage whose fingerprint is in validation or test
#: (``context_leakage``)
LEAK_RULES = (
    LeakRule("leakage", _key, lambda split, row: f"same question and context in {split}", first_wins=False),
    LeakRule("context_leakage", lambda frame: _context_fingerprints(frame),
             lambda split, row: f"its context is the passage of {split} row {row}"),
)


def split_by_context(frame: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, held out): whole passages are held out until about ``share`` of the questions are, so no passage
    is on both sides. Passages are drawn in a seeded random order."""
    if share <= 0 or frame.empty:
        return frame, frame.iloc[0:0]
    target = math.ceil(share * len(frame))
    passages = _context_fingerprints(frame)  # near-identical copies of a passage stay on one side
    contexts = list(dict.fromkeys(passages))
    random.Random(seed).shuffle(contexts)
    sizes = passages.value_counts()
    held: set[str] = set()
    count = 0
    for context in contexts:
        if count >= target:
            break
        held.add(context)
        count += int(sizes[context])
    mask = passages.isin(held)
    return frame[~mask], frame[mask]


def _carve(train: pd.DataFrame, files: Files, warnings: list[str]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Validation and test carved from train by passage when no file is given; test first, then validation."""
    cfg = files.cfg
    rest = train
    carved: dict[str, pd.DataFrame] = {}
    for name, share in (("test", cfg.split.test), ("validation", cfg.split.validation)):
        if name in files.held_out or share <= 0:
            continue
        if rest["context"].nunique() < 3:
            warnings.append(f"{name} split is by question, not by passage: train has fewer than 3 passages, so "
                            "test questions may ask about passages seen in training")
            held = rest.sample(n=max(1, math.ceil(share * len(train))), random_state=cfg.seed)
            rest = rest.drop(held.index)
        else:
            rest, held = split_by_context(rest, share * len(train) / max(1, len(rest)), cfg.seed)
        carved[name] = held.sort_index()
    if rest.empty:
        raise DataError(f"{cfg.train}: too few questions to hold out validation and test; add rows or give "
                        "data.validation / data.test files")
    rest = rest.sort_index()
    return rest, {name: carved.get(name, rest.iloc[0:0]) for name in ("validation", "test")}


# ------------------------------------------------------------------------------------------- row spec


@dataclass(frozen=True)
class QARows(RowSpec):
    """Questions about passages (module docstring): validated as read, split by passage, only train must keep
    rows; the report counts passages and unanswerable questions."""

    unit: ClassVar[str] = "questions"
    no_rows: ClassVar[str] = "{path}: no usable {unit} ({reasons}){first}"
    reasons: ClassVar[tuple[str, ...]] = QA_REASONS
    stage_names: ClassVar[tuple[str, ...]] = STAGE_NAMES
    report_keys: ClassVar[tuple[str, ...]] = REPORT_KEYS
    leak_rules: ClassVar[tuple[LeakRule, ...]] = LEAK_RULES
    leak_between_held_out: ClassVar[bool] = False
    require_held_out: ClassVar[bool] = False

    def read(self, split: str, path: str, cfg: DataConfig) -> FilePart:
        file = read_qa_file(path, cfg, split)
        return FilePart.of(split, path, file.frame, file.rejects, file.rows_read, version_2=file.version_2,
                           corrected=file.corrected_starts)

    def dedupe(self, part: FilePart, files: Files) -> None:
        part.apply(drop_duplicate_questions(part.frame, part.split))

    def reject_rows(self, split: str, rows: pd.DataFrame, reason: str, details: list[str]) -> list[dict[str, Any]]:
        return [_frame_reject(row, split, reason, detail)
                for row, detail in zip(rows.to_dict("records"), details, strict=True)]

    def carve(self, train: pd.DataFrame, files: Files, warnings: list[str]) -> tuple[pd.DataFrame,
                                                                                   dict[str, pd.DataFrame]]:
        return _carve(train, files, warnings)

    def length_texts(self, frame: pd.DataFrame) -> list[str]:
        return (frame["question"] + " " + frame["context"]).tolist()

    def warnings_after_split(self, files: Files, frames: dict[str, pd.DataFrame], labels: list[str]) -> list[str]:
        corrected = sum(p.facts["corrected"] for p in files.parts)
        if not corrected:
            return []
        return [f"{corrected} answer_start values did not match their text and were corrected by searching the "
                "context"]

    def report_extras(self, files: Files, frames: dict[str, pd.DataFrame], rejects: list[dict[str, Any]],
                      labels: list[str], count_tokens: TokenCounter | None) -> dict[str, Any]:
        return {
            "task": "qa",
            "split_by": "context",
            "contexts": {name: int(frames[name]["context"].nunique()) for name in SPLITS},
            "unanswerable": {name: int(frames[name]["is_impossible"].sum()) for name in SPLITS},
            "labels": [],
            "label_distribution": {name: {} for name in SPLITS},
        }

    def result_fields(self, files: Files, frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
        """``version_2``: a file is SQuAD v2 and some kept question has no answer; ``settings`` are the task's."""
        version_2 = any(p.facts["version_2"] for p in files.parts) and any(
            frames[name]["is_impossible"].any() for name in SPLITS)
        return {"version_2": version_2, "settings": {}}


# ------------------------------------------------------------------------------------------- one file


def load_qa_eval_file(path: str | Path, cfg: DataConfig | None = None) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One QA file on its own (``tailor eval --data``): validated and de-duplicated like a test split."""
    cfg = cfg or DataConfig(train=str(path))
    file = read_qa_file(path, cfg, split="eval")
    frame, dropped = drop_duplicate_questions(file.frame, "eval")
    return frame.reset_index(drop=True), file.rejects + dropped
