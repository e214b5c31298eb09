"""One data pipeline for every task: read → normalise → reject → clean → dedupe → leak check → split → report.

A task says what is its own in a :class:`RowSpec` (the columns it reads, how one record becomes a row or a reject,
its duplicate and leakage fingerprints, how it splits, what its report adds); :func:`prepare` runs the same steps
in the same order for all of them. The order is fixed, as each step relies on the one before: per-row checks, then
label noise and duplicates inside each file, then leakage between files, then carving validation/test out of train.
Carving last means the held-out rows are already clean and can never be near-copies of training rows.

Every dropped row becomes a reject record (file, row, reason, detail) and every unusable file a one-line
:class:`~tailorlm.errors.DataError`, so that ``rows read = rows kept + rows rejected`` holds for every file.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tailorlm.data.clean import frame_rejects
from tailorlm.data.report import build_report, lengths_by_split
from tailorlm.data.split import carve_splits
from tailorlm.errors import DataError
from tailorlm.recipe import DataConfig

TokenCounter = Callable[[list[str]], list[int]]
SPLITS = ("train", "validation", "test")
HELD_OUT = ("validation", "test")
#: the row count of every file is recorded after each of these steps (the data report's ``stages``)
STAGES = ("read", "cleaned", "deduplicated", "leakage removed", "final")
NO_TRAIN = "data.train is not set; give the training file in the recipe or with --set data.train=PATH"


@dataclass
class PreparedData:
    """What training needs: three cleaned splits, the label set, every dropped row, and the quality report.

    The optional fields are what one task adds and a saved model needs again; ``None`` where the task has none
    (they are part of the tokenised-split cache key, data/token_cache.py, only when set).
    """

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    labels: list[str]  # empty for tasks without a label set (QA, generation, translation)
    rejects: list[dict[str, Any]]
    report: dict[str, Any]
    #: QA: some question of the data has no answer (SQuAD v2), so "no answer" is a prediction
    version_2: bool | None = None
    #: QA: evaluation settings saved with the model (doc_stride, n_best, ...), set by the task
    settings: dict[str, Any] | None = None
    #: translation: languages, prefix and generation settings saved with the model, set by the task
    meta: dict[str, Any] | None = None


@dataclass
class FilePart:
    """One input file on its way through the pipeline, with its row count after each step.

    ``frame`` holds the rows still kept (the row spec's columns, always with ``source`` and ``row``); ``facts``
    what the row spec noted while reading it (a generation file's shape, how many QA answer starts it corrected).
    """

    split: str
    path: str
    frame: pd.DataFrame
    rejects: list[dict[str, Any]]
    stages: dict[str, int] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, split: str, path: str | Path, frame: pd.DataFrame, rejects: list[dict[str, Any]], rows_read: int,
           **facts: Any) -> FilePart:
        """A file as its reader left it: kept rows, rejects, and how many records it held."""
        return cls(split, str(path), frame, rejects, {"read": rows_read}, facts)

    @property
    def rows_read(self) -> int:
        return self.stages["read"]

    def apply(self, result: tuple[pd.DataFrame, list[dict[str, Any]]]) -> None:
        """Keep the rows a cleaning step returns and add the rejects it made."""
        self.frame, dropped = result
        self.rejects.extend(dropped)

    def mark(self, stage: str) -> None:
        self.stages[stage] = len(self.frame)


@dataclass
class Files:
    """The recipe's files in the pipeline: train, then validation and test when given as files."""

    cfg: DataConfig
    train: FilePart
    held_out: dict[str, FilePart]
    #: the label set the recipe gives, as the row spec reads it; None when it is inferred from train
    given: list[str] | None = None

    @property
    def parts(self) -> list[FilePart]:
        return [self.train, *self.held_out.values()]


@dataclass(frozen=True)
class LeakRule:
    """Rows of one file whose ``key`` also occurs in another are dropped as ``reason``: scoring on them would
    flatter the model. ``describe(split, row)`` names the other row; with ``first_wins`` the first file and row
    holding a key are named, else the last."""

    reason: str
    key: Callable[[pd.DataFrame], Iterable[Hashable]]
    describe: Callable[[str, int], str]
    first_wins: bool = True


class RowSpec(ABC):
    """What one task's data is, for :func:`prepare`: its rows, rejects, fingerprints, split and report.

    A subclass overrides :meth:`read` and what differs; the defaults are those of labelled texts.
    """

    #: what a row is, in messages ("rows", "pairs", "sentences", "questions")
    unit: str = "rows"
    #: the error when data.train is not set
    no_train: str = NO_TRAIN
    #: the error for a file left without rows: ``{path}``, ``{unit}``, ``{count}`` rejects, ``{reasons}``, ``{first}``
    no_rows: str = "{path}: no usable {unit} after cleaning ({count} rejected: {reasons}){first}"
    #: every reject reason, in the order the data report lists them
    reasons: tuple[str, ...] = ()
    #: the data report's names for :data:`STAGES`
    stage_names: tuple[str, ...] = STAGES
    #: the data report's keys, in order (the common ones and those :meth:`report_extras` adds)
    report_keys: tuple[str, ...] = ()
    #: how rows leak between files, applied in order
    leak_rules: tuple[LeakRule, ...] = ()
    #: whether validation rows also in test leave validation (train rows in either always leave train)
    leak_between_held_out: bool = True
    #: every file must keep rows after its own cleaning (else only train must, and the others at the end)
    require_each_file: bool = False
    #: validation and test files must keep rows (else only train must)
    require_held_out: bool = True

    # ------------------------------------------------------------------ reading and cleaning
    def given_labels(self, cfg: DataConfig) -> list[str] | None:
        """The recipe's label set as this task reads it (None: inferred from train); checked before any read."""
        return None

    @abstractmethod
    def read(self, split: str, path: str, cfg: DataConfig) -> FilePart:
        """Read one file: every record becomes a normalised row or a reject with its reason."""

    def clean(self, part: FilePart, files: Files) -> None:  # noqa: B027 (optional hook)
        """Per-row checks driven by ``data.clean`` (too short, empty, unknown label, ...)."""

    def dedupe(self, part: FilePart, files: Files) -> None:  # noqa: B027 (optional hook)
        """Duplicates (and label noise) inside one file."""

    def reject_rows(self, split: str, rows: pd.DataFrame, reason: str, details: list[str]) -> list[dict[str, Any]]:
        """The rejects.jsonl records of dropped ``rows`` (default: the ``raw_text`` and ``label`` columns)."""
        return frame_rejects(rows, split, reason, details)

    def final_labels(self, files: Files) -> list[str]:
        """The label set after leakage; held-out rows whose label training lost leave too."""
        return []

    def check_train(self, train: FilePart) -> None:  # noqa: B027 (optional hook)
        """What the final training rows must hold beyond being there (two classes, an entity)."""

    # ------------------------------------------------------------------ splitting
    def carve(self, train: pd.DataFrame, files: Files, warnings: list[str]) -> tuple[pd.DataFrame,
                                                                                   dict[str, pd.DataFrame]]:
        """(rest of train, {validation, test} carved from it); a split given as a file gets nothing carved."""
        cfg = files.cfg
        rest, validation, test = carve_splits(
            train,
            validation_share=0.0 if "validation" in files.held_out else cfg.split.validation,
            test_share=0.0 if "test" in files.held_out else cfg.split.test,
            seed=cfg.seed, stratify=self.stratify(cfg), source=files.train.path, warnings=warnings,
        )
        return rest, {"validation": validation, "test": test}

    def stratify(self, cfg: DataConfig) -> bool:
        """Whether carved splits keep the label proportions (only a task with one label per row can)."""
        return False

    def public(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The columns the task sees, index 0..n-1."""
        return frame.reset_index(drop=True)

    # ------------------------------------------------------------------ reporting
    def warnings_before_split(self, files: Files) -> list[str]:
        return []

    def warnings_after_split(self, files: Files, frames: dict[str, pd.DataFrame], labels: list[str]) -> list[str]:
        return []

    def length_texts(self, frame: pd.DataFrame) -> list[str]:
        """The texts whose lengths the report gives (in tokens or words)."""
        return frame["text"].tolist()

    def report_extras(self, files: Files, frames: dict[str, pd.DataFrame], rejects: list[dict[str, Any]],
                      labels: list[str], count_tokens: TokenCounter | None) -> dict[str, Any]:
        """The report's task-specific keys (label counts, span stats, ...)."""
        return {}

    def result_fields(self, files: Files, frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
        """PreparedData's optional fields this task fills."""
        return {}


# ------------------------------------------------------------------------------------------- steps


def records_frame(records: list[dict[str, Any]], columns: list[str], dtypes: dict[str, Any] | None = None,
                  ) -> pd.DataFrame:
    """A reader's rows (one dict each) as a frame with exactly ``columns``, also when the file kept none;
    ``dtypes`` pins the columns whose type must not depend on the values (lists stay objects, rows ints)."""
    frame = pd.DataFrame(records, columns=columns)
    return frame.astype(dtypes) if dtypes else frame


def reason_summary(rejects: list[dict[str, Any]]) -> str:
    counts = Counter(r["reason"] for r in rejects)
    return ", ".join(f"{n} {reason}" for reason, n in counts.most_common()) or "none"


def require_rows(part: FilePart, spec: RowSpec) -> None:
    """A file that loses every row is an error; the message says why they went and shows the first one."""
    if len(part.frame):
        return
    first = part.rejects[0] if part.rejects else None
    example = f"; first: row {first['row']} {first['reason']} ({first['detail']})" if first else ""
    error = DataError(spec.no_rows.format(path=part.path, unit=spec.unit, count=len(part.rejects),
                                          reasons=reason_summary(part.rejects), first=example))
    error.rejects = part.rejects  # type: ignore[attr-defined]  # for callers that want to write them anyway
    raise error


def reject_order(record: dict[str, Any]) -> tuple[int, str, int]:
    """Rejects in file order (train, validation, test), so rejects.jsonl reads alongside the files."""
    order = {"train": 0, "validation": 1, "test": 2}
    return order.get(record["split"], 3), record["source"], record["row"]


def drop_rows(part: FilePart, spec: RowSpec, mask: pd.Series, reason: str, details: list[str]) -> None:
    """Move the rows where ``mask`` holds into rejects (``details`` one per dropped row, in frame order)."""
    if not bool(mask.any()):
        return
    part.rejects.extend(spec.reject_rows(part.split, part.frame[mask], reason, details))
    part.frame = part.frame[~mask]


def read_files(cfg: DataConfig, spec: RowSpec) -> Files:
    """Train first, then validation and test: a missing file is reported before any row is judged."""
    given = spec.given_labels(cfg)
    train = spec.read("train", str(cfg.train), _train_read_config(cfg))
    eval_cfg = cfg.model_copy(update={"max_rows": cfg.max_eval_rows})  # data.max_rows is for training rows only
    held_out = {name: spec.read(name, getattr(cfg, name), eval_cfg) for name in HELD_OUT if getattr(cfg, name)}
    return Files(cfg, train, held_out, given)


def _carves(cfg: DataConfig) -> bool:
    """Whether a validation or test split is carved from the training file (no file given, a share above 0)."""
    return any(not getattr(cfg, name) and getattr(cfg.split, name) > 0 for name in HELD_OUT)


def _train_read_config(cfg: DataConfig) -> DataConfig:
    """The training file is read whole when splits are carved from it, so ``data.max_rows`` (applied after the
    carve, to the training rows) never changes the test split; otherwise only its first rows are read."""
    return cfg.model_copy(update={"max_rows": None}) if cfg.max_rows and _carves(cfg) else cfg


def clean_file(part: FilePart, files: Files, spec: RowSpec) -> None:
    """Per-row checks, then duplicates; train (or, per the spec, every file) must keep rows after each."""
    must_keep = part is files.train or spec.require_each_file
    spec.clean(part, files)
    part.mark("cleaned")
    if must_keep:
        require_rows(part, spec)
    spec.dedupe(part, files)
    part.mark("deduplicated")
    if must_keep:
        require_rows(part, spec)


def drop_leaked(part: FilePart, others: list[FilePart], rule: LeakRule, spec: RowSpec) -> None:
    """Rows of ``part`` whose key one of ``others`` holds leave ``part``."""
    seen: dict[Hashable, str] = {}
    for other in others:
        for key, row in zip(rule.key(other.frame), other.frame["row"], strict=True):
            if not rule.first_wins or key not in seen:
                seen[key] = rule.describe(other.split, int(row))
    if not seen:
        return
    keys = list(rule.key(part.frame))
    mask = pd.Series([key in seen for key in keys], index=part.frame.index, dtype=bool)
    drop_rows(part, spec, mask, rule.reason, [seen[key] for key, hit in zip(keys, mask, strict=True) if hit])


def remove_leakage(files: Files, spec: RowSpec) -> None:
    """Validation rows also in test leave validation (when the spec says so); train rows in either leave train."""
    held = files.held_out
    if files.cfg.clean.remove_leakage:
        for rule in spec.leak_rules:
            if spec.leak_between_held_out and "validation" in held and "test" in held:
                drop_leaked(held["validation"], [held["test"]], rule, spec)
        for rule in spec.leak_rules:
            drop_leaked(files.train, list(held.values()), rule, spec)
    for part in files.parts:
        part.mark("leakage removed")


def finish_files(files: Files, spec: RowSpec) -> list[str]:
    """The final label set, then the last row counts: every file (or train only) must still hold rows."""
    require_rows(files.train, spec)
    labels = spec.final_labels(files)
    for part in files.parts:
        part.mark("final")
        if part is files.train or spec.require_held_out:
            require_rows(part, spec)
    spec.check_train(files.train)
    return labels


def split_frames(files: Files, spec: RowSpec, warnings: list[str]) -> dict[str, pd.DataFrame]:
    """{train, validation, test}: a split given as a file is used as is; a missing one is carved from train."""
    rest, carved = spec.carve(files.train.frame, files, warnings)
    cfg = files.cfg
    if cfg.max_rows is not None and _carves(cfg):  # the first N training rows, after the carve (file order)
        rest = rest.head(cfg.max_rows)
    if cfg.max_eval_rows is not None:
        carved = {name: frame.head(cfg.max_eval_rows) for name, frame in carved.items()}
    held = files.held_out
    return {"train": spec.public(rest),
            **{name: spec.public(held[name].frame if name in held else carved[name]) for name in HELD_OUT}}


def data_report(files: Files, spec: RowSpec, frames: dict[str, pd.DataFrame], rejects: list[dict[str, Any]],
                labels: list[str], count_tokens: TokenCounter | None, warnings: list[str]) -> dict[str, Any]:
    """The data report: the keys every task shares, the row spec's own, in the row spec's order."""
    parts = files.parts
    cfg = files.cfg
    values = build_report(
        sources={"train": files.train.path, "validation": cfg.validation, "test": cfg.test},
        split_from_train={name: name not in files.held_out for name in HELD_OUT},
        rows_read={name: sum(p.stages["read"] for p in parts if p.split == name) for name in SPLITS},
        frames=frames, rejects=rejects, reasons=spec.reasons,
        stages={label: sum(p.stages.get(stage, 0) for p in parts) for stage, label in zip(STAGES, spec.stage_names,
                                                                                           strict=True)},
        lengths=lengths_by_split({name: spec.length_texts(frames[name]) for name in SPLITS}, count_tokens),
        length_unit="tokens" if count_tokens else "words",
    )
    values |= spec.report_extras(files, frames, rejects, labels, count_tokens)
    values["warnings"] = [*warnings, *spec.warnings_after_split(files, frames, labels)]
    return {key: values[key] for key in spec.report_keys}


# ------------------------------------------------------------------------------------------- entry point


def write_rejects(path: Path, rejects: list[dict[str, Any]]) -> None:
    """rejects.jsonl: one JSON object per line, UTF-8; an empty file when nothing was rejected."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", errors="backslashreplace", newline="\n") as handle:
        for record in rejects:
            handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def prepare(cfg: DataConfig, spec: RowSpec, count_tokens: TokenCounter | None = None) -> PreparedData:
    """Load, clean, de-duplicate, de-leak and split the recipe's data as ``spec`` describes its rows."""
    if not cfg.train:
        raise DataError(spec.no_train)
    files = read_files(cfg, spec)
    for part in files.parts:
        clean_file(part, files, spec)
    remove_leakage(files, spec)
    labels = finish_files(files, spec)
    warnings = spec.warnings_before_split(files)
    frames = split_frames(files, spec, warnings)
    rejects = sorted((r for part in files.parts for r in part.rejects), key=reject_order)
    report = data_report(files, spec, frames, rejects, labels, count_tokens, warnings)
    return PreparedData(frames["train"], frames["validation"], frames["test"], labels, rejects, report,
                        **spec.result_fields(files, frames))


def require_test(data: PreparedData, cfg: DataConfig, unit: str = "rows") -> PreparedData:
    """A run compares before and after on the test split: without one it would prove nothing, so it stops here."""
    if len(data.test) == 0:
        raise DataError(f"{cfg.train}: no test {unit} (data.test is not set and data.split.test is 0); give a test "
                        "file or a test share so before/after can be compared")
    return data
