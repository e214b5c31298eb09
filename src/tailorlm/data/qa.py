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
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tailorlm.data.clean import fingerprint
from tailorlm.data.load import clip, decode, detect_format, keys_for, one_line, read_bytes
from tailorlm.data.report import length_stats
from tailorlm.errors import DataError
from tailorlm.recipe import DataConfig

QA_COLUMNS = ["id", "question", "context", "answer_texts", "answer_starts", "is_impossible", "source", "row"]
SPLITS = ("train", "validation", "test")
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
STAGES = ("read", "validated", "deduplicated", "leakage removed", "final")


@dataclass
class QAData:
    """What the QA task trains on: three splits, every dropped row, the quality report, and QA settings.

    ``labels`` is empty (QA has none) but present so code written for classification data still works.
    ``settings`` holds what evaluation and reloading need (doc_stride, n_best, ...); ``validation_windows``
    is filled by the task's ``encode``.
    """

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    rejects: list[dict[str, Any]]
    report: dict[str, Any]
    version_2: bool
    labels: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


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


def _jsonl_objects(text: str) -> Iterable[tuple[int, Any]]:
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except (ValueError, RecursionError) as exc:
                yield number, f"line {number}: invalid JSON ({one_line(exc)})"


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
        objects = _jsonl_objects(text)
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
    frame = pd.DataFrame(rows, columns=[c for c in QA_COLUMNS if c != "source"])
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


def drop_leaked(frame: pd.DataFrame, others: dict[str, pd.DataFrame], split: str) -> tuple[pd.DataFrame, list]:
    """Train rows that let the model read a held-out passage leave train: the same question and context
    (``leakage``), then any other question about a passage whose fingerprint is in validation or test
    (``context_leakage``)."""
    seen: dict[str, str] = {}
    for name, other in others.items():
        seen.update(dict.fromkeys(_key(other), name))
    keys = _key(frame)
    leaked = keys.isin(seen)
    rejects = [_frame_reject(r, split, "leakage", f"same question and context in {seen[k]}")
               for r, k in zip(frame[leaked].to_dict("records"), keys[leaked], strict=True)]
    frame = frame[~leaked]
    passages: dict[str, str] = {}
    for name, other in others.items():
        for fp, row in zip(_context_fingerprints(other), other["row"], strict=True):
            passages.setdefault(fp, f"{name} row {int(row)}")
    prints = _context_fingerprints(frame)
    shared = prints.isin(passages)
    rejects += [_frame_reject(r, split, "context_leakage", f"its context is the passage of {passages[fp]}")
                for r, fp in zip(frame[shared].to_dict("records"), prints[shared], strict=True)]
    return frame[~shared], rejects


def _context_fingerprints(frame: pd.DataFrame) -> pd.Series:
    """Each row's passage folded like data/clean.py folds texts for near-duplicates, digits kept: a passage that
    differs only in its numbers (a price, a date) answers different questions, so it is not the same passage."""
    folded = {context: fingerprint(context, keep_digits=True) for context in dict.fromkeys(frame["context"])}
    return frame["context"].map(folded).astype(object)


def _frame_reject(row: dict[str, Any], split: str, reason: str, detail: str) -> dict[str, Any]:
    return {"split": split, "source": row["source"], "row": int(row["row"]), "reason": reason, "detail": detail,
            "text": clip(row["question"])}


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


# ------------------------------------------------------------------------------------------- public API


def prepare_qa_data(cfg: DataConfig, count_tokens: Callable[[list[str]], list[int]] | None = None) -> QAData:
    """Load, validate, de-duplicate, de-leak and split (by passage) the recipe's QA data."""
    if not cfg.train:
        raise DataError("data.train is not set; give the training file in the recipe or with --set data.train=PATH")
    files = {name: read_qa_file(getattr(cfg, name), cfg, name) for name in SPLITS if getattr(cfg, name)}
    frames = {name: f.frame for name, f in files.items()}
    rejects = [r for f in files.values() for r in f.rejects]
    stages: dict[str, dict[str, int]] = {name: {"read": f.rows_read, "validated": len(f.frame)}
                                         for name, f in files.items()}
    for name in frames:
        frames[name], dropped = drop_duplicate_questions(frames[name], name)
        rejects += dropped
        stages[name]["deduplicated"] = len(frames[name])
    held_out = {name: frames[name] for name in ("validation", "test") if name in frames}
    if cfg.clean.remove_leakage and held_out:
        frames["train"], dropped = drop_leaked(frames["train"], held_out, "train")
        rejects += dropped
    for name in frames:
        stages[name]["leakage removed"] = stages[name]["final"] = len(frames[name])
    _require_rows(cfg.train, frames["train"], rejects)
    warnings: list[str] = []
    frames = _carve(frames, cfg, warnings)
    for name in SPLITS:
        frames.setdefault(name, frames["train"].iloc[0:0])
        frames[name] = frames[name].reset_index(drop=True)
    version_2 = any(f.version_2 for f in files.values()) and any(frames[n]["is_impossible"].any() for n in SPLITS)
    corrected = sum(f.corrected_starts for f in files.values())
    if corrected:
        warnings.append(f"{corrected} answer_start values did not match their text and were corrected by "
                        "searching the context")
    order = {"train": 0, "validation": 1, "test": 2}
    rejects.sort(key=lambda r: (order.get(r["split"], 3), r["source"], r["row"]))
    report = qa_report(cfg, files, frames, rejects, stages, count_tokens, warnings)
    return QAData(frames["train"], frames["validation"], frames["test"], rejects, report, version_2)


def _require_rows(path: str, frame: pd.DataFrame, rejects: list[dict[str, Any]]) -> None:
    if len(frame):
        return
    counts = Counter(r["reason"] for r in rejects if r["split"] == "train")
    first = next((r for r in rejects if r["split"] == "train"), None)
    example = f"; first: row {first['row']} {first['reason']} ({first['detail']})" if first else ""
    summary = ", ".join(f"{n} {reason}" for reason, n in counts.most_common())
    raise DataError(f"{path}: no usable questions ({summary}){example}")


def _carve(frames: dict[str, pd.DataFrame], cfg: DataConfig, warnings: list[str]) -> dict[str, pd.DataFrame]:
    """Validation and test carved from train by passage when no file is given; test first, then validation."""
    rest = frames["train"]
    out = dict(frames)
    for name, share in (("test", cfg.split.test), ("validation", cfg.split.validation)):
        if name in frames or share <= 0:
            continue
        if rest["context"].nunique() < 3:
            warnings.append(f"{name} split is by question, not by passage: train has fewer than 3 passages, so "
                            "test questions may ask about passages seen in training")
            held = rest.sample(n=max(1, math.ceil(share * len(frames["train"]))), random_state=cfg.seed)
            rest = rest.drop(held.index)
        else:
            rest, held = split_by_context(rest, share * len(frames["train"]) / max(1, len(rest)), cfg.seed)
        out[name] = held.sort_index()
    if rest.empty:
        raise DataError(f"{cfg.train}: too few questions to hold out validation and test; add rows or give "
                        "data.validation / data.test files")
    out["train"] = rest.sort_index()
    return out


def qa_report(
    cfg: DataConfig,
    files: dict[str, QAFile],
    frames: dict[str, pd.DataFrame],
    rejects: list[dict[str, Any]],
    stages: dict[str, dict[str, int]],
    count_tokens: Callable[[list[str]], list[int]] | None,
    warnings: list[str],
) -> dict[str, Any]:
    """The data report, with the classification report's keys where they mean the same thing."""
    rejected = Counter(r["split"] for r in rejects)
    reasons = Counter(r["reason"] for r in rejects)
    texts = {name: (frames[name]["question"] + " " + frames[name]["context"]).tolist() for name in SPLITS}
    everything = [t for name in SPLITS for t in texts[name]]
    counts = list(count_tokens(everything)) if count_tokens else [len(t.split()) for t in everything]
    lengths, start = {}, 0
    for name in SPLITS:
        lengths[name] = length_stats([int(c) for c in counts[start:start + len(texts[name])]])
        start += len(texts[name])
    return {
        "task": "qa",
        "sources": {name: getattr(cfg, name) for name in SPLITS},
        "split_from_train": {name: name not in files for name in ("validation", "test")},
        "split_by": "context",
        "rows_read": {name: files[name].rows_read if name in files else 0 for name in SPLITS},
        "rows_kept": {name: len(frames[name]) for name in SPLITS},
        "rows_rejected": {name: int(rejected.get(name, 0)) for name in SPLITS},
        "removed": {reason: int(reasons.get(reason, 0)) for reason in QA_REASONS},
        "stages": [{"stage": stage, "rows": sum(s.get(stage, 0) for s in stages.values())} for stage in STAGES],
        "contexts": {name: int(frames[name]["context"].nunique()) for name in SPLITS},
        "unanswerable": {name: int(frames[name]["is_impossible"].sum()) for name in SPLITS},
        "labels": [],
        "label_distribution": {name: {} for name in SPLITS},
        "length_unit": "tokens" if count_tokens else "words",
        "length": lengths,
        "warnings": warnings,
    }


def load_qa_eval_file(path: str | Path, cfg: DataConfig | None = None) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One QA file on its own (``tailor eval --data``): validated and de-duplicated like a test split."""
    cfg = cfg or DataConfig(train=str(path))
    file = read_qa_file(path, cfg, split="eval")
    frame, dropped = drop_duplicate_questions(file.frame, "eval")
    return frame.reset_index(drop=True), file.rejects + dropped
