"""Resuming an interrupted run exactly where it stopped.

A run killed mid-training (power cut, SIGKILL, pre-empted node) leaves ``status.json`` saying ``running``
(or ``failed``/``interrupted``) and full checkpoints in ``checkpoints/``: weights, optimiser, scheduler, RNG
states and ``trainer_state.json``. Trainer's ``resume_from_checkpoint`` restores all of them and skips the
batches already seen, so a resumed run ends with the same numbers as one that never stopped, provided that

- the recipe and the data files are the same (checked here: a different recipe starts afresh or is refused);
- the order of the batches is a function of (seed, epoch) only. Trainer's length-grouped sampler draws its
  permutation from the global RNG at the start of each epoch, which a resume cannot recreate for an epoch that
  had already begun; :class:`EpochSeededLengthSampler` seeds it from ``seed + epoch`` instead.

Trainer writes a checkpoint folder in place, file by file, with ``trainer_state.json`` last; a folder counts as
complete only when that file parses and the weights, optimiser, scheduler and RNG files are all there, so a
kill in the middle of a save costs that checkpoint, never the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from tailorlm.errors import UserError
from tailorlm.recipe import Recipe
from tailorlm.rundir import RunDir, process_alive
from tailorlm.train.objective import WEIGHT_COLUMN, Objective

RESUMABLE_STATUSES = ("running", "failed", "interrupted")
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json")
STATE_FILES = ("optimizer.pt", "scheduler.pt", "rng_state.pth")
#: recipe keys that may differ between the interrupted run and its resumption (tracking changes no number)
IGNORED_KEYS = ("training.resume", "overwrite", "tracking.mlflow", "tracking.uri", "tracking.experiment",
                "tracking.log_model", "tracking.run_name")


# ------------------------------------------------------------------------------------------- checkpoints


def checkpoint_step(folder: Path) -> int:
    """``checkpoint-120`` -> 120; -1 for anything else so it sorts first and is never picked."""
    try:
        return int(folder.name.rsplit("-", 1)[-1])
    except ValueError:
        return -1


def is_complete(folder: Path, *, full: bool = True) -> bool:
    """Weights, (with ``full``) optimiser, scheduler and RNG states, and a trainer_state.json that parses."""
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        return False
    if full and not all((folder / name).is_file() for name in STATE_FILES):
        return False
    try:
        json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(checkpoints: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    if not checkpoints.is_dir():
        return None
    folders = [p for p in checkpoints.glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) >= 0]
    for folder in sorted(folders, key=checkpoint_step, reverse=True):
        if is_complete(folder):
            return folder
    return None


# ------------------------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class ResumePlan:
    """Where training starts: ``checkpoint`` (None: from scratch) and why, for the console."""

    checkpoint: Path | None
    reason: str


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, child in value.items():
        flat.update(_flatten(child, f"{prefix}{key}."))
    return {k.rstrip("."): v for k, v in flat.items()}


#: Which training keys a run resolved from ``auto``, with the values and reasons (train/auto.py).
AUTO_FILE = "auto.json"


def recipe_differences(stored_yaml: str, recipe: Recipe, auto_keys: frozenset[str] = frozenset()) -> list[str]:
    """Dotted keys whose value differs between a stored resolved recipe and ``recipe`` (resume keys ignored).

    ``auto_keys``: keys the stored run resolved from ``auto`` (its ``auto.json``); the stored concrete value matches
    ``auto`` in ``recipe``, since the same recipe on the same data resolves to the same value.
    """
    try:
        stored = _flatten(yaml.safe_load(stored_yaml) or {})
    except yaml.YAMLError:
        return ["(unreadable recipe.resolved.yaml)"]
    current = _flatten(recipe.model_dump(mode="json"))
    keys = sorted(set(stored) | set(current))

    def same(key: str) -> bool:
        return stored.get(key) == current.get(key) or (key in auto_keys and current.get(key) in ("auto", "find"))

    return [k for k in keys if k not in IGNORED_KEYS and not same(k)]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _data_changed(run_dir: RunDir, recipe: Recipe) -> list[str]:
    from tailorlm.provenance import changed_data_files, data_files

    stored = _read_json(run_dir.path / "run_info.json").get("data_files") or {}
    return changed_data_files(stored, data_files(recipe)) if stored else []  # nothing recorded: cannot tell


def plan_resume(recipe: Recipe, run_dir: RunDir) -> ResumePlan:
    """Decide, before anything in the run directory is overwritten, whether training continues a checkpoint.

    ``training.resume``: ``auto`` resumes an interrupted run of the same recipe and data, else starts afresh;
    ``always`` (``tailor run --resume``) refuses to start afresh; ``never`` always starts afresh.
    """
    mode = recipe.training.resume
    if mode == "never":
        return ResumePlan(None, "training.resume is never")
    status = _read_json(run_dir.status_file)
    if status.get("status") == "running" and process_alive(status.get("pid")):
        raise UserError(
            f"{run_dir.path}: another tailor run (pid {status['pid']}) is still writing to this output_dir; "
            "wait for it, stop it, or choose another output_dir"
        )
    problem = _why_not_resumable(recipe, run_dir, status)
    if problem is None:
        checkpoint = last_checkpoint(run_dir.checkpoints)
        assert checkpoint is not None
        return ResumePlan(checkpoint, f"resuming from {checkpoint.name} (status was {status.get('status')})")
    if mode == "always":
        raise UserError(f"{run_dir.path}: cannot resume: {problem}; run without --resume to start afresh")
    return ResumePlan(None, problem)


def _why_not_resumable(recipe: Recipe, run_dir: RunDir, status: dict[str, Any]) -> str | None:
    from tailorlm.train.distributed import world_size

    state = status.get("status")
    if world_size() > 1:  # the worker processes do not plan a resume (train/distributed.py): not supported yet
        return "resuming a multi-process run (training.num_processes > 1) is not supported"
    if state not in RESUMABLE_STATUSES:
        return "no interrupted run here" if state is None else f"the run in it is {state}"
    if last_checkpoint(run_dir.checkpoints) is None:
        return "no complete checkpoint was saved before it stopped"
    if not run_dir.recipe.is_file():
        return "recipe.resolved.yaml is missing"
    auto_keys = frozenset(_read_json(run_dir.path / AUTO_FILE))
    changed = recipe_differences(run_dir.recipe.read_text(encoding="utf-8"), recipe, auto_keys)
    if changed:
        shown = ", ".join(changed[:5]) + (", ..." if len(changed) > 5 else "")
        return f"the recipe differs from the interrupted run's ({shown})"
    data = _data_changed(run_dir, recipe)
    if data:
        return f"data changed since the interrupted run ({', '.join(data)})"
    return None


def announce(plan: ResumePlan, console: Console, had_checkpoints: bool) -> None:
    """One line when resuming, or when checkpoints exist but are not used (so nobody wonders why)."""
    if plan.checkpoint is not None:
        console.print(f"resume: {plan.reason}")
    elif had_checkpoints:
        console.print(f"resume: starting afresh ({plan.reason})")


# ------------------------------------------------------------------------------------------- Trainer glue


class EpochSeededLengthSampler(LengthGroupedSampler):
    """Length-grouped batches whose order depends only on (seed, epoch), so a resumed epoch sees the same order.

    accelerate's data loader calls ``set_epoch`` before each epoch, also after skipping already-seen batches.
    """

    def __init__(self, *args: Any, seed: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Any:
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


class ResumableTrainer(Trainer):
    """Trainer whose length-grouped training order is reproducible from the seed and epoch (see the module).

    It also weighs examples when the training set has a ``weight`` column, whatever put it there (fairness
    reweighing): the trainer stays task-agnostic and the weights reach the loss.
    """

    def _set_signature_columns_if_needed(self) -> None:
        """Keep the ``weight`` column past Trainer's removal of columns the model's forward does not take."""
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None and WEIGHT_COLUMN not in self._signature_columns:
            self._signature_columns.append(WEIGHT_COLUMN)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """With per-example weights (or extra terms), the objective's loss; otherwise the model's own (Trainer's).

        The weighted loss is a per-batch mean, like the loss it replaces, so everything else (gradient
        accumulation, logging, early stopping) treats it the same way.
        """
        if WEIGHT_COLUMN in inputs and self.objective is None:
            raise RuntimeError("a weighted batch needs trainer.objective (train/objective.py) to weigh its loss")
        if self.objective is not None and self.objective.takes_over(inputs):
            loss, outputs = self.objective(model, inputs)  # weights / extra terms (train/objective.py)
            return (loss, outputs) if return_outputs else loss
        if self.selected_logits_loss and "labels" in inputs:
            return self._labelled_token_loss(model, inputs, return_outputs, num_items_in_batch)
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    #: the weighted per-example loss and extra terms (train/objective.py); set by train/trainer.py
    objective: Objective | None = None
    #: causal LM: the loss from the labelled tokens' logits only (train/lm_loss.py); set by train/trainer.py
    selected_logits_loss: bool = False

    def _labelled_token_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool,
                             num_items_in_batch: Any) -> Any:
        """Trainer's causal-LM loss, the same numbers (mean over labelled tokens, or over the accumulated batch's
        ``num_items_in_batch`` as the model would), without the full batch × length × vocabulary logits."""
        from tailorlm.train.lm_loss import labelled_token_loss

        inputs = dict(inputs)
        labels = inputs.pop("labels")
        total, count, outputs = labelled_token_loss(model, inputs, labels, self.args.label_smoothing_factor)
        if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            loss = total / torch.as_tensor(num_items_in_batch, device=total.device).clamp_min(1)
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes
        else:
            loss = total / max(count, 1)
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model: Any = None) -> Any:
        """Build from a copy of ``optimizer_cls_and_kwargs``: transformers pops ``params`` out of the dict it is
        given, so a second build (the batch-size finder retrying after out-of-memory) would silently drop the
        layer-wise learning rates (train/optim.py) and train every layer at one rate.

        An extra loss term with parameters of its own (DANN's domain classifier, adapt/dann.py) exposes them as
        ``.parameters()``; they join as one more parameter group at the training learning rate, so they are
        optimised and scheduled with the model but never saved with it."""
        fresh = self.optimizer is None
        spec = self.optimizer_cls_and_kwargs
        if spec is None or not fresh:
            optimizer = super().create_optimizer(model)
        else:
            self.optimizer_cls_and_kwargs = (spec[0], dict(spec[1]))
            try:
                optimizer = super().create_optimizer(model)
            finally:
                self.optimizer_cls_and_kwargs = spec
        if fresh:
            self._add_term_parameters(optimizer)
        return optimizer

    def _add_term_parameters(self, optimizer: Any) -> None:
        terms = self.objective.extra_terms if self.objective is not None else []
        params = [p for term in terms if hasattr(term, "parameters") for p in term.parameters() if p.requires_grad]
        if params:
            optimizer.add_param_group({"params": params, "lr": self.args.learning_rate, "weight_decay": 0.0})
            self.add_callback(ZeroGradients(params))  # Trainer zeroes only the model's gradients

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or dataset is None:
            return super()._get_train_sampler(train_dataset)
        column = self.args.length_column_name
        names = getattr(dataset, "column_names", None) or []
        lengths = dataset[column] if column in names else None
        input_name = self.processing_class.model_input_names[0] if self.processing_class is not None else None
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return EpochSeededLengthSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps,
            dataset=dataset, lengths=lengths, model_input_name=input_name, seed=seed,
        )


class ZeroGradients(TrainerCallback):
    """Clear the gradients of parameters outside the model after each optimizer step, as Trainer's
    ``model.zero_grad()`` does for the model's own (a loss term's parameters would otherwise accumulate)."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        self.params = params

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kw: Any) -> None:
        for param in self.params:
            param.grad = None


class SaveEvery(TrainerCallback):
    """A checkpoint every ``steps`` optimizer steps, independent of the evaluation cadence."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kw: Any) -> None:
        if state.global_step % self.steps == 0:
            control.should_save = True


def save_callbacks(recipe: Recipe, has_validation: bool) -> list[TrainerCallback]:
    """Extra saves at ``training.save_steps`` when checkpoints otherwise follow the evaluations.

    Without validation the save cadence is Trainer's own ``save_steps`` (train/trainer.py); with it, Trainer
    requires saves to coincide with evaluations for the best checkpoint, so the extra ones come from here.
    """
    steps = recipe.training.save_steps
    if steps and has_validation and recipe.training.resume != "never":
        return [SaveEvery(steps)]
    return []


def train_guarded(trainer: Trainer, recipe: Recipe, model: Any, checkpoints: Path, resume_from: Path | None) -> None:
    """``trainer.train``, after a free-disk check, from ``resume_from`` when given; a CUDA OOM becomes a UserError."""
    from tailorlm.provenance import make_deterministic
    from tailorlm.safety import check_free_disk, is_out_of_memory, out_of_memory_error, training_disk_need

    full = recipe.training.resume != "never"
    need = training_disk_need(model, full, recipe.training.save_total_limit)
    check_free_disk(checkpoints, need, "checkpoints and the saved model")
    make_deterministic(on_gpu=torch.cuda.is_available())
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory_error(recipe) from None
        raise


# ------------------------------------------------------------------------------------------- run.py glue


def begin(recipe: Recipe, run_dir: RunDir, console: Console) -> Path | None:
    """Decide on resuming (before the run directory is rewritten); stale checkpoints of another run go."""
    had_checkpoints = run_dir.checkpoints.exists()
    plan = plan_resume(recipe, run_dir)
    announce(plan, console, had_checkpoints)
    if plan.checkpoint is None and had_checkpoints:
        import shutil

        shutil.rmtree(run_dir.checkpoints, ignore_errors=True)
    return plan.checkpoint


def record_failure(run_dir: RunDir, exc: BaseException) -> None:
    """status.json after an exception: ``interrupted`` (Ctrl-C, SIGTERM) or ``failed``, with the reason."""
    reason = f"{type(exc).__name__}: {str(exc)[:500]}".rstrip(": ")
    resumable = last_checkpoint(run_dir.checkpoints) is not None
    extra = {"resumable": resumable} | ({"hint": "run the same recipe with --resume"} if resumable else {})
    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    run_dir.set_status(status, reason=reason, **extra)
