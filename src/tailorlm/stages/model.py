"""Model stages: domain-adaptive pretraining of the body, the task model (head, LoRA), the learning rate
(``auto`` or the range test), the record of every ``auto`` choice, and the memory plan checked before the
baselines spend their minutes."""

from __future__ import annotations

from typing import Any

from transformers import set_seed

from tailorlm.stages.context import RunContext


def adapt(ctx: RunContext) -> dict[str, Any]:
    """adapt.pretrain: the body keeps pretraining on domain text first; the baselines keep the original model."""
    from tailorlm.adapt import adapt_model
    from tailorlm.train.auto import resolve_data_dependent

    # before augment (an mlm augmenter fills masks with the adapted head), so before auto_data: the pretraining's
    # batch and warm-up are the training's ``auto`` choices for the rows prepared so far, resolved on a copy
    recipe = ctx.recipe.model_copy(deep=True)
    resolve_data_dependent(recipe, len(ctx.need("data").train))
    ctx.body, record = adapt_model(recipe, ctx.need("resolved"), ctx.tokenizer, ctx.need("data"), ctx.run_dir,
                                   ctx.console)
    return {"adapt": record} if record else {}


def build_task_model(ctx: RunContext, data: Any) -> Any:
    """The body with the task's head (and LoRA), seeded first: the same recipe gives the same initial head.

    Self-training's student is built here too, from the same body and seed as its teacher.
    """
    from tailorlm.models.peft import apply_lora

    task, recipe = ctx.need("task"), ctx.recipe
    set_seed(recipe.training.seed)
    model = task.build_model(ctx.need("body"), recipe, data)
    if recipe.model.peft.method == "lora":
        model = apply_lora(model, recipe.model.peft, task.peft_task_type)
    return model


def build(ctx: RunContext) -> None:
    """Built before the baselines, so a bad model setting fails in seconds."""
    ctx.model = build_task_model(ctx, ctx.need("data"))


def auto_learning_rate(ctx: RunContext) -> None:
    """``learning_rate: auto`` from the size of the built body (train/auto.py)."""
    from tailorlm.train import auto

    ctx.chosen |= auto.resolve_learning_rate(ctx.recipe, ctx.need("task").name, auto.body_parameters(ctx.model),
                                             ctx.model)


def lr_find(ctx: RunContext) -> dict[str, Any]:
    """``learning_rate: find``: the range test on training batches, the weights restored after (train/lr_find.py)."""
    from tailorlm.train.lr_find import resolve_found_rate

    choice, found = resolve_found_rate(ctx.need("task"), ctx.need("model"), ctx.tokenizer, ctx.need("encoded"),
                                       ctx.recipe, ctx.console)
    ctx.chosen["training.learning_rate"] = choice
    return {"lr_find": found.as_dict()}


def record_auto(ctx: RunContext) -> dict[str, Any]:
    """Say what ``auto`` picked, and rewrite the resolved recipe with the concrete values (``auto.json`` keeps
    which keys were automatic, so a resumed run with the same recipe still matches)."""
    from tailorlm.recipe import dump_recipe
    from tailorlm.train.resume import AUTO_FILE

    chosen = ctx.chosen
    ctx.run_dir.write_json(AUTO_FILE, {key: c.as_dict() for key, c in chosen.items()})
    if not chosen:
        return {}
    ctx.console.print("auto: " + " · ".join(f"{key.removeprefix('training.')} {c.value} ({c.reason})"
                                            for key, c in chosen.items()))
    header = "".join(f"# {key}: auto -> {c.value}: {c.reason}\n" for key, c in chosen.items())
    ctx.run_dir.write_text("recipe.resolved.yaml", header + dump_recipe(ctx.recipe))
    return {"auto": {key: choice.as_dict() for key, choice in chosen.items()}}


def memory_plan(ctx: RunContext) -> None:
    """A training step that cannot fit in memory stops here, before the baselines (train/memory_fit.py)."""
    from tailorlm.train.trainer import plan_batch

    plan_batch(ctx.recipe, ctx.need("task"), ctx.need("model"), ctx.need("encoded"))
