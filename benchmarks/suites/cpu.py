"""The CPU suite: plain Trainer vs tailorlm on MiniLM, plus one row per speed-up, in ~10 minutes on 2 cores.

Datasets (written to a temporary folder, deterministic from the seed):

- ``demo``: the classification demo (``tailor demo-data``): short customer messages, 9 intents;
- ``longtail``: 4 classes whose keywords recur through filler text; lengths in words are log-normal (log-mean 4.0,
  log-sd 0.8, clamped 8..400), i.e. a median near 55 words and a tail past 300, as in reviews or support tickets;
- ``longtail-gen``: prompt/response pairs with log-normal lengths, for packing (a decoder-only model).

Rows: two Trainer configurations, then tailorlm's pipeline (``tailorlm.run.run``) with its defaults, then tailorlm
with one setting flipped per row (the ablations). The Trainer rows:

- ``transformers.Trainer``: as its text-classification example sets it up (truncation at the model limit, 512
  for MiniLM; DataCollatorWithPadding; random batches);
- ``Trainer, group_by_length + p99 max_length``: what a careful user runs: length-grouped batches
  (``train_sampling_strategy="group_by_length"``, transformers 5's name for 4.x's ``group_by_length=True``) and
  truncation at the same length tailorlm picks (the 99th percentile of training lengths, by tailorlm's own rule).

Both use the same precision, epochs, learning rate, batch size and seed as tailorlm. Ratios are against the
**best** Trainer row of each dataset (the highest samples/s), so a speed-up that only comes from defaults a user
can switch on in Trainer does not count. tailorlm trains on exactly the Trainer's rows (``data.split.validation:
0``, the same test file) with its baselines off, so both train the same examples for the same steps.

MFU (``common.mfu``) is 6 × MiniLM's matmul parameters × real tokens/s ÷ an fp32 matmul peak measured in the same
process with the same thread count, before and after the rows (the higher of the two is used): on a CPU it says how
much of the machine's matmul speed training turns into useful (non-padding) work.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from benchmarks.suites.common import (
    Row,
    TrainClock,
    keyword_text,
    lognormal_lengths,
    matmul_parameters,
    matmul_peak_flops,
    measure,
    mfu,
    print_table,
    write_json,
)

KEYWORDS = {
    "refund": ["refund", "money", "back", "return", "reimburse"],
    "delivery": ["parcel", "courier", "delivery", "arrived", "tracking"],
    "account": ["password", "login", "account", "email", "locked"],
    "praise": ["thanks", "brilliant", "great", "helpful", "lovely"],
}


@dataclass
class Settings:
    """The knobs of a CPU run; ``quick`` shrinks everything for a smoke test."""

    n_train: int = 320
    n_test: int = 160
    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float = 1e-4
    seed: int = 42
    model: str = "minilm"
    ablations: bool = True
    packing: bool = True
    gen_train: int = 160
    matmul_n: int = 1024
    matmul_iters: int = 20
    compile: bool = False
    skip: tuple[str, ...] = ()  # ablation rows left out (substrings of their names)


# ---------------------------------------------------------------------------------------------- data


def longtail_frames(n_train: int, n_test: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keyword texts of log-normal length (words): learnable in one epoch, with a long tail of long texts."""
    rng = random.Random(seed)
    labels = list(KEYWORDS)
    lengths = lognormal_lengths(n_train + n_test, 4.0, 0.8, 8, 400, seed)
    rows = [{"text": keyword_text(KEYWORDS[labels[i % len(labels)]], n, rng), "label": labels[i % len(labels)]}
            for i, n in enumerate(lengths)]
    rng.shuffle(rows)
    frame = pd.DataFrame(rows)
    return frame.iloc[:n_train].reset_index(drop=True), frame.iloc[n_train:].reset_index(drop=True)


def demo_frames(n_train: int, n_test: int, seed: int, work: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The classification demo's own train and test files (its test holds phrasings unseen in training)."""
    from tailorlm.demos.classification import generate_demo_dataset

    paths = generate_demo_dataset(work / "demo-src", seed=13)
    train = pd.read_csv(paths["train"]).sample(n=n_train, random_state=seed).reset_index(drop=True)
    test = pd.read_csv(paths["test"]).sample(n=n_test, random_state=seed).reset_index(drop=True)
    return train, test


def write_split(train: pd.DataFrame, test: pd.DataFrame, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    return folder / "train.csv", folder / "test.csv"


def generation_files(n_train: int, n_test: int, seed: int, folder: Path) -> tuple[Path, Path]:
    """Prompt/response pairs, response lengths log-normal in words: what packing is for."""
    rng = random.Random(seed)
    lengths = lognormal_lengths(n_train + n_test, 3.6, 0.8, 4, 300, seed + 1)
    rows = []
    for i, n in enumerate(lengths):
        label = list(KEYWORDS)[i % len(KEYWORDS)]
        rows.append({"prompt": f"Write a {label} note of about {n} words.",
                     "response": keyword_text(KEYWORDS[label], n, rng)})
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", rows[:n_train]), ("test", rows[n_train:])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return folder / "train.jsonl", folder / "test.jsonl"


def tiny_decoder(folder: Path) -> Path:
    """A 4-layer, 256-wide Llama (random init) with SmolLM2's tokenizer: a decoder that trains on 2 cores."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tailorlm.models.loading import load_tokenizer
    from tailorlm.models.registry import resolve_model
    from tailorlm.recipe import ModelConfig

    resolved = resolve_model("smollm2")
    tokenizer = load_tokenizer(resolved, ModelConfig(name="smollm2"))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------- the two sides


#: (row name, length-grouped batches, truncate at tailorlm's p99 length) of the Trainer configurations measured
TRAINER_CONFIGS: list[tuple[str, bool, bool]] = [
    ("transformers.Trainer", False, False),
    ("Trainer, group_by_length + p99 max_length", True, True),
]


def p99_max_length(tokenizer: Any, texts: list[str]) -> int:
    """The ``max_length`` tailorlm picks for these training texts (``max_length: auto``), by its own function."""
    from types import SimpleNamespace

    from tailorlm.tasks.classification.task import resolve_max_length

    recipe = SimpleNamespace(training=SimpleNamespace(max_length="auto"))
    return resolve_max_length(recipe, SimpleNamespace(train=pd.DataFrame({"text": texts})), tokenizer)  # type: ignore[arg-type]


def trainer_arguments(out: Path, s: Settings, grouped: bool) -> Any:
    """The Trainer rows' TrainingArguments; ``grouped`` is transformers 5's ``train_sampling_strategy=
    "group_by_length"`` (4.x spelled it ``group_by_length=True``), which makes Trainer use its LengthGroupedSampler."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(out), num_train_epochs=s.epochs, learning_rate=s.learning_rate,
        per_device_train_batch_size=s.batch_size, per_device_eval_batch_size=2 * s.batch_size, seed=s.seed,
        save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True, logging_strategy="no",
        use_cpu=not torch.cuda.is_available(), bf16=False,
        train_sampling_strategy="group_by_length" if grouped else "random",
    )


def plain_trainer(dataset: str, train_csv: Path, test_csv: Path, model_path: str, s: Settings, out: Path,
                  name: str = "transformers.Trainer", grouped: bool = False, p99: bool = False) -> Row:
    """transformers' Trainer as its text-classification example sets it up; ``grouped`` and ``p99`` switch on what
    a careful user would: length-grouped batches and tailorlm's truncation length."""
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
    )

    train = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
    test = pd.read_csv(test_csv, dtype=str, keep_default_na=False)
    labels = sorted(set(train["label"]) | set(test["label"]))  # a small sample's test may hold a label train lacks
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    max_length = p99_max_length(tokenizer, list(train["text"])) if p99 else None

    def encode(frame: pd.DataFrame) -> Dataset:
        encoded = tokenizer(list(frame["text"]), truncation=True, max_length=max_length)
        return Dataset.from_dict(dict(encoded) | {"labels": [label2id[x] for x in frame["label"]]})

    tokenize_started = time.perf_counter()
    train_ds, test_ds = encode(train), encode(test)
    tokenize_s = time.perf_counter() - tokenize_started
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    args = trainer_arguments(out / "trainer", s, grouped)
    clock = TrainClock()
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, data_collator=DataCollatorWithPadding(tokenizer),
                      processing_class=tokenizer, callbacks=[clock.callback()])
    started = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - started
    predictions = trainer.predict(test_ds).predictions.argmax(axis=1)
    accuracy = float((predictions == test_ds["labels"]).mean())
    tokens = sum(len(ids) for ids in train_ds["input_ids"])
    return Row(name, "Trainer", dataset, round(train_s, 2), int(len(train_ds) * s.epochs),
               int(tokens * s.epochs), "accuracy", accuracy,
               extra={"tokenize_s": round(tokenize_s, 3), "max_length": max_length or tokenizer.model_max_length,
                      "group_by_length": grouped, "train_cpu_s": round(clock.cpu_s, 2)})


def tailorlm_row(name: str, dataset: str, raw: dict[str, Any], s: Settings, metric: str = "accuracy") -> Row:
    """One run of tailorlm's real pipeline; throughput from its own metrics.json (training time only)."""
    from rich.console import Console

    from tailorlm.recipe import recipe_from_dict
    from tailorlm.run import run

    clock = TrainClock()
    metrics = run(recipe_from_dict(raw, f"benchmark {name}"), Console(stderr=True, quiet=True),
                  extra_callbacks=[clock.callback()])
    train = metrics["train"]
    samples = int(metrics["data"]["train"] * s.epochs)
    tokens = int(train["tokens_per_s"] * train["runtime_s"])
    value = metrics["tuned"].get(metric)
    return Row(name, "tailorlm", dataset, train["runtime_s"], samples, tokens, metric, value,
               extra={"timings_s": metrics["timings_s"], "max_length": metrics["model"]["max_length"],
                      "tokenize_s": metrics["timings_s"]["tokenize"],
                      "tokenize_cache": metrics["data"].get("tokenize_cache", "off"),
                      "train_cpu_s": round(clock.cpu_s, 2)})


def tokenize_cell(row: Row) -> str:
    """Seconds spent tokenising (tailorlm: including its p99 length pass), and whether the cache served it."""
    seconds = row.extra.get("tokenize_s")
    cache = row.extra.get("tokenize_cache")
    return "–" if seconds is None else f"{seconds:.2f}" + (f" ({cache})" if cache else "")


def classification_recipe(train_csv: Path, test_csv: Path, s: Settings, out: Path, **training: Any) -> dict:
    return {
        "task": "classification", "output_dir": str(out), "model": {"name": s.model},
        "data": {"train": str(train_csv), "test": str(test_csv), "split": {"validation": 0.0}},
        "training": {
            "warmup": 0.06, "epochs": s.epochs, "learning_rate": s.learning_rate, "batch_size": s.batch_size,
                     "seed": s.seed, **training},
        "baseline": {"zero_shot": False, "linear_probe": False},
        "report": {"top_errors": 0},
    }


#: one setting flipped per row, relative to tailorlm's defaults on this machine. torch.compile is not a row of the
#: CPU suite: on 2 cores its compilation alone (inductor, a new graph per batch shape) took 467 s against 42 s for
#: a whole uncompiled run of 2 steps, so ``torch_compile: auto`` is off on CPU; ``--compile`` adds the row anyway.
ABLATIONS: list[tuple[str, dict[str, Any]]] = [
    ("no length grouping", {"group_by_length": False}),
    ("max_length 512 (no p99 cut)", {"max_length": 512}),
    ("bf16 autocast", {"precision": "bf16"}),
    ("plain AdamW (not fused)", {"optimizer": "adamw"}),
    ("gradient checkpointing", {"gradient_checkpointing": True}),
    ("2 dataloader workers", {"num_workers": 2}),
]


# ---------------------------------------------------------------------------------------------- the suite


def classification_rows(dataset: str, train_csv: Path, test_csv: Path, s: Settings, work: Path,
                        ablations: bool) -> list[Row]:
    from tailorlm.models.registry import resolve_model

    model_path = resolve_model(s.model).source
    rows = [measure(lambda i=i, name=name, grouped=grouped, p99=p99: plain_trainer(
                dataset, train_csv, test_csv, model_path, s, work / dataset / f"trainer-{i}", name, grouped, p99))
            for i, (name, grouped, p99) in enumerate(TRAINER_CONFIGS)]
    rows.append(measure(lambda: tailorlm_row("tailorlm (defaults)", dataset,
                                             classification_recipe(train_csv, test_csv, s, work / dataset / "t0"), s)))
    if ablations:
        extra = [("torch.compile", {"torch_compile": "on"})] if s.compile else []
        for i, (name, change) in enumerate(ABLATIONS + extra, start=1):
            if any(part in name for part in s.skip):
                continue
            raw = classification_recipe(train_csv, test_csv, s, work / dataset / f"t{i}", **change)
            rows.append(measure(lambda raw=raw, name=name: tailorlm_row(f"tailorlm, {name}", dataset, raw, s)))
    return rows


def packing_rows(s: Settings, work: Path) -> list[Row]:
    """Decoder fine-tune on long-tailed pairs: padded length-grouped batches vs packed rows."""
    model_dir = tiny_decoder(work / "tiny-decoder")
    train, test = generation_files(s.gen_train, max(16, s.gen_train // 8), s.seed, work / "gen")
    rows = []
    for name, packing in (("tailorlm, padded batches", False), ("tailorlm, packing", True)):
        raw = {
            "task": "generation", "output_dir": str(work / f"gen-{packing}"), "model": {"name": str(model_dir)},
            "data": {"train": str(train), "test": str(test), "split": {"validation": 0.0}},
            "training": {
            "warmup": 0.06, "epochs": s.epochs, "learning_rate": 1e-3, "batch_size": s.batch_size, "seed": s.seed,
                         "max_length": 512},
            "lm": {"packing": packing, "chat_template": "none"},
            "generation": {"samples": 0, "max_eval_rows": 8},
        }
        rows.append(measure(lambda raw=raw, name=name: tailorlm_row(name, "longtail-gen", raw, s, "perplexity")))
    return rows


def best_trainer(rows: list[Row], dataset: str, cpu: bool = False) -> Row:
    """The fastest Trainer configuration of a dataset (per wall second, or per CPU second of training with
    ``cpu``): the bar tailorlm's speed is measured against."""
    def speed(row: Row) -> float:
        return float(row.extra.get("cpu_samples_per_s") or 0.0) if cpu else row.samples_per_s

    return max((r for r in rows if r.dataset == dataset and r.side == "Trainer"), key=speed)


def cpu_ratio_cell(references: dict[str, Row], row: Row) -> str:
    ref = references.get(row.dataset)
    mine, theirs = row.extra.get("cpu_samples_per_s"), ref.extra.get("cpu_samples_per_s") if ref else None
    if not mine or not theirs:
        return "–"
    return "1.00 (ref)" if ref is row else f"{mine / theirs:.2f}"


def _num(value: Any, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def classifier_matmul_parameters(model: str) -> int:
    """Matmul parameters of the benchmark's classifier (the body and a 4-label head; the head is negligible)."""
    from transformers import AutoModelForSequenceClassification

    from tailorlm.models.registry import resolve_model

    return matmul_parameters(AutoModelForSequenceClassification.from_pretrained(resolve_model(model).source,
                                                                               num_labels=len(KEYWORDS)))


def run_suite(out: Path, s: Settings) -> dict[str, Any]:
    from tailorlm.cli import _quiet_libraries

    _quiet_libraries()
    work = Path(tempfile.mkdtemp(prefix="tailor-bench-cpu-"))
    # a cold tokenisation cache: each suite's first tailorlm row on a dataset tokenises, later rows may hit
    os.environ["TAILORLM_TOKENIZED_CACHE"] = str(work / "tokenized")
    print(f"cpu suite: {s}\nwork folder: {work}", flush=True)
    started = time.perf_counter()
    peaks = [matmul_peak_flops(s.matmul_n, s.matmul_iters)]
    cpu_peaks = [matmul_peak_flops(s.matmul_n, s.matmul_iters, clock=time.process_time)]
    print(f"fp32 matmul peak ({torch.get_num_threads()} threads): {peaks[0] / 1e9:.1f} GFLOP/s wall, "
          f"{cpu_peaks[0] / 1e9:.1f} GFLOP per CPU second", flush=True)
    longtail = write_split(*longtail_frames(s.n_train, s.n_test, s.seed), work / "longtail")
    demo = write_split(*demo_frames(s.n_train, s.n_test, s.seed, work), work / "demo")
    rows = classification_rows("longtail", *longtail, s, work, s.ablations)
    rows += classification_rows("demo", *demo, s, work, ablations=False)
    if s.packing:
        rows += packing_rows(s, work)
    peaks.append(matmul_peak_flops(s.matmul_n, s.matmul_iters))
    cpu_peaks.append(matmul_peak_flops(s.matmul_n, s.matmul_iters, clock=time.process_time))
    peak, cpu_peak = max(peaks), max(cpu_peaks)
    parameters = classifier_matmul_parameters(s.model)
    classified = [r for r in rows if r.dataset != "longtail-gen"]
    mfus = {f"{r.dataset}/{r.name}": round(mfu(r.tokens_per_s, parameters, peak), 4) for r in classified}
    cpu_mfus = {f"{r.dataset}/{r.name}": round(mfu(r.extra.get("cpu_tokens_per_s") or 0.0, parameters, cpu_peak), 4)
                for r in classified}
    references = {"longtail": best_trainer(rows, "longtail"), "demo": best_trainer(rows, "demo"),
                  "longtail-gen": next((r for r in rows if r.dataset == "longtail-gen"), rows[0])}
    cpu_refs = {d: best_trainer(rows, d, cpu=True) for d in ("longtail", "demo")}
    table = print_table(rows, references, {
        "MFU": lambda r: mfu_cell(mfus, r), "train CPU s": lambda r: _num(r.extra.get("train_cpu_s"), "{:.1f}"),
        "samples per CPU s": lambda r: _num(r.extra.get("cpu_samples_per_s"), "{:.2f}"),
        "× per CPU s vs ref": lambda r: cpu_ratio_cell(cpu_refs, r), "MFU (CPU time)": lambda r: mfu_cell(cpu_mfus, r),
        "tokenize s (cache)": tokenize_cell})
    summary = headline(rows, mfus, cpu_mfus)
    print(summary["text"], flush=True)
    write_json(out, "cpu", rows, references, table, {
        "settings": s.__dict__, "headline": summary, "suite_wall_s": round(time.perf_counter() - started, 1),
        "matmul_peak_flops": peak, "matmul_peaks_before_after": peaks, "matmul_parameters": parameters,
        "matmul_peak_flops_per_cpu_s": cpu_peak, "matmul_cpu_peaks_before_after": cpu_peaks,
        "mfu": mfus, "mfu_cpu_time": cpu_mfus,
        "reference_rule": "each dataset's ratios are against its fastest Trainer row"})
    return summary


def row_cpu_cell(row: Row) -> str:
    """Process CPU seconds of the whole row (``common.measure``): the load-robust cost of a row."""
    value = row.extra.get("row_cpu_s")
    return "–" if value is None else f"{value:.1f}"


def mfu_cell(mfus: dict[str, float], row: Row) -> str:
    value = mfus.get(f"{row.dataset}/{row.name}")
    return "–" if value is None else f"{value:.1%}"


def headline(rows: list[Row], mfus: dict[str, float] | None = None,
             cpu_mfus: dict[str, float] | None = None) -> dict[str, Any]:
    """The acceptance figures per classification dataset: tailorlm's samples/s against the best Trainer
    configuration (per wall second and per CPU second of training) and against the docs-example Trainer, the
    accuracy gap to the best Trainer, and MFU."""
    mfus, cpu_mfus = mfus or {}, cpu_mfus or {}
    result: dict[str, Any] = {}
    lines = []
    for dataset in ("longtail", "demo"):
        best, best_cpu = best_trainer(rows, dataset), best_trainer(rows, dataset, cpu=True)
        plain = next(r for r in rows if r.dataset == dataset and r.name == "transformers.Trainer")
        tailor = next(r for r in rows if r.dataset == dataset and r.name == "tailorlm (defaults)")
        speed = tailor.samples_per_s / best.samples_per_s
        cpu_speed = ((tailor.extra.get("cpu_samples_per_s") or 0.0) / best_cpu.extra["cpu_samples_per_s"]
                     if best_cpu.extra.get("cpu_samples_per_s") else None)
        gap = 100 * ((tailor.metric or 0) - (best.metric or 0))
        names = (plain, best, tailor)
        result[dataset] = {"best_trainer": best.name, "samples_per_s_ratio": round(speed, 3),
                           "samples_per_s_ratio_vs_docs_trainer": round(tailor.samples_per_s / plain.samples_per_s, 3),
                           "best_trainer_per_cpu_s": best_cpu.name,
                           "samples_per_cpu_s_ratio": None if cpu_speed is None else round(cpu_speed, 3),
                           "accuracy_points": round(gap, 2),
                           "mfu": {r.name: mfus.get(f"{dataset}/{r.name}") for r in names},
                           "mfu_cpu_time": {r.name: cpu_mfus.get(f"{dataset}/{r.name}") for r in names}}
        judged = cpu_speed if cpu_speed is not None else speed
        verdict = "faster" if judged > 1.05 else "slower" if judged < 0.95 else "no faster (within 5%)"
        lines.append(f"{dataset}: tailorlm/best Trainer samples/s {speed:.2f}x per wall second ({best.name}), "
                     + (f"{cpu_speed:.2f}x per CPU second ({best_cpu.name}): {verdict}; " if cpu_speed else "")
                     + f"vs the docs-example Trainer {tailor.samples_per_s / plain.samples_per_s:.2f}x; "
                     f"accuracy {gap:+.2f} points")
    result["text"] = "\n".join(lines)
    return result
