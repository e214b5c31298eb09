"""Reading generation data: plain text, prompt/response pairs, or chat ``messages``, cleaned and split.

One file may be any of three shapes, told apart by its columns (first match wins):

* ``prompt_column`` + ``response_column``: instruction tuning, the model learns to answer the prompt;
* ``messages_column``: chat turns ``[{role, content}, ...]`` (roles system/user/assistant) ending with the
  assistant's answer, which is what the model learns; earlier turns are its context;
* ``text_column``, or any ``.txt`` file (one text per line): continued pre-training on domain text.

The readers of :mod:`tailorlm.data.load` do the parsing (so every format, encoding and malformed-row rule is the
same as for classification), and the steps are the shared pipeline's (data/pipeline.py); this module's row spec,
:class:`GenerationRows`, adds what generation needs: message validation, cleaning that keeps newlines (answers
may be lists or code), duplicates and leakage keyed on the whole example (context, prompt and response), and its
keys of the data report.

Leakage is the whole example, not the prompt: instruction data often shares one prompt ("Summarise the text
below", "Write a positive review of a kitchen product.") across many rows whose responses differ, and dropping
every training row whose prompt a test row shares would drop them all. How many held-out prompts training also
has is *reported* instead (``prompt_overlap`` in the data report, a line in the run report), so a reader knows
the test measures answers to familiar prompts.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from tailorlm.data.clean import clean_text, drop_duplicates, reject, split_off
from tailorlm.data.load import RawTable, detect_format, keys_for, read_table
from tailorlm.data.pipeline import FilePart, Files, LeakRule, RowSpec, TokenCounter, records_frame
from tailorlm.errors import DataError
from tailorlm.recipe import CleanConfig, DataConfig

ROLES = ("system", "user", "assistant")
#: the reasons a generation row can be rejected (data report ``removed`` keys, in this order)
REASONS = (
    "malformed_row",
    "malformed_messages",
    "empty_target",
    "too_long",
    "duplicate",
    "near_duplicate",
    "leakage",
)
COLUMNS = ["prompt", "response", "context", "kind", "text", "source", "row"]
#: the data report's keys, in order
REPORT_KEYS = ("sources", "split_from_train", "formats", "rows_read", "rows_kept", "rows_rejected", "removed",
               "stages", "length_unit", "length", "prompt_overlap", "warnings")


# ------------------------------------------------------------------------------------------- cleaning


def clean_keep_lines(text: str | None, cfg: CleanConfig) -> str:
    """Invisible characters out and NFKC (per cfg), but newlines kept: an answer's layout is part of it."""
    if text is None:
        return ""
    lines = [clean_text(line, cfg.model_copy(update={"lowercase": False})) for line in text.split("\n")]
    joined = "\n".join(lines).strip()
    return joined.lower() if cfg.lowercase else joined


def parse_messages(raw: str | None) -> tuple[list[dict[str, str]] | None, str]:
    """Chat turns from a cell (JSON text); (None, why) when they are not a usable conversation."""
    if raw is None or not raw.strip():
        return None, "no messages"
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None, "messages are not a JSON list of {role, content}"
    if not isinstance(value, list) or not value:
        return None, "messages must be a non-empty list of {role, content}"
    turns: list[dict[str, str]] = []
    for i, turn in enumerate(value, start=1):
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            return None, f"turn {i} is not an object with 'role' and 'content'"
        role, content = turn["role"], turn["content"]
        if role not in ROLES:
            return None, f"turn {i}: unknown role {role!r}; use one of {', '.join(ROLES)}"
        if not isinstance(content, str):
            return None, f"turn {i}: content must be a string"
        turns.append({"role": role, "content": content})
    if turns[-1]["role"] != "assistant":
        return None, "the last turn must be the assistant's answer (what the model learns to say)"
    if not any(t["role"] == "user" for t in turns[:-1]):
        return None, "no user turn before the assistant's answer"
    return turns, ""


_NOT_WORD = re.compile(r"[\W_]+")


def fingerprint(text: str) -> str:
    """Text folded for near-duplicate and leakage checks: case, accents, punctuation and spaces, but not digits.

    Unlike classification's fingerprint, digits stay: "reading 04512" and "reading 11873" are different
    questions with different answers.
    """
    folded = _NOT_WORD.sub("", unicodedata.normalize("NFKD", text.casefold()))
    return "".join(c for c in folded if not unicodedata.combining(c)) or text.casefold()


# ------------------------------------------------------------------------------------------- reading


def _missing_column(exc: DataError, column: str) -> bool:
    return f"no column '{column}'" in str(exc)


def _read_raw(path: str, cfg: DataConfig, split: str) -> tuple[RawTable, str]:
    """Parse the file with the shared readers, trying pairs, then messages, then plain text."""
    common: dict[str, Any] = {"fmt": cfg.format, "split": split, "max_rows": cfg.max_rows,
                              "max_bytes": cfg.max_file_bytes}
    if detect_format(Path(path), cfg.format, keys_for(split)) == "txt":
        return read_table(path, text_column=cfg.text_column, require_label=False, **common), "text"
    tries = [
        ("pair", cfg.prompt_column, cfg.response_column, True),
        ("chat", cfg.messages_column, cfg.response_column, False),
        ("text", cfg.text_column, cfg.response_column, False),
    ]
    last: DataError | None = None
    for kind, text_column, label_column, require in tries:
        try:
            return read_table(path, text_column=text_column, label_column=label_column, require_label=require,
                              **common), kind
        except DataError as exc:
            if not _missing_column(exc, text_column):
                raise
            last = exc
    present = str(last).partition("columns present: ")[2].partition(";")[0] or "none"
    raise DataError(
        f"{path}: no generation columns: expected '{cfg.prompt_column}' + '{cfg.response_column}', "
        f"'{cfg.messages_column}' or '{cfg.text_column}' (columns present: {present}); rename the columns or set "
        "data.prompt_column / data.response_column / data.messages_column / data.text_column"
    )


def _rows(raw: RawTable, kind: str, cfg: CleanConfig) -> tuple[list[dict[str, Any]], list[tuple[int, str, str]]]:
    """Parsed rows as (prompt, response, context) and the messages that could not be used (row, why, raw)."""
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str, str]] = []
    for row, raw_text, raw_label in zip(raw.frame["row"], raw.frame["raw_text"], raw.frame["raw_label"],
                                        strict=True):
        if kind == "pair":
            prompt, response, context = clean_keep_lines(raw_text, cfg), clean_keep_lines(raw_label, cfg), ""
            shown = f"{raw_text or ''} ⟶ {raw_label or ''}"
        elif kind == "text":
            prompt, response, context, shown = "", clean_keep_lines(raw_text, cfg), "", raw_text or ""
        else:
            turns, why = parse_messages(raw_text)
            if turns is None:
                bad.append((int(row), why, raw_text or ""))
                continue
            turns = [{"role": t["role"], "content": clean_keep_lines(t["content"], cfg)} for t in turns]
            prompt = next(t["content"] for t in reversed(turns[:-1]) if t["role"] == "user")
            response, context, shown = turns[-1]["content"], json.dumps(turns[:-1], ensure_ascii=False), raw_text
        rows.append({"prompt": prompt, "response": response, "context": context, "raw_text": shown,
                     "row": int(row)})
    return rows, bad


def read_generation_file(path: str | Path, cfg: DataConfig, split: str) -> FilePart:
    """One file as a working frame (prompt, response, context, kind, text, raw_text, label, source, row); its
    shape ("pair", "chat" or "text") is the part's ``kind`` fact."""
    source = str(path)
    raw, kind = _read_raw(source, cfg, split)
    rows, bad = _rows(raw, kind, cfg.clean)
    rejects = [reject(split, source, r["row"], r["reason"], r["detail"], r["text"], None) for r in raw.rejects]
    rejects += [reject(split, source, row, "malformed_messages", why, text, None) for row, why, text in bad]
    frame = records_frame(rows, ["prompt", "response", "context", "raw_text", "row"], {"row": "int64"})
    frame["kind"] = kind
    frame["source"] = source
    frame["label"] = pd.Series([None] * len(frame), dtype=object)
    # the exact-duplicate key: the whole example (context, prompt and response)
    frame["text"] = frame["context"] + "\x1e" + frame["prompt"] + "\x1f" + frame["response"]
    return FilePart.of(split, source, frame, rejects, raw.rows_read, kind=kind)


# ------------------------------------------------------------------------------------------- stages


def _filter(part: FilePart, cfg: CleanConfig) -> None:
    """Empty prompt or response (``empty_target``), and examples over ``data.clean.max_chars``."""
    frame = part.frame
    what = "text" if part.facts["kind"] == "text" else "prompt or response"
    empty = (frame["response"].str.len() == 0) | ((frame["prompt"].str.len() == 0) & (frame["kind"] != "text"))
    part.apply(split_off(frame, empty, part.split, "empty_target", f"empty {what} after cleaning"))
    if cfg.max_chars is not None:
        sizes = part.frame["prompt"].str.len() + part.frame["response"].str.len()
        part.apply(split_off(
            part.frame, sizes > cfg.max_chars, part.split, "too_long",
            lambda rows: [f"{len(p) + len(r)} characters; data.clean.max_chars is {cfg.max_chars}"
                          for p, r in zip(rows["prompt"], rows["response"], strict=True)],
        ))


def _example_keys(frame: pd.DataFrame) -> list[str]:
    """The whole example (context, prompt and response) folded: the near-duplicate key, and what must not be
    shared with a held-out split. A plain text has no prompt, so its key is the text itself."""
    return [fingerprint(c + p) + "\x1f" + fingerprint(r)
            for c, p, r in zip(frame["context"], frame["prompt"], frame["response"], strict=True)]


def _dedupe(part: FilePart, cfg: CleanConfig) -> None:
    """Exact and near duplicates of whole examples (a prompt may have several different answers)."""
    part.frame = part.frame.copy()
    part.frame["fingerprint"] = _example_keys(part.frame)
    part.apply(drop_duplicates(part.frame, cfg, part.split))


def _prompt_keys(frame: pd.DataFrame) -> list[str]:
    """The prompt with its context, folded; "" for plain text (it has no prompt to share)."""
    return [fingerprint(c + p) if p else ""
            for c, p in zip(frame["context"], frame["prompt"], strict=True)]


def prompt_overlap(frames: dict[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
    """Per held-out split, how many rows have a prompt that training also has (with another response, since
    identical examples were removed as leakage): reported, not dropped (module docstring)."""
    in_train = set(_prompt_keys(frames["train"])) - {""}
    return {name: {"rows": sum(key in in_train for key in _prompt_keys(frames[name])), "of": len(frames[name])}
            for name in ("validation", "test")}


def _public(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns the task sees; ``text`` becomes a readable "prompt + response" for lengths and reports."""
    frame = frame.copy()
    frame["text"] = [p + "\n" + r if p else r for p, r in zip(frame["prompt"], frame["response"], strict=True)]
    return frame[COLUMNS].reset_index(drop=True)


# ------------------------------------------------------------------------------------------- row spec


@dataclass(frozen=True)
class GenerationRows(RowSpec):
    """Generation examples (module docstring): every file must keep rows after its own cleaning; leakage is the
    whole example; no labels, so splits are carved at random."""

    require_each_file: ClassVar[bool] = True
    reasons: ClassVar[tuple[str, ...]] = REASONS
    report_keys: ClassVar[tuple[str, ...]] = REPORT_KEYS
    leak_rules: ClassVar[tuple[LeakRule, ...]] = (
        LeakRule("leakage", lambda frame: frame["fingerprint"],
                 lambda split, row: f"same example as {split} row {row}"),
    )

    def read(self, split: str, path: str, cfg: DataConfig) -> FilePart:
        return read_generation_file(path, cfg, split)

    def clean(self, part: FilePart, files: Files) -> None:
        _filter(part, files.cfg.clean)

    def dedupe(self, part: FilePart, files: Files) -> None:
        _dedupe(part, files.cfg.clean)

    def public(self, frame: pd.DataFrame) -> pd.DataFrame:
        return _public(frame)

    def report_extras(self, files: Files, frames: dict[str, pd.DataFrame], rejects: list[dict[str, Any]],
                      labels: list[str], count_tokens: TokenCounter | None) -> dict[str, Any]:
        return {"formats": {part.split: part.facts["kind"] for part in files.parts},
                "prompt_overlap": prompt_overlap(frames)}


# ------------------------------------------------------------------------------------------- one file


def load_generation_file(path: str | Path, cfg: DataConfig, split: str = "eval",
                         dedupe: bool = True) -> tuple[pd.DataFrame, list]:
    """One file on its own (``tailor eval --data``): cleaned, and with ``dedupe`` de-duplicated like a test split."""
    part = read_generation_file(path, cfg, split)
    _filter(part, cfg.clean)
    if dedupe:
        _dedupe(part, cfg.clean)
    return _public(part.frame), sorted(part.rejects, key=lambda r: r["row"])
