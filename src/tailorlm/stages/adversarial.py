"""adapt.adversarial (DANN, adapt/dann.py): register the domain-adversarial loss term before training, and measure
after the test evaluation how well a domain classifier still tells source from target features.

The report compares frozen mean-pooled features of the body training started from ("before") with the tuned
model's body ("after"): the held-out accuracy of a logistic-regression domain classifier and the proxy A-distance
(adapt/shift.py), on equal numbers of source training texts and target texts, so chance is 0.5.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tailorlm.stages.context import RunContext

#: texts per domain the report embeds (a cap on its cost; the proxy A-distance settles well before)
REPORT_ROWS = 1000


def forward_passes(ctx: RunContext, micro: int) -> int:
    """The training forward passes each process will make: micro-batches per epoch × epochs (the DANN progress)."""
    from tailorlm.train.distributed import world_size

    per_epoch = math.ceil(len(ctx.need("encoded").train) / (micro * world_size()))
    return max(1, math.ceil(per_epoch * float(ctx.recipe.training.epochs)))


def adversarial(ctx: RunContext) -> dict[str, Any]:
    """Build the DANN term on the task model's body and register it with the training objective."""
    from tailorlm.adapt.dann import SCHEDULE, DomainAdversarialLoss, SaveWithCheckpoints, body_of, target_batches
    from tailorlm.train.trainer import plan_batch

    recipe, encoded, target = ctx.recipe, ctx.need("encoded"), ctx.need("target")
    micro = plan_batch(recipe, ctx.need("task"), ctx.need("model"), encoded).micro_batch
    total = forward_passes(ctx, micro)
    batches = target_batches(ctx.tokenizer, target.texts, encoded.max_length, micro, recipe.training.seed)
    term = DomainAdversarialLoss(body_of(ctx.model), batches, total, recipe.adapt.adversarial_max_lambda,
                                 seed=recipe.training.seed)
    ctx.loss_terms.append(term)
    ctx.extra_callbacks.append(SaveWithCheckpoints(term))  # resume continues the head and the schedule
    resumed = ctx.run_dir.resume_from is not None and term.restore(ctx.run_dir.resume_from)
    ctx.console.print(f"adapt: domain-adversarial training against {len(target.texts):,} target texts "
                      f"(lambda up to {recipe.adapt.adversarial_max_lambda} over {total} steps)"
                      + (f"; resumed at step {term.steps}" if resumed else ""))
    return {"adapt": {"adversarial": {"max_lambda": recipe.adapt.adversarial_max_lambda, "schedule": SCHEDULE,
                                      "total_steps": total, "target_rows": len(target.texts),
                                      "target_batch": micro}}}


def term_of(ctx: RunContext) -> Any:
    from tailorlm.adapt.dann import DomainAdversarialLoss

    terms = [term for term in ctx.loss_terms if isinstance(term, DomainAdversarialLoss)]
    if not terms:
        raise RuntimeError("stage order: 'adversarial' must run before 'adversarial_report'")
    return terms[0]


def balanced_texts(source: list[str], target: list[str], seed: int) -> tuple[list[str], list[str]]:
    """Equal numbers of source and target texts (at most REPORT_ROWS each), drawn with the run's seed."""
    n = min(len(source), len(target), REPORT_ROWS)
    rng = np.random.default_rng(seed)

    def draw(texts: list[str]) -> list[str]:
        return [texts[i] for i in sorted(rng.choice(len(texts), size=n, replace=False))]

    return draw(source), draw(target)


def domain_shift(body: Any, ctx: RunContext, source: list[str], target: list[str]) -> dict[str, Any]:
    """Domain classifier accuracy and proxy A-distance on ``body``'s frozen mean-pooled features."""
    import torch

    from tailorlm.adapt.shift import proxy_a_distance
    from tailorlm.evaluate.inference import forward_sorted, mean_pooled

    max_length, batch = ctx.need("encoded").max_length, ctx.recipe.training.eval_batch
    with torch.no_grad():
        src = forward_sorted(body, ctx.tokenizer, source, max_length, batch, mean_pooled)
        tgt = forward_sorted(body, ctx.tokenizer, target, max_length, batch, mean_pooled)
    return proxy_a_distance(src, tgt, seed=ctx.recipe.training.seed)


def adversarial_report(ctx: RunContext) -> dict[str, Any]:
    """Before (the body training started from) and after (the tuned body): how separable the domains are."""
    from transformers import AutoModel

    from tailorlm.adapt.dann import body_of
    from tailorlm.evaluate.inference import model_device
    from tailorlm.models.loading import load_pretrained

    term, tuned = term_of(ctx), ctx.need("fitted").model
    source, target = balanced_texts(list(ctx.need("data").train["text"]), ctx.need("target").texts,
                                    ctx.recipe.training.seed)
    original = load_pretrained(AutoModel, ctx.need("body"), ctx.recipe.model).to(model_device(tuned))
    before = domain_shift(original, ctx, source, target)
    del original
    after = domain_shift(body_of(tuned), ctx, source, target)
    ctx.console.print(f"adapt: domain classifier accuracy {before['domain_accuracy']:.3f} before, "
                      f"{after['domain_accuracy']:.3f} after adversarial training (0.5: indistinguishable)")
    settings = ctx.metrics.get("adapt", {}).get("adversarial", {})
    return {"adapt": {"adversarial": settings | {"rows_per_domain": len(source), "before": before, "after": after,
                                                 "final_lambda": term.stats()["final_lambda"],
                                                 "training": term.stats()}}}
