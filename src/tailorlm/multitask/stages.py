"""A multi-task run, as the list of stages it is made of (``STAGES``), over one ``MultiTaskContext``.

The stages mirror run.py's and reuse each task's own pieces: the data pipeline and its reports (``prepare_data``),
the tokenised-splits cache, ``auto`` choices, the baselines, the evaluation, predictions.jsonl, significance and
the verdict, per task; what is multi-task is the model (``model.py``), the sampler (``sampling.py``), the balance
(``balance.py``) and the trainer (``trainer.py``). Each task's files go to ``tasks/<name>/`` in the run directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import set_seed

from tailorlm.errors import RecipeError
from tailorlm.metric_names import greater_is_better
from tailorlm.multitask.model import MultiTaskModel, same_tokenizer
from tailorlm.multitask.sampling import SamplingPlan
from tailorlm.multitask.trainer import COMBINED
from tailorlm.multitask.units import TASKS_DIR, TaskUnit, task_recipe
from tailorlm.recipe import Recipe
from tailorlm.rundir import RunDir
from tailorlm.stages.context import RunContext
from tailorlm.stages.data import token_counter
from tailorlm.tasks import get_spec, get_task
from tailorlm.tasks.base import EvalSettings


@dataclass
class MultiTaskContext(RunContext):
    """A RunContext with the tasks of the run and the multi-task pieces."""

    units: list[TaskUnit] = field(default_factory=list)
    sampling: SamplingPlan | None = None
    #: test texts of one task that another trains on (cross_task_overlap), recorded in metrics.json
    overlap: dict[str, dict[str, int]] = field(default_factory=dict)
    #: one single-task run (``tailorlm.run.run``) for ``comparison: single_task``
    run_single: Callable[..., dict[str, Any]] | None = None

    def unit_dir(self, unit: TaskUnit) -> RunDir:
        return RunDir.create(self.run_dir.path / TASKS_DIR / unit.name)


def check_tokenizers(recipe: Recipe, tokenizer: Any) -> None:
    """A task naming another model than ``model.name`` cannot share its encoder; say whether the tokenizers differ."""
    from tailorlm.models.loading import load_tokenizer
    from tailorlm.models.registry import resolve_model

    for i, entry in enumerate(recipe.tasks or []):
        if entry.model is None or entry.model == recipe.model.name:
            continue
        other = load_tokenizer(resolve_model(entry.model, allow_pickle=recipe.model.allow_pickle), recipe.model)
        what = "a different tokenizer" if not same_tokenizer(other, tokenizer) else "the same tokenizer but another " \
            "encoder"
        raise RecipeError(f"tasks[{i}].model: {entry.model} has {what} than model.name ({recipe.model.name}); the "
                          f"tasks share one encoder and its tokenizer: remove tasks[{i}].model or set it to "
                          f"{recipe.model.name}")


def prepare(ctx: MultiTaskContext) -> None:
    """The shared model's tokenizer, then every task's data through its own pipeline (reports in tasks/<name>/)."""
    from tailorlm.data import write_rejects
    from tailorlm.models.loading import load_tokenizer
    from tailorlm.models.registry import resolve_model

    recipe = ctx.recipe
    entries = recipe.tasks or []
    recipe.model.name = get_spec(entries[0].task).model_name(recipe.model.name)
    ctx.resolved = ctx.body = resolve_model(recipe.model.name, allow_pickle=recipe.model.allow_pickle)
    ctx.tokenizer = load_tokenizer(ctx.resolved, recipe.model)
    check_tokenizers(recipe, ctx.tokenizer)
    for entry in entries:
        unit = TaskUnit(entry, task_recipe(recipe, entry), get_task(entry.task))
        unit.data = unit.task.prepare_data(unit.recipe, token_counter(ctx.tokenizer))
        folder = ctx.unit_dir(unit)
        folder.write_json("data_report.json", unit.data.report)
        write_rejects(folder.rejects, unit.data.rejects)
        ctx.console.print(f"data ({unit.name}, {entry.task}): train {len(unit.data.train)} · validation "
                          f"{len(unit.data.validation)} · test {len(unit.data.test)} rows; {len(unit.data.rejects)} "
                          f"rejected (see {folder.rejects})")
        ctx.units.append(unit)
    ctx.overlap = cross_task_overlap(ctx.units)
    for name, others in ctx.overlap.items():
        shown = ", ".join(f"{n} rows in {other}'s training split" for other, n in others.items())
        ctx.console.print(f"warning: {name}'s test split shares texts with other tasks ({shown}): the shared "
                          "encoder trains on them with another task's label, so the multi-task score on those rows "
                          "may be optimistic; give the tasks the same test texts, split from one file", markup=False)


def cross_task_overlap(units: list[TaskUnit]) -> dict[str, dict[str, int]]:
    """Per task, how many of its test texts another task trains on (the shared encoder saw them, with another
    task's label): ``{task: {other: rows}}``, by the near-duplicate fingerprint; tasks without a text column skip."""
    from tailorlm.data.clean import fingerprint

    def prints(frame: Any) -> set[str]:
        return {fingerprint(str(t)) for t in frame["text"]} if "text" in frame else set()

    trained = {u.name: prints(u.data.train) for u in units}
    out: dict[str, dict[str, int]] = {}
    for unit in units:
        tested = [fingerprint(str(t)) for t in unit.data.test["text"]] if "text" in unit.data.test else []
        counts = {other: sum(fp in seen for fp in tested) for other, seen in trained.items() if other != unit.name}
        if any(counts.values()):
            out[unit.name] = {k: v for k, v in counts.items() if v}
    return out


def _sync_training(ctx: MultiTaskContext) -> None:
    for unit in ctx.units:
        unit.recipe.training = ctx.recipe.training.model_copy(deep=True)


def auto_data(ctx: MultiTaskContext) -> None:
    """``auto`` batch, epochs and warm-up from all tasks' rows together; the step budget from them."""
    from tailorlm.train import auto

    recipe, mt = ctx.recipe, ctx.recipe.multitask
    sizes = tuple(len(u.data.train) for u in ctx.units)
    ctx.chosen |= auto.resolve_data_dependent(recipe, sum(sizes))
    t = recipe.training
    if mt.steps == "auto":
        per_pass = auto.optimizer_steps_per_epoch(sum(sizes), int(t.batch_size), t.gradient_accumulation)
        steps = max(1, round(per_pass * float(t.epochs) / (len(sizes) if mt.balance == "pcgrad" else 1)))
        per_step = f"; pcgrad takes one batch of each of the {len(sizes)} tasks per step" if mt.balance == "pcgrad" \
            else ""
        ctx.chosen["multitask.steps"] = auto.Choice(steps, f"{t.epochs} epoch(s) of {per_pass} steps over the "
                                                           f"{sum(sizes):,} rows of all tasks{per_step}")
        mt.steps = steps
    ctx.sampling = SamplingPlan(mt.sampling, sizes, int(mt.steps) * t.gradient_accumulation, mt.temperature,
                                mt.anneal_to)
    _sync_training(ctx)


def tokenize(ctx: MultiTaskContext) -> dict[str, Any]:
    from tailorlm.data.token_cache import encode_with_cache

    section = {}
    for unit in ctx.units:
        unit.encoded, status = encode_with_cache(unit.task, unit.recipe, unit.data, ctx.tokenizer)
        section[unit.name] = {"train": len(unit.data.train), "validation": len(unit.data.validation),
                              "test": len(unit.data.test), "rejected": len(unit.data.rejects),
                              "max_length": unit.encoded.max_length, "tokenize_cache": status}
    return {"data": section}


def build(ctx: MultiTaskContext) -> None:
    """The shared encoder (with one LoRA adapter when asked), each task's head, the learned loss weights."""
    from transformers import AutoConfig, AutoModel

    from tailorlm.models.loading import load_pretrained
    from tailorlm.tasks.common import set_dropout

    recipe, body = ctx.recipe, ctx.need("body")
    set_seed(recipe.training.seed)
    config = load_pretrained(AutoConfig, body, recipe.model)
    set_dropout(config, recipe.training.dropout, recipe.training.attention_dropout)
    encoder = load_pretrained(AutoModel, body, recipe.model, config=config)
    heads = {}
    for unit in ctx.units:
        if unit.recipe.regression.pair_encoding == "bi_encoder":
            raise RecipeError(f"multitask.tasks.{unit.name}: regression.pair_encoding: bi_encoder is single-task only "
                            "(the shared encoder reads each pair in one input); remove it or train that task alone")
        heads[unit.name] = unit.task.build_model(body, unit.recipe, unit.data)
    if recipe.model.peft.method == "lora":
        from peft import LoraConfig, get_peft_model

        from tailorlm.models.peft import choose_targets

        cfg = recipe.model.peft
        encoder = get_peft_model(encoder, LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                                     target_modules=choose_targets(encoder, cfg)))
    ctx.model = MultiTaskModel(encoder, heads, uncertainty=recipe.multitask.balance == "uncertainty")


def auto_learning_rate(ctx: MultiTaskContext) -> None:
    """``learning_rate: auto`` from the encoder's size, raised for the newest head (the largest task factor)."""
    from tailorlm.train import auto

    fastest = max(ctx.units, key=lambda u: u.spec.auto_lr_factor)
    body = sum(p.numel() for p in ctx.need("model").encoder.parameters())
    ctx.chosen |= auto.resolve_learning_rate(ctx.recipe, fastest.task.name, body)
    _sync_training(ctx)


def baselines(ctx: MultiTaskContext) -> None:
    """Each task's own baselines on its own test split, as its single-task run measures them."""
    for unit in ctx.units:
        unit.baselines = unit.task.baselines(unit.recipe, unit.data, ctx.need("resolved"), ctx.tokenizer,
                                             unit.encoded.max_length)
        for result in unit.baselines.values():
            if isinstance(result, dict):
                result.pop("head", None)  # training.keep_best_of is single-task only


def unit_meta(unit: TaskUnit) -> dict[str, Any]:
    return unit.task.model_meta(unit.data) | {"task": unit.task.name, "max_length": unit.encoded.max_length}


def unit_settings(ctx: MultiTaskContext, unit: TaskUnit, top_errors: int = 0) -> EvalSettings:
    return EvalSettings(max_length=unit.encoded.max_length, batch_size=ctx.recipe.training.eval_batch,
                        top_errors=top_errors)


@torch.no_grad()
def validation_loss(ctx: MultiTaskContext, unit: TaskUnit) -> float:
    """The task's objective (unweighted) over its encoded validation split."""
    from tailorlm.evaluate.inference import model_device
    from tailorlm.multitask.trainer import MODEL_COLUMNS
    from tailorlm.train.objective import Objective

    view, split = ctx.need("model").view(unit.name), unit.encoded.validation
    objective = Objective(unit.loss_kind(), huber_delta=ctx.recipe.regression.huber_delta)
    collate, size, total = unit.task.collator(ctx.tokenizer), ctx.recipe.training.eval_batch, 0.0
    device = model_device(view)
    for start in range(0, len(split), size):
        rows = [{k: v for k, v in split[i].items() if k in MODEL_COLUMNS} for i in range(start, min(start + size,
                                                                                                   len(split)))]
        batch = {k: v.to(device) for k, v in collate(rows).items()}
        total += float(objective(view, batch)[0]) * len(rows)
    return total / max(1, len(split))


def combined_score(ctx: MultiTaskContext, values: dict[str, float]) -> float:
    """Σ select_weight × main metric / Σ select_weight, lower-is-better metrics negated."""
    total = weight = 0.0
    for unit in ctx.units:
        key = f"{unit.name}_{unit.main_metric}"
        if key in values:
            sign = 1.0 if greater_is_better(unit.main_metric) else -1.0
            total, weight = total + unit.entry.select_weight * sign * values[key], weight + unit.entry.select_weight
    return total / weight if weight else 0.0


def validation_metrics(ctx: MultiTaskContext) -> dict[str, float]:
    """Every task's metrics on its validation split (its own evaluation code), losses and the combined score."""
    model, values, losses = ctx.need("model"), {}, []
    for unit in ctx.units:
        if unit.encoded.validation is None or len(unit.data.validation) == 0:
            continue
        result = unit.task.evaluate(model.view(unit.name), ctx.tokenizer, unit.data.validation, unit_meta(unit),
                                    unit_settings(ctx, unit))
        values |= {f"{unit.name}_{k}": float(v) for k, v in result["metrics"].items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        values[f"{unit.name}_loss"] = validation_loss(ctx, unit)
        losses.append(values[f"{unit.name}_loss"])
    values["loss"] = sum(losses) / max(1, len(losses))
    values[COMBINED] = combined_score(ctx, values)
    return values


def selection(recipe: Recipe, units: list[TaskUnit]) -> tuple[str, bool]:
    """The logged metric that picks the best checkpoint and whether larger is better."""
    if recipe.multitask.select == "weighted":
        return COMBINED, True
    unit = next(u for u in units if u.name == recipe.multitask.select)
    return f"{unit.name}_{unit.main_metric}", greater_is_better(unit.main_metric)


def train(ctx: MultiTaskContext) -> None:
    from tailorlm.models.peft import count_parameters
    from tailorlm.multitask.trainer import fit_multitask

    ctx.parameter_counts = count_parameters(ctx.need("model"))
    trainable, total = ctx.parameter_counts
    plan = ctx.need("sampling")
    ctx.console.print(f"multi-task: {len(ctx.units)} tasks on one encoder · {plan.steps} batches · sampling "
                      f"{plan.method} · balance {ctx.recipe.multitask.balance} · {trainable:,} of {total:,} "
                      "parameters trained")
    ctx.outcome = fit_multitask(ctx.model, ctx.units, ctx.tokenizer, ctx.recipe, plan, ctx.run_dir.checkpoints,
                                ctx.run_dir.log_history, ctx.console, lambda: validation_metrics(ctx),
                                selection(ctx.recipe, ctx.units), resume_from=ctx.run_dir.resume_from,
                                extra_callbacks=ctx.extra_callbacks)


def evaluate(ctx: MultiTaskContext) -> None:
    """Each task's test split, scored by its own view of the kept model, as a single-task run scores it."""
    from tailorlm.evaluate.floors import mark_floors
    from tailorlm.evaluate.predictions import pop_predictions

    model = ctx.need("model")
    for unit in ctx.units:
        unit.meta = unit_meta(unit)
        unit.evaluation = unit.task.evaluate(model.view(unit.name), ctx.tokenizer, unit.data.test, unit.meta,
                                             unit_settings(ctx, unit, ctx.recipe.report.top_errors))
        unit.predictions = pop_predictions(unit.evaluation, unit.baselines)
        mark_floors(unit.baselines, unit.task.name)
