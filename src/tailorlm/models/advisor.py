"""`tailor models --task`: which model to fine-tune for a task on this hardware, with the numbers behind it.

Candidates are the shipped aliases that suit the task plus a small catalogue of well-known hub models whose config
shapes are written down here, so their memory is estimated without a download. Memory comes from
``models/estimate.py`` (the same arithmetic as ``tailor estimate``); speed is an estimate from a measured matmul
rate. The rule that ranks them is in :func:`rank`.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tailorlm.errors import ModelError, UserError
from tailorlm.models.estimate import HEAD_NAMES, config_shape, lora_trainable, memory_rows, meta_model

if TYPE_CHECKING:
    from tailorlm.tasks.spec import TaskSpec

#: estimate × 1.15 must fit: the CUDA context, allocator fragmentation and temporaries come on top (estimate.py)
HEADROOM = 1.15


@dataclass(frozen=True)
class CatalogueEntry:
    """A hub model's config shape, enough to build it on the meta device; ``params`` is its published size."""

    kind: str  # encoder | decoder | seq2seq
    model_type: str  # transformers' model_type, which picks the config class
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    params: int  # the model card's parameter count (tests re-count some from the shape)
    extra: dict[str, Any] = field(default_factory=dict)  # family-specific keys: kv heads, relative attention, ...
    legacy: tuple[str, ...] = ()  # older hub ids that may hold the same files in the local cache
    note: str = ""


_DEBERTA_V3 = {"relative_attention": True, "position_buckets": 256, "pos_att_type": ["p2c", "c2p"],
               "position_biased_input": False, "norm_rel_ebd": "layer_norm", "share_att_key": True,
               "type_vocab_size": 0, "max_relative_positions": -1, "max_position_embeddings": 512}

CATALOGUE: dict[str, CatalogueEntry] = {
    # encoders: classification, token classification, extractive QA
    "distilbert/distilbert-base-uncased": CatalogueEntry(
        "encoder", "distilbert", 768, 6, 12, 3072, 30522, 66_362_880, legacy=("distilbert-base-uncased",)),
    "google-bert/bert-base-uncased": CatalogueEntry(
        "encoder", "bert", 768, 12, 12, 3072, 30522, 109_482_240, legacy=("bert-base-uncased",)),
    "FacebookAI/roberta-base": CatalogueEntry(
        "encoder", "roberta", 768, 12, 12, 3072, 50265, 124_645_632,
        extra={"max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1}, legacy=("roberta-base",)),
    "microsoft/deberta-v3-small": CatalogueEntry(
        "encoder", "deberta-v2", 768, 6, 12, 3072, 128100, 141_304_320, extra=_DEBERTA_V3),
    "microsoft/deberta-v3-base": CatalogueEntry(
        "encoder", "deberta-v2", 768, 12, 12, 3072, 128100, 183_831_552, extra=_DEBERTA_V3),
    # decoders: generation
    "HuggingFaceTB/SmolLM2-360M": CatalogueEntry(
        "decoder", "llama", 960, 32, 15, 2560, 49152, 361_821_120,
        extra={"num_key_value_heads": 5, "tie_word_embeddings": True, "max_position_embeddings": 8192}),
    "Qwen/Qwen2.5-0.5B": CatalogueEntry(
        "decoder", "qwen2", 896, 24, 14, 4864, 151936, 494_032_768,
        extra={"num_key_value_heads": 2, "tie_word_embeddings": True, "max_position_embeddings": 32768}),
    "meta-llama/Llama-3.2-1B": CatalogueEntry(
        "decoder", "llama", 2048, 16, 32, 8192, 128256, 1_235_814_400,
        extra={"num_key_value_heads": 8, "head_dim": 64, "tie_word_embeddings": True,
               "max_position_embeddings": 131072},
        note="gated: accept the licence on the hub and log in"),
    # encoder-decoders: translation
    "google-t5/t5-small": CatalogueEntry(
        "seq2seq", "t5", 512, 6, 8, 2048, 32128, 60_506_624, extra={"d_kv": 64}, legacy=("t5-small",)),
    "Helsinki-NLP/opus-mt-en-de": CatalogueEntry(
        "seq2seq", "marian", 512, 6, 8, 2048, 58101, 74_410_496,
        extra={"max_position_embeddings": 512, "pad_token_id": 58100, "decoder_start_token_id": 58100},
        note="one model per language pair: opus-mt-SRC-TGT"),
    "google/flan-t5-base": CatalogueEntry(
        "seq2seq", "t5", 768, 12, 12, 2048, 32128, 247_577_856,
        extra={"d_kv": 64, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False},
        note="transformers 5 ties T5's output head, so it counts 223 M"),
    "facebook/nllb-200-distilled-600M": CatalogueEntry(
        "seq2seq", "m2m_100", 1024, 12, 16, 4096, 256206, 615_073_792,
        extra={"max_position_embeddings": 1024}, note="200 languages"),
}

#: config keys per family where they differ from BERT's names (hidden_size, num_hidden_layers, ...)
_BART_LIKE = {"hidden": ("d_model",), "layers": ("encoder_layers", "decoder_layers"),
              "heads": ("encoder_attention_heads", "decoder_attention_heads"),
              "intermediate": ("encoder_ffn_dim", "decoder_ffn_dim")}
_CONFIG_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "distilbert": {"hidden": ("dim",), "layers": ("n_layers",), "heads": ("n_heads",),
                   "intermediate": ("hidden_dim",)},
    "t5": {"hidden": ("d_model",), "layers": ("num_layers",), "heads": ("num_heads",), "intermediate": ("d_ff",)},
    "marian": _BART_LIKE,
    "m2m_100": _BART_LIKE,
}
_BERT_KEYS = {"hidden": ("hidden_size",), "layers": ("num_hidden_layers",), "heads": ("num_attention_heads",),
              "intermediate": ("intermediate_size",)}


def catalogue_config(name: str) -> Any:
    """A transformers config object built from the catalogue's shape (no file read, no network)."""
    from transformers import AutoConfig

    entry = CATALOGUE[name]
    keys = _CONFIG_KEYS.get(entry.model_type, _BERT_KEYS)
    kwargs: dict[str, Any] = {"vocab_size": entry.vocab, **entry.extra}
    for generic, names in keys.items():
        kwargs.update(dict.fromkeys(names, getattr(entry, generic)))
    return AutoConfig.for_model(entry.model_type, **kwargs)


# ------------------------------------------------------------------ which models suit a task

#: a task's model kind follows from what its head predicts: next tokens, target sequences, or labels/spans
_KIND_BY_PEFT_TASK = {"CAUSAL_LM": "decoder", "SEQ_2_SEQ_LM": "seq2seq"}


def task_kind(spec: TaskSpec) -> str:
    """encoder, decoder or seq2seq, from the task spec's head type (so a new task needs no edit here)."""
    return _KIND_BY_PEFT_TASK.get(spec.peft_task_type, "encoder")


def config_kind(config: Any) -> str:
    """The kind of a model from its config: encoder-decoder flag, then a causal-LM architecture, else encoder."""
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    architectures = getattr(config, "architectures", None) or []
    if getattr(config, "is_decoder", False) or any(a.endswith("ForCausalLM") for a in architectures):
        return "decoder"
    return "encoder"


@dataclass
class Candidate:
    name: str
    config: Any
    offline: str  # shipped | cached | download
    note: str = ""


def hub_cached(repo_ids: tuple[str, ...]) -> bool:
    """Whether a hub model's config and safetensors weights are in the local cache (file checks, no network)."""
    from huggingface_hub import try_to_load_from_cache

    def cached(repo: str, filename: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, filename), str)

    return any(
        cached(repo, "config.json") and (cached(repo, "model.safetensors")
                                         or cached(repo, "model.safetensors.index.json"))
        for repo in repo_ids
    )


def shipped_candidates(spec: TaskSpec) -> list[Candidate]:
    """Aliases whose model kind matches the task's, and always the task's own default; unavailable ones skipped."""
    from tailorlm.models.registry import ALIASES, alias_config

    found = []
    for alias in ALIASES:
        config = alias_config(alias)  # nothing converted: smollm2's shape is known before its first use
        if config is None:  # its package is not installed: not a candidate on this machine
            continue
        if alias == spec.default_model or config_kind(config) == task_kind(spec):
            found.append(Candidate(alias, config, "shipped", "task default" if alias == spec.default_model else ""))
    return found


def catalogue_candidates(spec: TaskSpec) -> list[Candidate]:
    """Catalogue models of the task's kind, with whether their files are already in the local cache."""
    return [
        Candidate(name, catalogue_config(name), "cached" if hub_cached((name, *entry.legacy)) else "download",
                  entry.note)
        for name, entry in CATALOGUE.items()
        if entry.kind == task_kind(spec)
    ]


# ------------------------------------------------------------------ hardware: memory and matmul rate

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt])(i?)b?\s*$", re.IGNORECASE)
_POWER = {"k": 1, "m": 2, "g": 3, "t": 4}


def parse_memory(text: str) -> int:
    """Bytes from ``8GiB``, ``8 GB`` or ``8000M``: K/M/G/T are powers of 1000, Ki/Mi/Gi/Ti powers of 1024."""
    match = _MEMORY.match(text)
    if not match:
        raise UserError(f"--memory '{text}': not a memory size; use a number and a unit, e.g. 8GiB, 8 GB or "
                        "8000M (K/M/G/T: powers of 1000, Ki/Mi/Gi/Ti: powers of 1024)")
    number, unit, binary = match.groups()
    return int(float(number) * (1024 if binary else 1000) ** _POWER[unit.lower()])


def resolve_device(device: str) -> str:
    """``auto``: cuda when torch sees a GPU, else cpu."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device '{device}': choose cpu, cuda or auto")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def default_memory(device: str) -> tuple[int, str]:
    """The budget when --memory is not given: the GPU's memory for cuda, else this machine's RAM."""
    import torch

    if device == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no GPU is visible here, so its memory is unknown; pass --memory "
                            "for the GPU you plan to use, e.g. --memory 24GiB")
        props = torch.cuda.get_device_properties(0)
        return props.total_memory, f"GPU memory of {props.name}"
    import psutil

    return psutil.virtual_memory().total, "this machine's RAM"


@dataclass(frozen=True)
class Throughput:
    flops: float | None  # per second; None: not measurable here
    how: str


@functools.cache
def cpu_throughput() -> Throughput:
    """A float32 1024×1024 matmul timed for about 0.2 s on this CPU: a ceiling on what training reaches.

    Cached for the process, so several tables (or tests) pay for it once.
    """
    import torch

    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up: thread pool and caches
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < 0.2:
        a @ b
        count += 1
    flops = 2 * n**3 * count / elapsed
    return Throughput(flops, f"float32 {n}×{n} matmul measured on this CPU ({torch.get_num_threads()} threads): "
                             f"{flops / 1e9:.0f} GFLOP/s")


@functools.cache
def cuda_throughput() -> Throughput:
    """A bf16 4096×4096 matmul timed on GPU 0, or no figure when there is no GPU here."""
    import torch

    if not torch.cuda.is_available():
        return Throughput(None, "no GPU here to measure, so tokens/s is not estimated")
    n = 4096
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    count, start = 20, time.perf_counter()
    for _ in range(count):
        a @ b
    torch.cuda.synchronize()
    flops = 2 * n**3 * count / (time.perf_counter() - start)
    name = torch.cuda.get_device_name(0)
    return Throughput(flops, f"bf16 {n}×{n} matmul measured on {name}: {flops / 1e12:.0f} TFLOP/s")


def throughput(device: str) -> Throughput:
    return cuda_throughput() if device == "cuda" else cpu_throughput()


def tokens_per_second(parameters: int, device_flops: float | None) -> float | None:
    """Training costs about 6 × parameters FLOPs per token (2 forward, 4 backward; Kaplan et al. 2020)."""
    return None if device_flops is None else device_flops / (6 * parameters)


# ------------------------------------------------------------------ estimate, rank, recommend


@dataclass
class Advice:
    name: str
    kind: str
    offline: str
    parameters: int
    lora_trainable: int
    full_bytes: float
    lora_bytes: float
    fits_full: bool
    fits_lora: bool
    tokens_per_s: float | None
    note: str = ""

    @property
    def fits(self) -> bool:
        return self.fits_full or self.fits_lora


def _shape_config(config: Any) -> Any:
    """An EncoderDecoderModel keeps its shape in ``config.encoder``; other families on the config itself."""
    encoder = getattr(config, "encoder", None)
    return encoder if hasattr(encoder, "num_hidden_layers") else config


def advise_one(candidate: Candidate, spec: TaskSpec, recipe: Any, *, batch: int, seq: int, precision: str,
               memory: int, peft: str | None, device_flops: float | None) -> Advice:
    """Parameters and memory of one candidate through estimate.py's functions (meta device, no weights)."""
    from tailorlm.models.estimate import head_config
    from tailorlm.models.peft import choose_targets

    config = head_config(recipe, spec, candidate.config)
    model = meta_model(spec.auto_class(), config)
    total = sum(p.numel() for p in model.parameters())
    try:
        targets = choose_targets(model, recipe.model.peft)
    except ModelError:  # no LoRA default for this family: LoRA then trains the head only, as in `tailor estimate`
        targets = []
    lora = lora_trainable(model, targets, recipe.model.peft.r, HEAD_NAMES)
    rows = {row.setting: row for row in memory_rows(
        total, lora, config_shape(_shape_config(config)), batch, seq, recipe.training.gradient_checkpointing,
        causal_lm=spec.peft_task_type == "CAUSAL_LM")}
    full, low = rows[f"full · {precision}"].total, rows[f"lora · {precision}"].total
    return Advice(
        name=candidate.name, kind=config_kind(candidate.config), offline=candidate.offline, parameters=total,
        lora_trainable=lora, full_bytes=full, lora_bytes=low,
        fits_full=peft != "lora" and full * HEADROOM <= memory,
        fits_lora=peft != "none" and low * HEADROOM <= memory,
        tokens_per_s=tokens_per_second(total, device_flops), note=candidate.note,
    )


RULE = ("models that fit (estimate + 15% headroom within the memory, full or LoRA) come first, largest first "
        "(more pretrained parameters usually transfer better), ties broken by speed; the rest follow, "
        "smallest LoRA memory first")


OFFLINE_RULE = ("the hub cannot be reached ({why}), so models available here (shipped, cached) come before "
                "download-only ones")


def rank(advice: list[Advice], offline: bool = False) -> list[Advice]:
    """The order of :data:`RULE` (and, ``offline``, :data:`OFFLINE_RULE` first): the first one that fits is the
    recommendation."""
    fitting = sorted((a for a in advice if a.fits), key=lambda a: (
        offline and a.offline == "download", -a.parameters, -(a.tokens_per_s or 0)))
    rest = sorted((a for a in advice if not a.fits), key=lambda a: a.lora_bytes)
    return fitting + rest


def why(best: Advice | None, memory: int, offline: bool = False) -> str:
    """One line on the recommendation, or what to change when nothing fits."""
    if best is None:
        return (f"nothing fits {memory / 2**30:.1f} GiB; try a smaller --batch-size or --max-length, --peft lora, "
                "or --set training.gradient_checkpointing=true")
    method, needed = ("full", best.full_bytes) if best.fits_full else ("LoRA", best.lora_bytes)
    which = "available offline " if offline and best.offline != "download" else ""
    return (f"{best.name}: the largest {which}candidate ({best.parameters / 1e6:,.0f} M parameters) whose {method} "
            f"fine-tune fits {memory / 2**30:.1f} GiB ({needed * HEADROOM / 2**30:.2f} GiB with headroom)")


@dataclass
class Report:
    task: str
    device: str
    precision: str
    memory_bytes: int
    memory_source: str
    batch_size: int
    max_length: int
    peft: str | None
    speed_how: str
    rule: str
    recommended: str | None
    why: str
    models: list[Advice]
    offline: str | None = None  # why the hub cannot be reached now, when it cannot

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for row, advice in zip(data["models"], self.models, strict=True):
            row["fits"] = advice.fits
        data["speed_note"] = SPEED_NOTE
        return data


SPEED_NOTE = ("speed is an estimate: tokens/s = measured matmul FLOP/s ÷ (6 × parameters), an upper bound that "
              "real training reaches a fraction of (data loading, attention, optimizer steps)")


def advise(task_name: str, *, memory: str | None = None, device: str = "auto", peft: str | None = None,
           batch: int = 16, seq: int = 256, overrides: list[str] | None = None) -> Report:
    """Candidates for ``task_name`` with memory, fit and speed on this hardware, ranked, with a recommendation.

    ``overrides`` are recipe keys (``model.peft.r=16``, ``training.gradient_checkpointing=true``) that change the
    estimate; CPU training runs in fp32, CUDA training in bf16 autocast.
    """
    from tailorlm.recipe import load_recipe
    from tailorlm.tasks import get_spec

    spec = get_spec(task_name)
    if peft not in (None, "lora", "none"):
        raise UserError(f"--peft '{peft}': choose lora or none (leave it out to consider both)")
    if batch < 1 or seq < 1:
        raise UserError("--batch-size and --max-length must be at least 1")
    budget, source = (parse_memory(memory), "--memory") if memory is not None else (None, "")
    device = resolve_device(device)
    if budget is None:
        budget, source = default_memory(device)
    recipe = load_recipe(None, [f"task={task_name}", *(overrides or [])])
    speed = throughput(device)
    precision = "bf16 autocast" if device == "cuda" else "fp32"
    advice = [
        advise_one(c, spec, recipe, batch=batch, seq=seq, precision=precision, memory=budget, peft=peft,
                   device_flops=speed.flops)
        for c in [*shipped_candidates(spec), *catalogue_candidates(spec)]
    ]
    from tailorlm.models.offline import hub_unreachable

    hub_down = hub_unreachable()
    ranked = rank(advice, offline=hub_down is not None)
    best = ranked[0] if ranked and ranked[0].fits else None
    rule = f"{OFFLINE_RULE.format(why=hub_down)}; then {RULE}" if hub_down else RULE
    return Report(task_name, device, precision, budget, source, batch, seq, peft, speed.how, rule,
                  best.name if best else None, why(best, budget, hub_down is not None), ranked, hub_down)
