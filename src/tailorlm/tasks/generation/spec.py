"""The facts about causal-LM fine-tuning (``task: generation``) that the rest of tailorlm asks (tasks/spec.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tailorlm.tasks.spec import CardText, Demo, Metric, TaskSpec


def describe(meta: Mapping[str, Any], labels: Sequence[str], code: Callable[[Any], str]) -> str:
    """The model card's "What it does": the prompt format the model was tuned with."""
    template = "tokenizer's chat template" if meta.get("prompt_format") == "chat" else \
        "plain `### Instruction:` / `### Response:` template"
    return ("Answers a prompt (an instruction or a question) in the style of its training responses; "
            f"prompts use the {template}.")


SPEC = TaskSpec(
    name="generation",
    task_class="tailorlm.tasks.generation.task:GenerationTask",
    default_model="smollm2",
    # The report judges test perplexity (exp of the mean response-token loss); checkpoints are picked by the
    # validation loss the Trainer logs, which orders them the same way.
    main_metric=Metric("perplexity", greater_is_better=False),
    select_metric=Metric("loss", greater_is_better=False),
    pipeline_tag="text-generation",
    peft_task_type="CAUSAL_LM",
    auto_model_class="AutoModelForCausalLM",
    demo=Demo("tailorlm.demos.generation:generate_generation_demo", "examples/data/generation"),
    card=CardText(describe, example="your question here", example_note="the prompt",
                  length_note="It was tuned on examples of up to {n} tokens; a prompt longer than the model's "
                              "context window keeps only its end."),
    capabilities=frozenset({"generates"}),
    auto_epoch_cap=3,  # a causal LM adapting to a domain's text overfits a small set within a few passes
)
