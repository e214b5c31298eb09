"""The recipe's keys as data: every dotted key with its default, description and allowed values (``tailor keys``),
and the did-you-mean that names the key a typo meant, over full dotted keys (``training.lr`` ->
``training.learning_rate``, not ``training``).

It reads any pydantic model given to it and imports nothing of tailorlm's, so ``recipe.py`` can use it for its
error messages and the CLI for its table without a cycle, and without importing torch.
"""

from __future__ import annotations

import difflib
import enum
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

#: Spellings other libraries (transformers' TrainingArguments, common scripts) use for a recipe key's last part.
ABBREVIATIONS: dict[str, str] = {
    "lr": "learning_rate", "learningrate": "learning_rate", "rate": "learning_rate",
    "bs": "batch_size", "batch": "batch_size", "per_device_train_batch_size": "batch_size",
    "train_batch_size": "batch_size", "per_device_eval_batch_size": "eval_batch_size",
    "epoch": "epochs", "num_epochs": "epochs", "num_train_epochs": "epochs", "n_epochs": "epochs",
    "max_len": "max_length", "max_seq_length": "max_length", "seq_len": "max_length", "max_seq_len": "max_length",
    "wd": "weight_decay", "warmup_ratio": "warmup", "warmup_steps": "warmup",
    "gradient_accumulation_steps": "gradient_accumulation", "grad_accum": "gradient_accumulation",
    "fp16": "precision", "bf16": "precision", "dtype": "precision",
    "scheduler": "lr_scheduler", "lr_scheduler_type": "lr_scheduler", "patience": "early_stopping_patience",
    "model_name": "name", "model_name_or_path": "name", "path": "name", "checkpoint": "name",
    "rank": "r", "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "targets": "target_modules",
    "text": "text_column", "label": "label_column", "text_col": "text_column", "label_col": "label_column",
    "train_file": "train", "validation_file": "validation", "test_file": "test", "eval": "validation",
    "output": "output_dir", "out": "output_dir", "output_path": "output_dir",
}


@dataclass(frozen=True)
class KeyInfo:
    """One recipe key as ``tailor keys`` shows it."""

    key: str
    default: Any  # JSON-ready
    description: str
    allowed: tuple[str, ...]  # the words a Literal/enum/bool accepts; () for free values
    kind: str  # a short type name: number, integer, text, list, mapping, yes/no, ...

    @property
    def accepts(self) -> str:
        """What the key takes, in a few words: ``number | auto``, ``grid | random | bayes``, ``true | false``."""
        kinds = [] if self.kind in ("choice", "yes/no") else [self.kind]
        return " | ".join([*kinds, *self.allowed])

    def matches(self, word: str) -> bool:
        """``--search WORD``: in the key, its description or its allowed values (case-insensitive)."""
        word = word.lower()
        return any(word in text.lower() for text in (self.key, self.description, *self.allowed))


def _section(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _members(annotation: Any) -> list[Any]:
    """The branches of a union (``int | Literal['auto']``, ``Optional[X]``), or the annotation itself."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    if origin is typing.Annotated:  # PositiveFloat and friends: the base type
        return _members(typing.get_args(annotation)[0])
    return [annotation]


def allowed_values(annotation: Any) -> tuple[str, ...]:
    """The words a key accepts: Literal values, enum values, true/false; () when the value is free."""
    words: list[str] = []
    for member in _members(annotation):
        if typing.get_origin(member) is Literal:
            words += [json.dumps(v) if not isinstance(v, str) else v for v in typing.get_args(member)]
        elif isinstance(member, type) and issubclass(member, enum.Enum):
            words += [str(m.value) for m in member]
        elif member is bool:
            words += ["true", "false"]
        elif member is type(None):
            words.append("null")
    return tuple(dict.fromkeys(words))


_KINDS = {bool: "yes/no", int: "integer", float: "number", str: "text"}


def kind_of(annotation: Any) -> str:
    """A short name of what a key takes, e.g. ``number | auto``, ``integer | null``, ``mapping``."""
    names: list[str] = []
    for member in _members(annotation):
        origin = typing.get_origin(member) or member
        if origin is Literal or origin is type(None):
            continue
        base = next((t for t in _KINDS if isinstance(origin, type) and issubclass(origin, t)), None)
        if base is not None:
            names.append(_KINDS[base])
        elif origin in (list, tuple, set):
            names.append("list")
        elif origin is dict:
            names.append("mapping")
        else:
            names.append(getattr(origin, "__name__", str(origin)))
    if allowed_values(annotation) and not names:
        return "choice"
    return " | ".join(dict.fromkeys(names)) or "any"


def _default(field: Any) -> Any:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()
    else:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


def key_infos(model: type[BaseModel], prefix: str = "") -> list[KeyInfo]:
    """Every key that holds a value (sections are walked, not listed), in schema order."""
    infos: list[KeyInfo] = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        section = _section(field.annotation)
        if section is not None:
            infos.extend(key_infos(section, dotted + "."))
            continue
        description = " ".join((field.description or "").split())
        infos.append(KeyInfo(dotted, _default(field), description, allowed_values(field.annotation),
                             kind_of(field.annotation)))
    return infos


def select(infos: list[KeyInfo], prefix: str | None = None, search: str | None = None) -> list[KeyInfo]:
    """``tailor keys [PREFIX] [--search WORD]``: keys under PREFIX (a section or the start of a key) that mention
    WORD."""
    chosen = infos
    if prefix:
        chosen = [i for i in chosen if i.key.startswith(prefix)]
    if search:
        chosen = [i for i in chosen if i.matches(search)]
    return chosen


# ------------------------------------------------------------------ did you mean


def _initials(name: str) -> str:
    return "".join(part[0] for part in name.split("_") if part)


def _leaf_match(leaf: str, leaves: list[str]) -> str | None:
    """The leaf a mistyped one meant: a known other spelling, the initials (lr), a prefix (epoch), then difflib."""
    leaf = leaf.lower()
    if ABBREVIATIONS.get(leaf) in leaves:
        return ABBREVIATIONS[leaf]
    if len(leaf) >= 2:
        by_initials = [c for c in leaves if "_" in c and _initials(c) == leaf]
        if len(by_initials) == 1:
            return by_initials[0]
    if len(leaf) >= 3:
        by_prefix = [c for c in leaves if c.startswith(leaf) or leaf.startswith(c)]
        if by_prefix:
            return min(by_prefix, key=lambda c: abs(len(c) - len(leaf)))
    close = difflib.get_close_matches(leaf, leaves, n=1, cutoff=0.6)
    return close[0] if close else None


def suggest_key(key: str, keys: list[str]) -> str | None:
    """The valid dotted key a mistyped one most likely meant, or None.

    Inside a valid section the key's last part is matched against that section's keys first (``training.lr`` ->
    ``training.learning_rate``); then the whole dotted key (``trainng.epochs``); then the last part against every
    key's last part (``epochs`` at the top -> ``training.epochs``)."""
    parts = key.split(".")
    parent, leaf = ".".join(parts[:-1]), parts[-1]
    valid = set(keys)
    if parent and parent in valid:
        children = [k[len(parent) + 1:] for k in keys if k.startswith(parent + ".") and "." not in k[len(parent) + 1:]]
        found = _leaf_match(leaf, children)
        if found:
            return f"{parent}.{found}"
    whole = difflib.get_close_matches(key, [k for k in keys if k.count(".") == key.count(".")], n=1, cutoff=0.75)
    if whole:
        return whole[0]
    by_leaf: dict[str, str] = {}
    for k in sorted(keys, key=lambda k: k.count(".")):  # the shallowest key with that last part
        by_leaf.setdefault(k.rsplit(".", 1)[-1], k)
    found = _leaf_match(leaf, list(by_leaf))
    return by_leaf[found] if found else None
