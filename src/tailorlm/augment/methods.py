"""``augment.method`` -> the function that builds its augmenter from the run (base.Sources). The stage asks this
table, so a new method is a module and a line here, never a branch in stage.py."""

from __future__ import annotations

from collections.abc import Callable

from tailorlm.augment.base import Augmenter, Sources


def _eda(sources: Sources) -> Augmenter:
    from tailorlm.augment.eda import EdaAugmenter, read_synonyms

    cfg = sources.recipe.augment
    return EdaAugmenter(cfg.alpha, read_synonyms(cfg.synonyms) if cfg.synonyms else {})


def _mlm(sources: Sources) -> Augmenter:
    from tailorlm.augment.mlm import build

    return build(sources)


def _back_translation(sources: Sources) -> Augmenter:
    from tailorlm.augment.back_translation import build

    return build(sources)


def _paraphrase(sources: Sources) -> Augmenter:
    from tailorlm.augment.paraphrase import build

    return build(sources)


BUILDERS: dict[str, Callable[[Sources], Augmenter]] = {
    "eda": _eda, "mlm": _mlm, "back_translation": _back_translation, "paraphrase": _paraphrase,
}


def make_augmenter(sources: Sources) -> Augmenter:
    return BUILDERS[sources.recipe.augment.method](sources)
