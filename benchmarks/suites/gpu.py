"""The GPU suite: Trainer vs tailorlm at realistic shapes, random-initialised from configs (no download), with MFU.

Shapes (``--dry-run`` swaps in tiny ones and runs 2 steps each on whatever device there is, CPU included, to check
the code paths and the data building):

- a Qwen2-0.5B-shaped causal LM (hidden 896, 24 layers, 14 heads, 2 KV heads, intermediate 4864, vocab 151936),
  weights in bf16, batch 16, token lengths log-normal (log-mean 5.5, log-sd 0.7, clamped 16..1024); a full
  fine-tune and LoRA (r 16 on q/k/v/o);
- a BERT-base-shaped 6-class classifier (768 wide, 12 layers, 12 heads, vocab 30522) in fp32 weights with bf16
  autocast, batch 32, lengths log-normal (log-mean 4.5, log-sd 0.7, clamped 8..512).

Trainer side: random batches, dynamic padding to the longest in the batch (the decoder's collator pads exactly
as DataCollatorWithPadding would, plus labels), bf16 like tailorlm, Trainer's own defaults otherwise. tailorlm
side: ``tailorlm.train.trainer.fit`` with tailorlm's settings (length grouping, packing for the decoder,
torch.compile auto, fused AdamW, TF32). Token ids are random: throughput does not depend on them, and the final
train loss of both sides is comparable because both see the same examples.

MFU = 6 × parameters × real tokens/s ÷ the bf16 matmul peak measured here by a big matmul loop (the achievable
peak, lower than the datasheet's). For LoRA the same 6 × P convention is kept (its backward skips the weight
gradients, so its true FLOPs are nearer 4 × P): read LoRA's MFU as "full-fine-tune-equivalent".
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.suites.common import Row, lognormal_lengths, measure, print_table, write_json
from benchmarks.suites.common import matmul_peak_flops as common_matmul_peak


@dataclass(frozen=True)
class Shapes:
    """Model and data shapes of one suite (real or dry-run)."""

    decoder: dict[str, int]
    classifier: dict[str, int]
    decoder_batch: int = 16
    classifier_batch: int = 32
    decoder_rows: int = 2000
    classifier_rows: int = 4000
    decoder_lengths: tuple[float, float, int, int] = (5.5, 0.7, 16, 1024)
    classifier_lengths: tuple[float, float, int, int] = (4.5, 0.7, 8, 512)
    matmul_n: int = 8192
    matmul_iters: int = 50
    lora_r: int = 16


QWEN2_05B = {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
             "intermediate_size": 4864, "vocab_size": 151936, "max_position_embeddings": 4096}
BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
             "vocab_size": 30522, "max_position_embeddings": 512}
FULL = Shapes(decoder=QWEN2_05B, classifier=BERT_BASE)
DRY = replace(
    FULL,
    decoder={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 64, "vocab_size": 256, "max_position_embeddings": 128},
    classifier={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                "vocab_size": 256, "max_position_embeddings": 128},
    decoder_batch=4, classifier_batch=4, decoder_rows=8, classifier_rows=8,
    decoder_lengths=(3.0, 0.7, 4, 64), classifier_lengths=(3.0, 0.7, 4, 64), matmul_n=128, matmul_iters=2, lora_r=4,
)


# ---------------------------------------------------------------------------------------------- models and data


def decoder_model(shapes: Shapes) -> Any:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**shapes.decoder, tie_word_embeddings=True, attn_implementation="sdpa")
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).to(torch.bfloat16)


def classifier_model(shapes: Shapes) -> Any:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(**shapes.classifier, num_labels=6, attn_implementation="sdpa")
    torch.manual_seed(0)
    return BertForSequenceClassification(config)


def lm_rows(n: int, lengths: tuple[float, float, int, int], vocab: int, seed: int) -> list[dict[str, list[int]]]:
    """Random token sequences of log-normal length; the loss is on every token but the first."""
    rng = np.random.default_rng(seed)
    rows = []
    for size in lognormal_lengths(n, *lengths, seed=seed):
        ids = rng.integers(3, vocab, size).tolist()
        rows.append({"input_ids": ids, "labels": [-100, *ids[1:]]})
    return rows


def classifier_rows(n: int, lengths: tuple[float, float, int, int], vocab: int, seed: int) -> list[dict[str, Any]]:
    """Random 6-class examples; real-vocabulary runs wrap them in BERT's [CLS] ... [SEP] ids."""
    rng = np.random.default_rng(seed)
    rows = []
    for size in lognormal_lengths(n, *lengths, seed=seed):
        body = rng.integers(1000 if vocab > 2000 else 3, vocab, max(1, size - 2)).tolist()
        rows.append({"input_ids": [101, *body, 102] if vocab > 2000 else body, "labels": int(rng.integers(0, 6))})
    return rows


def as_dataset(rows: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    columns = {key: [r[key] for r in rows] for key in rows[0]}
    columns["length"] = [len(r["input_ids"]) for r in rows]
    return Dataset.from_dict(columns)


class PadCollator:
    """Dynamic padding to the longest in the batch: DataCollatorWithPadding's behaviour, labels padded too."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        batch = {
            "input_ids": torch.tensor([f["input_ids"] + [0] * (longest - len(f["input_ids"])) for f in features]),
            "attention_mask": torch.tensor([[1] * len(f["input_ids"]) + [0] * (longest - len(f["input_ids"]))
                                            for f in features]),
        }
        first = features[0]["labels"]
        if isinstance(first, list):
            batch["labels"] = torch.tensor([f["labels"] + [-100] * (longest - len(f["labels"])) for f in features])
        else:
            batch["labels"] = torch.tensor([f["labels"] for f in features])
        return batch


def with_lora(model: Any, r: int) -> Any:
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, task_type="CAUSAL_LM",
                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))


# ---------------------------------------------------------------------------------------------- peak and MFU


def matmul_peak_flops(n: int, iters: int) -> float:
    """Achievable bf16 matmul FLOP/s on this device: a big square matmul in a loop (after a warm-up)."""
    return common_matmul_peak(n, iters, torch.bfloat16)


def mfu(row: Row, parameters: int, peak: float) -> float:
    return 6 * parameters * row.tokens_per_s / peak if peak else 0.0


# ---------------------------------------------------------------------------------------------- the two sides


def final_train_loss(log_history: list[dict[str, Any]]) -> float | None:
    return next((e["train_loss"] for e in reversed(log_history) if "train_loss" in e), None)


def trainer_side(name: str, dataset: str, model: Any, rows: list[dict[str, Any]], batch: int, out: Path) -> Row:
    """Plain Trainer: random batches, dynamic padding, bf16 autocast, defaults otherwise."""
    from transformers import Trainer, TrainingArguments

    train = as_dataset(rows).remove_columns(["length"])
    args = TrainingArguments(output_dir=str(out), num_train_epochs=1, learning_rate=1e-4,
                             per_device_train_batch_size=batch, bf16=_bf16_ok(), save_strategy="no",
                             eval_strategy="no", report_to=[], disable_tqdm=True, logging_steps=10, seed=42,
                             use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=PadCollator())
    started = time.perf_counter()
    trainer.train()
    _sync()
    train_s = time.perf_counter() - started
    real = sum(len(r["input_ids"]) for r in rows)
    return Row(name, "Trainer", dataset, round(train_s, 2), len(rows), real, "train_loss",
               final_train_loss(trainer.state.log_history))


def tailorlm_side(name: str, dataset: str, model: Any, rows: list[dict[str, Any]], batch: int, out: Path,
                  task_name: str, packing: bool, peft: str = "none") -> Row:
    """tailorlm's fit with tailorlm's settings; packing (decoder) through the generation task's own packer."""
    from rich.console import Console

    from tailorlm.recipe import recipe_from_dict
    from tailorlm.tasks import get_task
    from tailorlm.tasks.base import EncodedSplits
    from tailorlm.tasks.generation.task import pack_examples
    from tailorlm.train.trainer import fit

    recipe = recipe_from_dict({
        "task": task_name, "output_dir": str(out),
        "model": {"peft": {"method": peft}},
        "training": {
            "warmup": 0.06, "epochs": 1, "learning_rate": 1e-4, "batch_size": batch, "seed": 42, "precision": "bf16"
                     if _bf16_ok() else "fp32", "early_stopping_patience": None, "max_length": 1024},
        "lm": {"packing": packing},
    }, "gpu suite")
    task = get_task(task_name)
    task._recipe = recipe  # the generation task reads lm.packing from its recipe when choosing the collator
    train_rows = pack_examples(rows, 1024) if packing else rows
    encoded = EncodedSplits(train=as_dataset(train_rows), validation=None, max_length=1024)
    tokenizer = _pad_only_tokenizer() if task_name == "classification" else None
    outcome = fit(task, model, tokenizer, encoded, None, recipe, out / "checkpoints", out / "log.json",
                  Console(stderr=True, quiet=True))
    _sync()
    real = sum(len(r["input_ids"]) for r in rows)
    return Row(name, "tailorlm", dataset, round(outcome.runtime_s, 2), len(rows), real, "train_loss",
               final_train_loss(outcome.log_history), extra={"packed_rows": len(train_rows)})


def _pad_only_tokenizer() -> Any:
    """MiniLM's tokenizer: BERT-base's vocabulary, so DataCollatorWithPadding pads with BERT's pad id (0)."""
    from transformers import AutoTokenizer

    from tailorlm.models.registry import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("minilm").source)


def _bf16_ok() -> bool:
    """bf16 on GPUs that have it; the CPU dry run uses it too (it only checks the code path)."""
    return not torch.cuda.is_available() or torch.cuda.is_bf16_supported()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------- the suite


def run_suite(out: Path, dry_run: bool) -> dict[str, Any]:
    from tailorlm.cli import _quiet_libraries

    _quiet_libraries()
    shapes = DRY if dry_run else FULL
    if not dry_run and not torch.cuda.is_available():
        raise SystemExit("--suite gpu needs a CUDA GPU; use --dry-run to check it on CPU with tiny shapes")
    work = Path(tempfile.mkdtemp(prefix="tailor-bench-gpu-"))
    peak = matmul_peak_flops(shapes.matmul_n, shapes.matmul_iters)
    print(f"gpu suite ({'dry run, tiny shapes' if dry_run else 'full shapes'}); bf16 matmul peak "
          f"{peak / 1e12:.1f} TFLOP/s", flush=True)
    lm = lm_rows(shapes.decoder_rows, shapes.decoder_lengths, shapes.decoder["vocab_size"], 1)
    cls = classifier_rows(shapes.classifier_rows, shapes.classifier_lengths, shapes.classifier["vocab_size"], 2)
    params = {"decoder": sum(p.numel() for p in decoder_model(shapes).parameters()),
              "classifier": sum(p.numel() for p in classifier_model(shapes).parameters())}
    b, r = shapes.decoder_batch, shapes.lora_r
    rows = [
        measure(lambda: trainer_side("transformers.Trainer", "qwen2-full", decoder_model(shapes), lm, b, work / "a")),
        measure(lambda: tailorlm_side("tailorlm (packing)", "qwen2-full", decoder_model(shapes), lm, b, work / "b",
                                      "generation", packing=True)),
        measure(lambda: trainer_side("transformers.Trainer", "qwen2-lora", with_lora(decoder_model(shapes), r), lm, b,
                                     work / "c")),
        measure(lambda: tailorlm_side("tailorlm (packing)", "qwen2-lora", with_lora(decoder_model(shapes), r), lm, b,
                                      work / "d", "generation", packing=True)),
        measure(lambda: trainer_side("transformers.Trainer", "bert-cls", classifier_model(shapes), cls,
                                     shapes.classifier_batch, work / "e")),
        measure(lambda: tailorlm_side("tailorlm", "bert-cls", classifier_model(shapes), cls, shapes.classifier_batch,
                                      work / "f", "classification", packing=False)),
    ]
    references = {r.dataset: r for r in rows if r.side == "Trainer"}
    model_of = {"qwen2-full": "decoder", "qwen2-lora": "decoder", "bert-cls": "classifier"}
    mfus = {f"{row.dataset}/{row.name}": round(mfu(row, params[model_of[row.dataset]], peak), 4) for row in rows}
    table = print_table(rows, references, {"MFU": lambda row: f"{mfus[f'{row.dataset}/{row.name}']:.1%}"})
    write_json(out, "gpu-dry-run" if dry_run else "gpu", rows, references, table,
               {"matmul_peak_tflops": round(peak / 1e12, 2), "matmul_peak_flops": peak, "parameters": params,
                "mfu": mfus, "shapes": shapes.__dict__})
    return {"rows": len(rows), "mfu": mfus}
