"""LoRA through peft: target modules chosen per architecture family, checked against the model."""

from __future__ import annotations

from torch import nn

from tailorlm.errors import ModelError
from tailorlm.recipe import PeftConfig

# Attention projections per family: the modules LoRA papers and peft's own defaults adapt first.
LORA_TARGETS = {
    "bert": ["query", "key", "value"],
    "roberta": ["query", "key", "value"],
    "xlm-roberta": ["query", "key", "value"],
    "electra": ["query", "key", "value"],
    "camembert": ["query", "key", "value"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj"],
    "distilbert": ["q_lin", "k_lin", "v_lin"],
    "mpnet": ["q", "k", "v"],
    "albert": ["query", "key", "value"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "phi3": ["qkv_proj", "o_proj"],
    "gpt2": ["c_attn"],
    "t5": ["q", "k", "v", "o"],
    "mt5": ["q", "k", "v", "o"],
    "bart": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "marian": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "encoder-decoder": ["query", "key", "value"],  # BERT2BERT (minilm-seq2seq): self- and cross-attention
}


def linear_module_names(model: nn.Module) -> set[str]:
    """Leaf names of the model's Linear layers (what LoRA can adapt)."""
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)}


def choose_targets(model: nn.Module, cfg: PeftConfig) -> list[str]:
    """The recipe's target modules if given (each must exist), else the family default, else q/k/v-like names."""
    present = linear_module_names(model)
    if cfg.target_modules:
        missing = [t for t in cfg.target_modules if t not in present]
        if missing:
            raise ModelError(
                f"model.peft.target_modules: {', '.join(missing)} not in this model; its linear modules are: "
                f"{', '.join(sorted(present))}"
            )
        return list(cfg.target_modules)
    family = getattr(getattr(model, "config", None), "model_type", "")
    targets = [t for t in LORA_TARGETS.get(family, []) if t in present]
    if targets:
        return targets
    guess = sorted(n for n in present if any(k in n.lower() for k in ("query", "key", "value", "q_proj", "v_proj")))
    if not guess:
        raise ModelError(
            f"model.peft.target_modules: no default for model family '{family}'; set them, e.g. "
            f"--set model.peft.target_modules='[{', '.join(sorted(present)[:3])}]'"
        )
    return guess


def apply_lora(model: nn.Module, cfg: PeftConfig, task_type: str) -> nn.Module:
    """Wrap ``model`` with LoRA adapters; the task head stays fully trainable (peft's modules_to_save)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=choose_targets(model, cfg),
        task_type=task_type,
    )
    return get_peft_model(model, lora)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
