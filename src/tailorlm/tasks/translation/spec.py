"""The facts about translation (and other text-to-text rewrites) that the rest of tailorlm asks (tasks/spec.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tailorlm.tasks.spec import CardText, Demo, Metric, TaskSpec

MODEL_HINT = (
    "translation needs a seq2seq model: set model.name to a hub id such as Helsinki-NLP/opus-mt-en-de or a "
    "local folder"
)


def describe(meta: Mapping[str, Any], labels: Sequence[str], code: Callable[[Any], str]) -> str:
    """The model card's "What it does": the language pair when the run named one."""
    source, target = meta.get("source_lang"), meta.get("target_lang")
    if source and target:
        return f"Translates (or rewrites) text from {code(source)} to {code(target)}."
    return "Rewrites a source text into its target form (translation or text-to-text)."


SPEC = TaskSpec(
    name="translation",
    task_class="tailorlm.tasks.translation.task:TranslationTask",
    default_model="minilm-seq2seq",  # no seq2seq model ships offline: MiniLM warm-starts one (models/warmstart.py)
    model_hint=MODEL_HINT,
    # The report judges corpus BLEU on the test split, but checkpoints are picked by the validation loss: BLEU
    # would need a full generation pass at every evaluation. Both on purpose.
    main_metric=Metric("bleu", greater_is_better=True),
    select_metric=Metric("loss", greater_is_better=False),
    pipeline_tag="translation",
    peft_task_type="SEQ_2_SEQ_LM",
    auto_model_class="AutoModelForSeq2SeqLM",
    demo=Demo("tailorlm.demos.translation:generate_demo_mt", "examples/data/scots_mt"),
    card=CardText(describe),
    file_columns=("data.source_column", "data.target_column"),
    capabilities=frozenset({"generates"}),
    auto_lr_factor=2.0,  # a warm-started seq2seq model's cross-attention starts from nothing
    floor_baselines=frozenset({"pretrained"}),  # minilm-seq2seq before tuning: random cross-attention
)
