"""Data stages: prepare (load, clean, split, report), reshape (a fold or a subset), the data-dependent ``auto``
keys, the self-training pool, augmented copies of the training rows, tokenise (cached), weigh (per-row
training weights) and domain_weights (instance weights by target-likeness)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console

from tailorlm.data import write_rejects
from tailorlm.recipe import Recipe
from tailorlm.rundir import RunDir
from tailorlm.safety import check_output_dir
from tailorlm.stages.context import RunContext
from tailorlm.tasks import get_task
from tailorlm.tasks.base import Task
from tailorlm.tasks.defaults import fill_model_name


def token_counter(tokenizer: Any) -> Callable[[list[str]], list[int]]:
    """Token counts per text, for the data report's length statistics and ``max_length: auto``."""
    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]

    return count


def prepare_data(recipe: Recipe, console: Console, run_dir: RunDir | None = None) -> tuple[Any, Any, Any, Task]:
    """Resolve the model's tokenizer, then load, clean and split the data; write the data report and rejects.

    ``tailor prepare`` calls it alone (``run_dir`` None: the same output_dir guards as a run); a run calls it as
    its first stage. Returns (data, tokenizer, resolved model, task).
    """
    from tailorlm.models.loading import load_tokenizer
    from tailorlm.models.registry import resolve_model

    if run_dir is None:
        check_output_dir(recipe)
        run_dir = RunDir.create(recipe.output_dir)
    task = get_task(recipe.task)
    fill_model_name(recipe)
    resolved = resolve_model(recipe.model.name, allow_pickle=recipe.model.allow_pickle)
    tokenizer = load_tokenizer(resolved, recipe.model)
    data = task.prepare_data(recipe, token_counter(tokenizer))
    run_dir.write_json("data_report.json", data.report)
    write_rejects(run_dir.rejects, data.rejects)
    console.print(
        f"data: train {len(data.train)} · validation {len(data.validation)} · test {len(data.test)} rows; "
        f"{len(data.rejects)} rejected (see {run_dir.rejects})"
    )
    return data, tokenizer, resolved, task


def prepare(ctx: RunContext) -> None:
    ctx.data, ctx.tokenizer, ctx.resolved, ctx.task = prepare_data(ctx.recipe, ctx.console, ctx.run_dir)
    ctx.body = ctx.resolved


def reshape(ctx: RunContext) -> None:
    """A k-fold fold's train/validation, or a data-curve run's smaller train split, in place of the prepared ones."""
    assert ctx.reshape is not None
    ctx.data = ctx.reshape(ctx.need("data"))


def auto_data(ctx: RunContext) -> None:
    """``training.*: auto`` keys that depend on the number of training rows (train/auto.py), and the task's own
    (regression's pair encoding)."""
    from tailorlm.train import auto

    ctx.chosen |= auto.resolve_data_dependent(ctx.recipe, len(ctx.need("data").train))
    ctx.chosen |= ctx.need("task").resolve_auto(ctx.recipe, ctx.need("data"), ctx.need("resolved"))


def unlabelled(ctx: RunContext) -> None:
    """adapt.self_train's pool, read before any training so that a bad file fails in seconds."""
    from tailorlm.adapt.self_train import read_unlabelled

    ctx.unlabelled = read_unlabelled(ctx.recipe, ctx.need("data"))


def target(ctx: RunContext) -> dict[str, Any]:
    """adapt.target_unlabeled: the target domain's texts for DANN and instance weighting (adapt/target.py)."""
    from tailorlm.adapt.target import read_target

    ctx.target = read_target(ctx.recipe, ctx.need("data"))
    return {"adapt": {"target": ctx.target.as_dict(), "shift": target_shift(ctx)}}


#: texts per side below which the shift is not measured (the domain classifier is cross-validated 5-fold)
MIN_SHIFT_ROWS = 10


def target_shift(ctx: RunContext) -> dict[str, Any]:
    """How far the target is from the training rows (adapt/shift.py, as ``tailor shift`` measures two files):
    vocabulary, lengths, the proxy A-distance of the named model's frozen features, the distinguishing words."""
    from tailorlm.adapt.shift import DomainFile, texts_shift
    from tailorlm.augment.stage import AUGMENTED_COLUMN

    train = ctx.need("data").train
    if "text" not in train:  # a task whose rows are not one text (tokens, question + context)
        return {}
    if AUGMENTED_COLUMN in train:  # the user's rows, not the copies augment made of them
        train = train[~train[AUGMENTED_COLUMN].astype(bool)]
    if min(len(train), len(ctx.need("target").texts)) < MIN_SHIFT_ROWS:  # a domain classifier needs both sides
        return {"skipped": f"fewer than {MIN_SHIFT_ROWS} texts on a side"}
    source = DomainFile(str(ctx.recipe.data.train), [str(t) for t in train["text"]], None)
    target = DomainFile(ctx.need("target").source, ctx.need("target").texts, None)
    return texts_shift(source, target, ctx.need("resolved").source)


def tokenize(ctx: RunContext) -> dict[str, Any]:
    """The task's encoded splits, from the tokenised-splits cache when the same data was encoded before."""
    from tailorlm.data.token_cache import encode_with_cache

    data = ctx.need("data")
    ctx.encoded, cache_status = encode_with_cache(ctx.need("task"), ctx.recipe, data, ctx.tokenizer)
    cached = " (tokenised splits from the cache)" if cache_status == "hit" else ""
    ctx.console.print(f"model: {ctx.need('resolved').name} · max_length {ctx.encoded.max_length} tokens{cached}")
    return {"data": {"train": len(data.train), "validation": len(data.validation), "test": len(data.test),
                     "rejected": len(data.rejects), "tokenize_cache": cache_status}}


def counterfactual_augment(ctx: RunContext) -> None:
    """fairness.mitigation counterfactual_augment: swapped copies of the training rows (Lu et al. 2018; fairness/)."""
    from tailorlm.fairness.cda import counterfactual_augment as augment_with_swaps

    ctx.data, ctx.mitigation = augment_with_swaps(ctx.recipe, ctx.need("data"))
    ctx.console.print(f"fairness: {ctx.mitigation['rows_added']} counterfactual copies added to the training rows "
                      f"({', '.join(ctx.mitigation['families'])})")


def weigh(ctx: RunContext) -> None:
    """fairness.mitigation reweight: a weight per training row, so group and label look independent (fairness/)."""
    from tailorlm.fairness.pipeline import apply_mitigation

    ctx.mitigation = apply_mitigation(ctx.recipe, ctx.need("data"), ctx.need("encoded"))


def domain_weights(ctx: RunContext) -> dict[str, Any]:
    """adapt.instance_weighting: each source training row weighted by how target-like it is (adapt/weighting.py).

    Runs on every rank of a data-parallel run (each needs the column); the weights depend on the data alone.
    """
    from tailorlm.adapt.weighting import instance_weighting

    report = instance_weighting(ctx.recipe, ctx.need("data"), ctx.need("target").texts, ctx.need("resolved"),
                                ctx.tokenizer, ctx.need("encoded"))
    ess = report["effective_sample_size"]
    ctx.console.print(f"adapt: instance weights on {report['rows']} source rows · effective sample size {ess:.1f} "
                      f"· domain classifier accuracy {report['domain_accuracy']:.3f}")
    if report.get("caution"):
        ctx.console.print(f"[yellow]adapt: caution: {report['caution']}[/]")
    return {"adapt": {"instance_weighting": report}}


def augment(ctx: RunContext) -> dict[str, Any]:
    """augment.method: augmented copies of the training rows, leak-free, after any reshape and after adapt.pretrain
    (so mlm can fill masks with the adapted body's head): the method's augmenter (augment/methods.py) proposes,
    augment/stage.py checks, caps and tags."""
    from tailorlm.augment.base import Sources
    from tailorlm.augment.methods import make_augmenter
    from tailorlm.augment.stage import augment_data, augmented_jsonl

    augmenter = make_augmenter(Sources(ctx.recipe, ctx.need("data"), ctx.need("body")))
    ctx.data, section = augment_data(ctx.recipe, ctx.need("data"), augmenter)
    ctx.run_dir.write_text("augmented.jsonl", augmented_jsonl(ctx.data.train))
    ctx.run_dir.write_json("data_report.json", ctx.data.report)
    models = ", ".join(f"{k} {v}" for k, v in section.get("models", {}).items() if v)
    ctx.console.print(f"augment: {section['rows_added']} {section['method']} copies added to "
                      f"{section['train_rows_before']} training rows ({section['dropped_leaking']} dropped as "
                      f"copies of validation/test texts){f'; {models}' if models else ''}")
    return {"augment": section}
