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

The steps are the shared pipeline's (data/pipeline.py); :class:`TokenRows` is what tagged sentences add to it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from tailorlm.data.clean import reject
from tailorlm.data.load import DEFAULT_MAX_FILE_BYTES, Keys, check_columns, decode, jsonl_lines, one_line, read_bytes
from tailorlm.data.pipeline import SPLITS, FilePart, Files, LeakRule, RowSpec, TokenCounter, records_frame
from tailorlm.errors import DataError
from tailorlm.recipe import DataConfig

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
#: the data report's keys, in order
REPORT_KEYS = ("sources", "split_from_train", "rows_read", "rows_kept", "rows_rejected", "removed", "stages",
               "labels", "tags", "label_distribution", "words", "repaired_bio", "length_unit", "length", "warnings")
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
        lines = jsonl_lines(text, max_rows)
        objects = [(line.number, line.value) for line in lines if line.error is None]
        rejects = [_bad(line.number, "malformed_row", line.error, line.text) for line in lines if line.error]
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


def read_token_part(split: str, path: str | Path, cfg: DataConfig) -> FilePart:
    """One tagged file as validated sentences (:data:`FRAME_COLUMNS`); ``repaired`` counts BIO repairs."""
    table = read_token_file(path, fmt=cfg.format, tokens_column=cfg.tokens_column, tags_column=cfg.tags_column,
                            split=split, max_rows=cfg.max_rows, max_bytes=cfg.max_file_bytes)
    source = str(path)
    rejects = [reject(split, source, r["row"], r["reason"], r["detail"], r["text"], r["label"]) for r in table.rejects]
    records: list[dict[str, Any]] = []
    repaired = 0
    for raw in table.records:
        record, reason, detail = check_sentence(raw["tokens"], raw["tags"], cfg.clean.lowercase,
                                                cfg.clean.normalize_unicode)
        if reason:
            rejects.append(reject(split, source, raw["row"], reason, detail, " ".join(raw["tokens"]), None))
            continue
        repaired += record["repaired"] > 0
        records.append({"tokens": record["tokens"], "tags": record["tags"], "text": " ".join(record["tokens"]),
                        "row": raw["row"]})
    return FilePart.of(split, source, _frame(records, source), rejects, table.rows_read, repaired=repaired)


def _frame(records: list[dict[str, Any]], source: str) -> pd.DataFrame:
    frame = records_frame(records, ["tokens", "tags", "text", "row"],
                          {"tokens": object, "tags": object, "text": object, "row": "int64"})
    frame.insert(FRAME_COLUMNS.index("source"), "source", source)
    return frame


Judge = Callable[[list[str], list[str], int], tuple[str, str, str | None]]


def _drop_where(part: FilePart, judge: Judge) -> None:
    """Keep sentences where ``judge(tokens, tags, row)`` returns reason ""; reject the others with (reason,
    detail, label), in file order."""
    frame = part.frame
    keep: list[bool] = []
    for tokens, tags, text, row in zip(frame["tokens"], frame["tags"], frame["text"], frame["row"], strict=True):
        reason, detail, label = judge(tokens, tags, int(row))
        keep.append(not reason)
        if reason:
            part.rejects.append(reject(part.split, part.path, row, reason, detail, text, label))
    part.frame = frame[pd.Series(keep, index=frame.index, dtype=bool)]


def _drop_unknown(part: FilePart, labels: set[str], labels_from: str) -> None:
    def judge(tokens: list[str], tags: list[str], row: int) -> tuple[str, str, str | None]:
        unknown = next((t for t in tags if t not in labels), None)
        if unknown is None:
            return "", "", None
        return "unknown_label", f"tag '{unknown}' is not in {labels_from}", unknown

    _drop_where(part, judge)


def _drop_duplicates(part: FilePart) -> None:
    """The same word sequence twice: the copy goes (``conflicting_label`` when its tags differ)."""
    first: dict[tuple[str, ...], tuple[int, list[str]]] = {}

    def judge(tokens: list[str], tags: list[str], row: int) -> tuple[str, str, str | None]:
        key = tuple(tokens)
        if key not in first:
            first[key] = (row, tags)
            return "", "", None
        first_row, first_tags = first[key]
        if first_tags != tags:
            return "conflicting_label", f"same words as row {first_row} with different tags", None
        return "duplicate", f"same words and tags as row {first_row}", None

    _drop_where(part, judge)


def _public(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[FRAME_COLUMNS].reset_index(drop=True)


# ------------------------------------------------------------------------------------------- row spec


@dataclass(frozen=True)
class TokenRows(RowSpec):
    """Tagged sentences (module docstring): ``labels`` is the sorted tag set, given (entity types expand to
    B-/I-) or read from train; the same sentence in two files is leakage whatever its tags."""

    unit: ClassVar[str] = "sentences"
    no_rows: ClassVar[str] = "{path}: no usable {unit} ({count} rejected: {reasons}){first}"
    reasons: ClassVar[tuple[str, ...]] = REASONS
    report_keys: ClassVar[tuple[str, ...]] = REPORT_KEYS
    leak_rules: ClassVar[tuple[LeakRule, ...]] = (
        LeakRule("leakage", lambda frame: [tuple(tokens) for tokens in frame["tokens"]],
                 lambda split, row: f"the same sentence is in {split}", first_wins=False),
    )

    def given_labels(self, cfg: DataConfig) -> list[str] | None:
        return expand_labels(cfg.labels) if cfg.labels else None

    def read(self, split: str, path: str, cfg: DataConfig) -> FilePart:
        return read_token_part(split, path, cfg)

    def dedupe(self, part: FilePart, files: Files) -> None:
        """Tags outside data.labels leave train first (the report counts them in this step), then duplicates."""
        if part is files.train and files.given is not None:
            _drop_unknown(part, set(files.given), "data.labels")
        if files.cfg.clean.drop_duplicates:
            _drop_duplicates(part)

    def reject_rows(self, split: str, rows: pd.DataFrame, reason: str, details: list[str]) -> list[dict[str, Any]]:
        return [reject(split, source, row, reason, detail, text, None)
                for source, row, text, detail in zip(rows["source"], rows["row"], rows["text"], details, strict=True)]

    def final_labels(self, files: Files) -> list[str]:
        """The tag set; a held-out sentence with a tag outside it leaves."""
        given = files.given
        labels = given or sorted({"O"} | {t for tags in files.train.frame["tags"] for t in tags})
        for part in files.held_out.values():
            _drop_unknown(part, set(labels), "data.labels" if given else "the training tags")
        return labels

    def check_train(self, train: FilePart) -> None:
        if not any(t != "O" for tags in train.frame["tags"] for t in tags):
            raise DataError(f"{train.path}: the training data holds no entities (every tag is O); nothing to learn")

    def public(self, frame: pd.DataFrame) -> pd.DataFrame:
        return _public(frame)

    def warnings_after_split(self, files: Files, frames: dict[str, pd.DataFrame], labels: list[str]) -> list[str]:
        repaired = sum(p.facts["repaired"] for p in files.parts)
        train = entity_counts(frames["train"]["tags"])
        notes = [f"{repaired} sentences had an I- tag opening an entity; it was read as B- (BIO repaired)"] \
            if repaired else []
        return notes + [f"entity type '{t}' has only {train.get(t, 0)} training entities"
                        for t in entity_types(labels) if train.get(t, 0) < TINY_ENTITY]

    def report_extras(self, files: Files, frames: dict[str, pd.DataFrame], rejects: list[dict[str, Any]],
                      labels: list[str], count_tokens: TokenCounter | None) -> dict[str, Any]:
        """"labels" are entity types, counted as entities; "tags" the tag set."""
        cfg = files.cfg
        return {
            "split_from_train": {name: getattr(cfg, name) is None for name in ("validation", "test")},
            "labels": entity_types(labels),
            "tags": list(labels),
            "label_distribution": {name: entity_counts(frames[name]["tags"]) for name in SPLITS},
            "words": {name: int(sum(len(t) for t in frames[name]["tokens"])) for name in SPLITS},
            "repaired_bio": sum(p.facts["repaired"] for p in files.parts),
        }


def load_token_file(
    path: str | Path, labels: list[str], *, tokens_column: str = "tokens", tags_column: str = "tags",
    fmt: str = "auto", split: str = "eval",
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One tagged file on its own (``tailor eval --data``), checked against the model's tags."""
    cfg = DataConfig(train=str(path), tokens_column=tokens_column, tags_column=tags_column, format=fmt)  # type: ignore[arg-type]
    part = read_token_part(split, path, cfg)
    _drop_unknown(part, set(labels), "the model's tags")
    return _public(part.frame), sorted(part.rejects, key=lambda r: r["row"])
