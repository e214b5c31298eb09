"""``training.keep_best_of``: save the candidate that scores best on the validation split, not always the fine-tune.

A fine-tune on a few hundred rows can lose to the linear probe (logistic regression on frozen embeddings). The
verdict says so either way; with ``keep_best_of: [tuned, linear_probe]`` the run also *saves* the probe when it wins
on validation, so ``tailor predict``/``serve``/``eval`` use the better model. The choice is made on validation, so
the test split stays an unbiased judge of both: ``tuned`` keeps the fine-tune's test metrics and ``kept`` records the
choice, both validation scores and the kept model's test metrics (the ``linear_probe`` baseline's, the same probe).
"""

from __future__ import annotations

from typing import Any

from tailorlm.stages.context import Kept, RunContext


def wants_probe(ctx: RunContext) -> bool:
    return "linear_probe" in ctx.recipe.training.keep_best_of


def validation_scores(ctx: RunContext, metric: str) -> dict[str, float]:
    """Each candidate's validation score on ``metric``; a candidate without one is left out."""
    from tailorlm.train.trainer import best_validation

    fitted = ctx.need("fitted")
    scores = {"tuned": best_validation(fitted.outcome.log_history, fitted.outcome.best_step).get(metric),
              "linear_probe": ((ctx.baselines.get("linear_probe") or {}).get("validation") or {}).get(metric)}
    return {name: float(v) for name, v in scores.items()
            if name in ctx.recipe.training.keep_best_of and isinstance(v, int | float)}


def keep_best(ctx: RunContext) -> dict[str, Any]:
    from tailorlm.metric_names import greater_is_better

    metric = ctx.recipe.training.metric or ctx.spec.select_metric.name
    scores = validation_scores(ctx, metric)
    if "tuned" not in scores or len(scores) < 2 or ctx.probe_head is None:
        return {"kept": {"model": "tuned", "metric": metric, "validation": scores,
                         "reason": "only the fine-tune had a validation score; it is kept"}}
    sign = 1.0 if greater_is_better(metric) else -1.0
    # the probe must be strictly better: a tie keeps the fine-tune
    winner = "linear_probe" if sign * scores["linear_probe"] > sign * scores["tuned"] else "tuned"
    record = {"model": winner, "metric": metric, "split": "validation", "validation": scores}
    if winner == "tuned":
        return {"kept": record | {"reason": "the fine-tune scored at least as well as the linear probe on validation"}}
    ctx.kept = Kept("linear_probe", probe_model(ctx), probe_meta(ctx))
    test = {k: v for k, v in ctx.baselines["linear_probe"].items() if isinstance(v, int | float)}
    ctx.console.print(f"keep_best_of: the linear probe scored {scores['linear_probe']:.4f} {metric} on validation "
                      f"against the fine-tune's {scores['tuned']:.4f}; model/ holds the linear probe")
    return {"kept": record | {"test": test, "reason": "the linear probe scored better on validation"}}


def probe_model(ctx: RunContext) -> Any:
    """The pretrained encoder (as named, never the adapted body: the probe was fitted on its embeddings) with the
    probe's head."""
    from transformers import AutoModel

    from tailorlm.models.loading import load_pretrained
    from tailorlm.tasks.classification.probe import ProbeClassifier

    encoder = load_pretrained(AutoModel, ctx.need("resolved"), ctx.recipe.model)
    return ProbeClassifier(encoder, ctx.probe_head).eval()


def probe_meta(ctx: RunContext) -> dict[str, Any]:
    from tailorlm.tasks.classification.probe import PROBE_HEAD

    fitted = ctx.need("fitted")
    return {k: v for k, v in fitted.meta.items() if k != "temperature"} | {"head": PROBE_HEAD}
