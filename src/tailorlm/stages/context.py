"""What a run's stages share: one ``RunContext`` that each stage reads from and adds to, and the ``Stage`` record.

A stage is a named function of the context. It reads what earlier stages left on the context (the prepared data,
the encoded splits, the model, ...) and returns only its own sections of ``metrics.json`` (``{"tuned": ...}``);
the runner (``stages/runner.py``) merges those, times the stage and records it. Whether a stage runs is its
``when`` predicate, asked of the context before anything runs, so ``tailor run --dry-run`` can show the plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console

from tailorlm.recipe import Recipe
from tailorlm.rundir import RunDir

if TYPE_CHECKING:
    from tailorlm.models.registry import ResolvedModel
    from tailorlm.tasks import TaskSpec
    from tailorlm.tasks.base import EncodedSplits, EvalSettings, Task
    from tailorlm.train.auto import Choice
    from tailorlm.train.trainer import TrainOutcome

#: a k-fold fold or a data-curve subset: replaces the prepared splits before anything is encoded
Reshape = Callable[[Any], Any]


@dataclass
class Fitted:
    """One trained model with what the run reports about it; a kept self-training student replaces it whole."""

    model: Any
    outcome: TrainOutcome
    calibration: dict[str, Any]
    evaluation: dict[str, Any]
    meta: dict[str, Any]


@dataclass
class Kept:
    """The model saved instead of the fine-tune (training.keep_best_of), with its tailor_model.json metadata."""

    name: str
    model: Any
    meta: dict[str, Any]


@dataclass
class RunContext:
    """Everything one run's stages share. The first group is given; the rest is filled in by the stages, in order."""

    recipe: Recipe
    console: Console
    run_dir: RunDir
    extra_callbacks: list[Any] = field(default_factory=list)  # join the Trainer's (tune's pruning)
    reshape: Reshape | None = None
    main_process: bool = True  # data parallel: only rank 0 evaluates and writes (train/distributed.py)
    # prepare
    task: Task | None = None
    resolved: ResolvedModel | None = None  # the model as named (baselines use it, never the adapted body)
    tokenizer: Any = None
    data: Any = None
    unlabelled: Any = None  # adapt.self_train: the pool read before any training, so a bad file fails early
    target: Any = None  # adapt.target_unlabeled: the target domain's texts, leak-free (adapt/target.py)
    # encode, weigh
    encoded: EncodedSplits | None = None
    mitigation: dict[str, Any] | None = None
    # model
    body: ResolvedModel | None = None  # what is fine-tuned: ``resolved`` or its domain-adapted copy
    model: Any = None
    chosen: dict[str, Choice] = field(default_factory=dict)  # training.* keys resolved from ``auto``
    baselines: dict[str, Any] = field(default_factory=dict)
    probe_head: Any = None  # the linear probe as a servable head, when training.keep_best_of may keep it
    parameter_counts: tuple[int, int] = (0, 0)  # (trainable, total) of the model as trained
    #: extra loss terms a stage registers (a domain-adversarial loss): train/objective.py adds them to the task loss
    loss_terms: list[Any] = field(default_factory=list)
    # train, evaluate
    outcome: TrainOutcome | None = None
    settings: EvalSettings | None = None
    calibration: dict[str, Any] = field(default_factory=dict)  # {"meta": saved with the model, "report": ...}
    fitted: Fitted | None = None
    kept: Kept | None = None  # training.keep_best_of chose another candidate than the fine-tune (stages/keep.py)
    predictions: list[dict[str, Any]] | None = None
    # the runner's
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    plan: list[dict[str, Any]] = field(default_factory=list)

    @property
    def spec(self) -> TaskSpec:
        """The task's facts and capabilities (tasks/<name>/spec.py): what stage predicates ask, never its name."""
        from tailorlm.tasks import get_spec

        return get_spec(self.recipe.task)

    def need(self, name: str) -> Any:
        """An earlier stage's result; a stage list in the wrong order fails here, naming what is missing."""
        value = getattr(self, name)
        if value is None:
            raise RuntimeError(f"stage order: '{name}' is not set yet; the stage that makes it must run earlier")
        return value


def always(ctx: RunContext) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    """One step of a run. ``writes``: the metrics.json sections it may return (the runner refuses others)."""

    name: str
    fn: Callable[[RunContext], dict[str, Any] | None]
    when: Callable[[RunContext], bool] = always
    runs_when: str = "always"  # ``when`` in words, for the plan
    writes: tuple[str, ...] = ()
    main_only: bool = False  # data parallel: only the main process runs it
