"""Reading and validating word-level tagged data (NER and other token classification).

Two shapes are read:

* **CoNLL**: one word per line, whitespace-separated columns with the word first and the tag last, a blank line
  between sentences, ``-DOCSTART-`` lines skipped. A sentence's ``row`` is the line number it starts on, so a
  reject can be found in an editor.
* **JSON Lines / JSON / Parquet**: one record per sentence with a list of words (``data.tokens_column``) and a
  list of tags (``data.tags_column``); ``row`` is the line (JSONL) or position (JSON, Parquet).

Every sentence that cannot be used becomes a reject with its reason (``length_mismatch``, ``invalid_bio``,
``unknown_label``, ...), never a silent drop; a problem with the whole file is one :class:`DataError` line.
Tags must be BIO (``O``, ``B-TYPE``, ``I-TYPE``); an ``I-`` tag that opens an entity is repaired to ``B-`` (as
conlleval reads it anyway) and counted in the report's warnings.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tailorlm.data.clean import reject
from tailorlm.data.load import DEFAULT_MAX_FILE_BYTES, Keys, check_columns, decode, one_line, read_bytes
from tailorlm.data.prepare import PreparedData
from tailorlm.data.report import length_stats
from tailorlm.data.split import carve_splits
from tailorlm.errors import DataError
from tailorlm.recipe import DataConfig

SPLITS = ("train", "validation", "test")
STAGES = ("read", "cleaned", "deduplicated", "leakage removed", "final")
#: every reason a sentence can be dropped for, in the order the data report lists them
REASONS = (
    "malformed_row",
    "not_a_list",
    "empty_text",
    "missing_label",
    "length_mismatch",
    "invalid_bio",
    "unknown_label",
    "duplicate",
    "conflicting_label",
    "leakage",
)
FRAME_COLUMNS = ["tokens", "tags", "text", "source", "row"]
_CONLL_EXTENSIONS = {".conll", ".conllu", ".conll03", ".iob", ".iob2", ".bio", ".txt", ".tsv", ".tab"}
_OBJECT_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
_BIO = re.compile(r"^(?:O|[BI]-\S+)$")
TINY_ENTITY = 10


@dataclass
class TokenTable:
    """One file as read: sentences (row, tokens, tags) plus a reject for each record that did not parse."""

    records: list[dict[str, Any]]
    rejects: list[dict[str, Any]] = field(default_factory=list)  # row, reason, detail, text, label

    @property
    def rows_read(self) -> int:
        return len(self.records) + len(self.rejects)


def _bad(row: int, reason: str, detail: str, tokens: Any = None, label: str | None = None) -> dict[str, Any]:
    text = " ".join(str(t) for t in tokens) if isinstance(tokens, list) else (None if tokens is None else str(tokens))
    return {"row": row, "reason": reason, "detail": detail, "text": text, "label": label}


def keys_for_tokens(split: str) -> Keys:
    """Recipe keys (or ``tailor eval`` options) that an error message should name."""
    if split in SPLITS:
        return Keys(file=f"data.{split}", text="data.tokens_column", label="data.tags_column")
    return Keys(file="--data", text="--text-column", label="--label-column", format="the file extension")


def token_format(path: Path, fmt: str) -> str:
    """conll, jsonl, json or parquet: from ``data.format`` or the extension (``.txt``/``.tsv`` read as CoNLL)."""
    if fmt in ("conll", "txt", "tsv"):
        return "conll"
    if fmt in ("jsonl", "json", "parquet"):
        return fmt
    if fmt == "csv":
        raise DataError(f"{path}: CSV cannot hold a list of words per row; use CoNLL (word and tag per line) or JSONL")
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".xz")]
    ext = suffixes[-1] if suffixes else ""
    if ext in _CONLL_EXTENSIONS:
        return "conll"
    if ext in _OBJECT_EXTENSIONS:
        return _OBJECT_EXTENSIONS[ext]
    raise DataError(
        f"{path}: cannot tell the format from extension '{ext or 'none'}'; token classification reads CoNLL "
        "(.conll .txt .tsv) or JSONL/JSON/Parquet with tokens and tags lists; rename it or set data.format"
    )


# ------------------------------------------------------------------------------------------- CoNLL


def _conll_sentences(text: str) -> Iterable[tuple[int, list[tuple[int, list[str]]]]]:
    """(first line number, [(line number, columns)]) per sentence; blank and -DOCSTART- lines separate them."""
    current: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if current:
                yield current[0][0], current
            current = []
            continue
        current.append((number, columns))
    if current:
        yield current[0][0], current


def read_conll(text: str, path: Path, max_rows: int | None) -> TokenTable:
    """CoNLL columns: the word first, the tag last; a line with a single column rejects its sentence."""
    records: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for count, (start, lines) in enumerate(_conll_sentences(text), start=1):
        if max_rows is not None and count > max_rows:
            break
        words = [columns[0] for _, columns in lines]
        short = next(((n, c) for n, c in lines if len(c) < 2), None)
        if short is not None:
            detail = (f"line {short[0]}: only one column ('{short[1][0]}'); each line needs the word first and the "
                      "tag last")
            rejects.append(_bad(start, "malformed_row", detail, words))
            continue
        records.append({"row": start, "tokens": words, "tags": [columns[-1] for _, columns in lines]})
    if not records and not rejects:
        raise DataError(f"{path}: holds no sentences; CoNLL needs one 'word tag' line per word, blank lines between")
    return TokenTable(records, rejects)


# ------------------------------------------------------------------------------------------- JSON, Parquet


def _jsonl_objects(text: str, max_rows: int | None) -> tuple[list[tuple[int, Any]], list[dict[str, Any]]]:
    objects: list[tuple[int, Any]] = []
    rejects: list[dict[str, Any]] = []
    records = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        records += 1
        if max_rows is not None and records > max_rows:
            break
        try:
            objects.append((number, json.loads(line)))
        except (ValueError, RecursionError) as exc:
            rejects.append(_bad(number, "malformed_row", f"line {number}: invalid JSON ({one_line(exc)})", line))
    return objects, rejects


def _json_objects(text: str, path: Path, max_rows: int | None) -> list[tuple[int, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "check quoting and commas"
        if exc.msg == "Extra data":
            hint = "it looks like JSON Lines: rename it to .jsonl"
        raise DataError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); {hint}") from None
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
    if not isinstance(value, list):
        raise DataError(f'{path}: expected a JSON array of objects or {{"data": [...]}}')
    return list(enumerate(value[:max_rows] if max_rows else value, start=1))


def _parquet_objects(data: bytes, path: Path, max_rows: int | None) -> list[tuple[int, Any]]:
    import io

    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several unrelated types for files that are not Parquet
        raise DataError(f"{path}: not a valid Parquet file ({one_line(exc)}); check the file") from None
    if max_rows is not None:
        table = table.slice(0, max_rows)
    return list(enumerate(table.to_pylist(), start=1))


def _as_words(value: Any, column: str, row: int, is_tags: bool) -> tuple[list[str] | None, dict[str, Any] | None]:
    """A list of strings, or the reject that says why the value is not one."""
    if value is None:
        reason = "missing_label" if is_tags else "empty_text"
        return None, _bad(row, reason, f"no value for '{column}'")
    if not isinstance(value, list):
        kind = type(value).__name__
        hint = "; split the sentence into a list of words" if isinstance(value, str) else ""
        return None, _bad(row, "not_a_list", f"'{column}' is a {kind}, not a list{hint}", value)
    bad = next((i for i, v in enumerate(value, start=1) if not isinstance(v, (str, int, float))), None)
    if bad is not None:
        return None, _bad(row, "malformed_row", f"'{column}' item {bad} is not a string", value)
    return [str(v) for v in value], None


def _from_objects(
    objects: list[tuple[int, Any]], rejects: list[dict[str, Any]], path: Path, tokens_column: str,
    tags_column: str, keys: Keys,
) -> TokenTable:
    dicts = [(row, obj) for row, obj in objects if isinstance(obj, dict)]
    rejects += [_bad(row, "malformed_row", f"record {row}: not an object", obj) for row, obj in objects
                if not isinstance(obj, dict)]
    if not dicts:
        raise DataError(f'{path}: holds no JSON objects; expected {{"{tokens_column}": [...], "{tags_column}": [...]}}')
    present = list(dict.fromkeys(str(k) for _, obj in dicts for k in obj))
    check_columns(path, present, tokens_column, tags_column, True, keys)
    records: list[dict[str, Any]] = []
    for row, obj in dicts:
        tokens, problem = _as_words(obj.get(tokens_column), tokens_column, row, False)
        if problem is None:
            tags, problem = _as_words(obj.get(tags_column), tags_column, row, True)
        if problem is not None:
            problem["text"] = problem["text"] or (" ".join(map(str, tokens)) if tokens else None)
            rejects.append(problem)
            continue
        records.append({"row": row, "tokens": tokens, "tags": tags})
    return TokenTable(records, sorted(rejects, key=lambda r: r["row"]))


def read_token_file(
    path: str | Path, *, fmt: str = "auto", tokens_column: str = "tokens", tags_column: str = "tags",
    split: str = "train", max_rows: int | None = None, max_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
) -> TokenTable:
    """Read one tagged file (CoNLL, JSONL, JSON or Parquet) into sentences, with rejects for unparseable ones."""
    file = Path(path)
    keys = keys_for_tokens(split)
    kind = token_format(file, fmt)
    data = read_bytes(file, keys, max_bytes)
    if kind == "parquet":
        return _from_objects(_parquet_objects(data, file, max_rows), [], file, tokens_column, tags_column, keys)
    text = decode(data, file)
    if not text.strip():
        raise DataError(f"{file}: file is empty; it needs tagged sentences")
    if kind == "conll":
        return read_conll(text, file, max_rows)
    if kind == "jsonl":
        objects, rejects = _jsonl_objects(text, max_rows)
        return _from_objects(objects, rejects, file, tokens_column, tags_column, keys)
    return _from_objects(_json_objects(text, file, max_rows), [], file, tokens_column, tags_column, keys)


# ------------------------------------------------------------------------------------------- validation


def repair_bio(tags: list[str]) -> tuple[list[str], int]:
    """``I-X`` that does not continue an ``X`` entity becomes ``B-X`` (conlleval reads it so); returns the count."""
    fixed: list[str] = []
    repaired = 0
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
            repaired += 1
        fixed.append(tag)
        previous = tag
    return fixed, repaired


def check_sentence(
    tokens: list[str], tags: list[str], lowercase: bool = False, normalize: bool = True
) -> tuple[dict[str, Any], str, str]:
    """Cleaned sentence plus (reason, detail) when it must be rejected; reason is "" when it is usable.

    Words are NFC-normalised (``normalize``) so that the same word typed two ways gets the same sub-words. The
    record gets ``repaired`` (how many ``I-`` tags became ``B-``).
    """
    words = [unicodedata.normalize("NFC", w).strip() if normalize else w.strip() for w in tokens]
    labels = [t.strip() for t in tags]
    record = {"tokens": [w.lower() for w in words] if lowercase else words, "tags": labels, "repaired": 0}
    if not words:
        return record, "empty_text", "the sentence has no words"
    empty = next((i for i, w in enumerate(words, start=1) if not w), None)
    if empty is not None:
        return record, "malformed_row", f"word {empty} is empty"
    if len(words) != len(labels):
        return record, "length_mismatch", f"{len(words)} words but {len(labels)} tags; give one tag per word"
    bad = next(((i, t) for i, t in enumerate(labels, start=1) if not _BIO.match(t)), None)
    if bad is not None:
        return record, "invalid_bio", f"tag '{bad[1]}' at word {bad[0]} is not O, B-TYPE or I-TYPE (BIO tagging)"
    record["tags"], record["repaired"] = repair_bio(labels)
    return record, "", ""


def expand_labels(labels: list[str]) -> list[str]:
    """``data.labels`` as a sorted tag set: entity types (``PLACE``) become ``B-PLACE``/``I-PLACE``; O is added."""
    tags = {"O"}
    for label in (x.strip() for x in labels if x.strip()):
        tags |= {label} if _BIO.match(label) else {f"B-{label}", f"I-{label}"}
    return sorted(tags)


def entity_types(labels: list[str]) -> list[str]:
    return sorted({label[2:] for label in labels if label != "O"})


def entity_counts(tag_lists: Iterable[list[str]]) -> dict[str, int]:
    """Entities per type (B- tags after repair)."""
    counts = Counter(tag[2:] for tags in tag_lists for tag in tags if tag.startswith("B-"))
    return dict(sorted(counts.items()))


# ------------------------------------------------------------------------------------------- one file


@dataclass
class _Part:
    """One file on its way through validation, with the sentence count after each stage."""

    split: str
    path: str
    records: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    stages: dict[str, int] = field(default_factory=dict)
    repaired: int = 0

    def drop(self, keep: Callable[[dict[str, Any]], tuple[str, str, str | None]]) -> None:
        """Keep records where ``keep`` returns reason ""; reject the others with (reason, detail, label)."""
        kept = []
        for record in self.records:
            reason, detail, label = keep(record)
            if reason:
                self.rejects.append(reject(self.split, self.path, record["row"], reason, detail,
                                           " ".join(record["tokens"]), label))
            else:
                kept.append(record)
        self.records = kept

    def mark(self, stage: str) -> None:
        self.stages[stage] = len(self.records)


def _read_part(split: str, path: str | Path, cfg: DataConfig) -> _Part:
    table = read_token_file(path, fmt=cfg.format, tokens_column=cfg.tokens_column, tags_column=cfg.tags_column,
                            split=split, max_rows=cfg.max_rows, max_bytes=cfg.max_file_bytes)
    source = str(path)
    rejects = [reject(split, source, r["row"], r["reason"], r["detail"], r["text"], r["label"]) for r in table.rejects]
    part = _Part(split, source, [], rejects)
    part.stages["read"] = table.rows_read
    for raw in table.records:
        record, reason, detail = check_sentence(raw["tokens"], raw["tags"], cfg.clean.lowercase,
                                                cfg.clean.normalize_unicode)
        if reason:
            part.rejects.append(reject(split, source, raw["row"], reason, detail, " ".join(raw["tokens"]), None))
            continue
        part.repaired += record["repaired"] > 0
        part.records.append({"row": raw["row"], "tokens": record["tokens"], "tags": record["tags"]})
    return part


def _drop_unknown(part: _Part, labels: set[str], labels_from: str) -> None:
    def keep(record: dict[str, Any]) -> tuple[str, str, str | None]:
        unknown = next((t for t in record["tags"] if t not in labels), None)
        if unknown is None:
            return "", "", None
        return "unknown_label", f"tag '{unknown}' is not in {labels_from}", unknown

    part.drop(keep)


def _drop_duplicates(part: _Part) -> None:
    """The same word sequence twice: the copy goes (``conflicting_label`` when its tags differ)."""
    first: dict[tuple[str, ...], tuple[int, list[str]]] = {}

    def keep(record: dict[str, Any]) -> tuple[str, str, str | None]:
        key = tuple(record["tokens"])
        if key not in first:
            first[key] = (record["row"], record["tags"])
            return "", "", None
        row, tags = first[key]
        if tags != record["tags"]:
            return "conflicting_label", f"same words as row {row} with different tags", None
        return "duplicate", f"same words and tags as row {row}", None

    part.drop(keep)


def _drop_leakage(part: _Part, others: list[_Part]) -> None:
    seen = {tuple(r["tokens"]): o.split for o in others for r in o.records}

    def keep(record: dict[str, Any]) -> tuple[str, str, str | None]:
        where = seen.get(tuple(record["tokens"]))
        return ("leakage", f"the same sentence is in {where}", None) if where else ("", "", None)

    part.drop(keep)


def _require_rows(part: _Part) -> None:
    if part.records:
        return
    counts = Counter(r["reason"] for r in part.rejects)
    summary = ", ".join(f"{n} {reason}" for reason, n in counts.most_common())
    first = part.rejects[0] if part.rejects else None
    example = f"; first: row {first['row']} {first['reason']} ({first['detail']})" if first else ""
    raise DataError(f"{part.path}: no usable sentences ({len(part.rejects)} rejected: {summary}){example}")


def _frame(records: list[dict[str, Any]], source: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tokens": pd.Series([r["tokens"] for r in records], dtype=object),
            "tags": pd.Series([r["tags"] for r in records], dtype=object),
            "text": pd.Series([" ".join(r["tokens"]) for r in records], dtype=object),
            "source": source,
            "row": pd.Series([r["row"] for r in records], dtype="int64"),
        },
        columns=FRAME_COLUMNS,
    )


# ------------------------------------------------------------------------------------------- public API


def prepare_token_data(cfg: DataConfig, count_tokens: Callable[[list[str]], list[int]] | None = None) -> PreparedData:
    """Read, validate, de-duplicate, de-leak and split tagged sentences; ``labels`` is the sorted tag set."""
    if not cfg.train:
        raise DataError("data.train is not set; give the training file in the recipe or with --set data.train=PATH")
    given = expand_labels(cfg.labels) if cfg.labels else None
    train = _read_part("train", cfg.train, cfg)
    held = {name: _read_part(name, getattr(cfg, name), cfg) for name in ("validation", "test") if getattr(cfg, name)}
    parts = [train, *held.values()]
    for part in parts:
        part.mark("cleaned")
    if given is not None:
        _drop_unknown(train, set(given), "data.labels")
    _require_rows(train)
    for part in parts:
        if cfg.clean.drop_duplicates:
            _drop_duplicates(part)
        part.mark("deduplicated")
    if cfg.clean.remove_leakage:
        if "validation" in held and "test" in held:
            _drop_leakage(held["validation"], [held["test"]])
        _drop_leakage(train, list(held.values()))
    for part in parts:
        part.mark("leakage removed")
    labels = given or sorted({"O"} | {t for r in train.records for t in r["tags"]})
    for part in held.values():
        _drop_unknown(part, set(labels), "data.labels" if given else "the training tags")
    for part in parts:
        part.mark("final")
        _require_rows(part)
    if not any(t != "O" for r in train.records for t in r["tags"]):
        raise DataError(f"{train.path}: the training data holds no entities (every tag is O); nothing to learn")
    warnings: list[str] = []
    frame = _frame(train.records, train.path)
    rest, carved_val, carved_test = carve_splits(
        frame,
        validation_share=0.0 if "validation" in held else cfg.split.validation,
        test_share=0.0 if "test" in held else cfg.split.test,
        seed=cfg.seed, stratify=False, source=train.path, warnings=warnings,
    )
    carved = {"validation": carved_val, "test": carved_test}
    frames = {"train": rest.reset_index(drop=True)} | {
        name: _frame(held[name].records, held[name].path) if name in held else carved[name].reset_index(drop=True)
        for name in ("validation", "test")
    }
    if len(frames["test"]) == 0:
        raise DataError(f"{cfg.train}: no test sentences (data.test is not set and data.split.test is 0); give a test "
                        "file or a test share so before/after can be compared")
    order = {name: i for i, name in enumerate(SPLITS)}
    rejects = sorted((r for p in parts for r in p.rejects), key=lambda r: (order[r["split"]], r["source"], r["row"]))
    report = token_report(cfg, parts, frames, rejects, labels, count_tokens, warnings)
    return PreparedData(frames["train"], frames["validation"], frames["test"], labels, rejects, report)


def token_report(
    cfg: DataConfig, parts: list[_Part], frames: dict[str, pd.DataFrame], rejects: list[dict[str, Any]],
    labels: list[str], count_tokens: Callable[[list[str]], list[int]] | None, warnings: list[str],
) -> dict[str, Any]:
    """The data report, with the classification report's keys; "labels" are entity types, counted as entities."""
    rejected = Counter(r["split"] for r in rejects)
    reasons = Counter(r["reason"] for r in rejects)
    distribution = {name: entity_counts(frames[name]["tags"]) for name in SPLITS}
    types = entity_types(labels)
    repaired = sum(p.repaired for p in parts)
    notes = list(warnings)
    if repaired:
        notes.append(f"{repaired} sentences had an I- tag opening an entity; it was read as B- (BIO repaired)")
    notes += [f"entity type '{t}' has only {distribution['train'].get(t, 0)} training entities"
              for t in types if distribution["train"].get(t, 0) < TINY_ENTITY]
    texts = {name: frames[name]["text"].tolist() for name in SPLITS}
    everything = [t for name in SPLITS for t in texts[name]]
    counts = list(count_tokens(everything)) if count_tokens else [len(t.split()) for t in everything]
    length, start = {}, 0
    for name in SPLITS:
        length[name] = length_stats([int(c) for c in counts[start:start + len(texts[name])]])
        start += len(texts[name])
    return {
        "sources": {"train": cfg.train, "validation": cfg.validation, "test": cfg.test},
        "split_from_train": {name: getattr(cfg, name) is None for name in ("validation", "test")},
        "rows_read": {name: next((p.stages["read"] for p in parts if p.split == name), 0) for name in SPLITS},
        "rows_kept": {name: len(frames[name]) for name in SPLITS},
        "rows_rejected": {name: int(rejected.get(name, 0)) for name in SPLITS},
        "removed": {reason: int(reasons.get(reason, 0)) for reason in REASONS},
        "stages": [{"stage": s, "rows": sum(p.stages.get(s, 0) for p in parts)} for s in STAGES],
        "labels": types,
        "tags": list(labels),
        "label_distribution": distribution,
        "words": {name: int(sum(len(t) for t in frames[name]["tokens"])) for name in SPLITS},
        "repaired_bio": repaired,
        "length_unit": "tokens" if count_tokens else "words",
        "length": length,
        "warnings": notes,
    }


def load_token_file(
    path: str | Path, labels: list[str], *, tokens_column: str = "tokens", tags_column: str = "tags",
    fmt: str = "auto", split: str = "eval",
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One tagged file on its own (``tailor eval --data``), checked against the model's tags."""
    cfg = DataConfig(train=str(path), tokens_column=tokens_column, tags_column=tags_column, format=fmt)  # type: ignore[arg-type]
    part = _read_part(split, path, cfg)
    _drop_unknown(part, set(labels), "the model's tags")
    return _frame(part.records, part.path), sorted(part.rejects, key=lambda r: r["row"])
