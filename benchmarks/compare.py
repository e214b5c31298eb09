"""tailorlm against plain transformers' Trainer: same data, model, epochs, learning rate and seed, one process.

Two Trainer configurations run: ``transformers.Trainer`` as its text-classification example sets it up
(truncation at the tokenizer's limit, DataCollatorWithPadding, random batches), and ``Trainer (careful)``, what a
careful user runs: length-grouped batches (``train_sampling_strategy="group_by_length"``, transformers 5's name for
``group_by_length=True``) and truncation at the same ``max_length`` tailorlm uses. Both use the same precision and
evaluate on the test split at the end. The tailorlm side is a ten-line recipe through the real pipeline (data
preparation, baselines, training, evaluation, report), so its wall time includes everything a user waits for.
Ratios are against the faster of the two Trainer configurations; MFU is 6 × the model's matmul parameters × real
tokens/s ÷ a matmul peak measured in this process (``benchmarks/suites/common.py``).

    python -m benchmarks.compare --data ../shared/data/imdb.csv --epochs 1
    python -m benchmarks.compare --train a.csv --test b.csv --epochs 3 --learning-rate 5e-5

Prints a table and writes JSON (``--out``). Every figure is measured in this run; nothing is copied in.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmarks.suites.common import PeakMemory, TrainClock, matmul_parameters, matmul_peak_flops, mfu

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def split_csv(data: Path, test_share: float, seed: int, out: Path, max_rows: int | None) -> tuple[Path, Path]:
    """One labelled CSV → train.csv / test.csv, stratified and deterministic."""
    from sklearn.model_selection import train_test_split

    frame = pd.read_csv(data, dtype=str, keep_default_na=False)
    if max_rows:
        frame = frame.sample(n=min(max_rows, len(frame)), random_state=seed)
    train, test = train_test_split(frame, test_size=test_share, stratify=frame["label"], random_state=seed)
    out.mkdir(parents=True, exist_ok=True)
    train.to_csv(out / "train.csv", index=False)
    test.to_csv(out / "test.csv", index=False)
    return out / "train.csv", out / "test.csv"


def plain_trainer(train_csv: Path, test_csv: Path, model_path: str, args: argparse.Namespace, out: Path,
                  careful: bool = False) -> dict:
    """transformers' Trainer as its documentation's text-classification example sets it up; ``careful`` adds
    length-grouped batches and truncation at tailorlm's max_length (``--max-length``, else its p99 rule)."""
    from datasets import Dataset
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    started = time.perf_counter()
    train = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
    test = pd.read_csv(test_csv, dtype=str, keep_default_na=False)
    labels = sorted(set(train["label"]))
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    max_length = args.max_length or None
    if careful and not max_length:
        from benchmarks.suites.cpu import p99_max_length

        max_length = p99_max_length(tokenizer, list(train["text"]))

    def encode(frame: pd.DataFrame) -> Dataset:
        encoded = tokenizer(list(frame["text"]), truncation=True, max_length=max_length)
        return Dataset.from_dict(dict(encoded) | {"labels": [label2id[x] for x in frame["label"]]})

    train_ds, test_ds = encode(train), encode(test)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    training_args = TrainingArguments(
        output_dir=str(out / "trainer"),
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        seed=args.seed,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        logging_strategy="no",
        use_cpu=not torch.cuda.is_available(),
        bf16=args.bf16,
        train_sampling_strategy="group_by_length" if careful else "random",
    )
    clock = TrainClock()
    trainer = Trainer(
        model=model, args=training_args, train_dataset=train_ds, data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer, callbacks=[clock.callback()],
    )
    train_started = time.perf_counter()
    result = trainer.train()
    train_s = time.perf_counter() - train_started
    predictions = trainer.predict(test_ds)
    y_pred = predictions.predictions.argmax(axis=1)
    wall = time.perf_counter() - started
    real_tokens = sum(len(ids) for ids in train_ds["input_ids"]) * args.epochs
    return {
        "accuracy": float(accuracy_score(test_ds["labels"], y_pred)),
        "f1_macro": float(f1_score(test_ds["labels"], y_pred, average="macro")),
        "wall_s": round(wall, 2),
        "train_s": round(train_s, 2),
        "samples_per_s": round(len(train_ds) * args.epochs / train_s, 2),
        "real_tokens_per_s": round(real_tokens / train_s, 1),
        "trainer_reported_samples_per_s": result.metrics.get("train_samples_per_second"),
        "train_rows": len(train_ds),
        "train_cpu_s": round(clock.cpu_s, 2),
        "samples_per_cpu_s": round(len(train_ds) * args.epochs / clock.cpu_s, 3) if clock.cpu_s else None,
        "max_length": max_length or tokenizer.model_max_length,
        "group_by_length": careful,
        "matmul_parameters": matmul_parameters(model),
    }


def tailorlm_run(train_csv: Path, test_csv: Path, model: str, args: argparse.Namespace, out: Path) -> dict:
    """The ten-line recipe a user would write, through the whole tailorlm pipeline."""
    from rich.console import Console

    from tailorlm.recipe import recipe_from_dict
    from tailorlm.run import run

    raw: dict[str, Any] = {
        "task": "classification",
        "output_dir": str(out / "tailorlm"),
        "model": {"name": model},
        "data": {"train": str(train_csv), "test": str(test_csv)},
        "training": {
            "warmup": 0.06, "epochs": args.epochs, "learning_rate": args.learning_rate, "batch_size": args.batch_size,
                     "seed": args.seed},
    }
    if args.max_length:
        raw["training"]["max_length"] = args.max_length
    for item in args.set or []:
        from tailorlm.recipe import apply_overrides

        apply_overrides(raw, [item])
    recipe = recipe_from_dict(raw, "benchmark")
    started = time.perf_counter()
    clock = TrainClock()
    metrics = run(recipe, Console(stderr=True, quiet=True), extra_callbacks=[clock.callback()])
    wall = time.perf_counter() - started
    train = metrics["train"]
    return {
        "accuracy": metrics["tuned"]["accuracy"],
        "f1_macro": metrics["tuned"]["f1_macro"],
        "wall_s": round(wall, 2),
        "train_s": train["runtime_s"],
        "samples_per_s": train["samples_per_s"],
        "real_tokens_per_s": train["tokens_per_s"],
        "train_rows": metrics["data"]["train"],
        "train_cpu_s": round(clock.cpu_s, 2),
        "samples_per_cpu_s": round(metrics["data"]["train"] * args.epochs / clock.cpu_s, 3) if clock.cpu_s else None,
        "timings_s": metrics["timings_s"],
        "baselines_f1_macro": {k: v.get("f1_macro") for k, v in (metrics.get("baseline") or {}).items() if v},
        "max_length": metrics["model"]["max_length"],
    }


def measure(name: str, fn: Any) -> dict:
    gc.collect()
    torch.manual_seed(0)
    with PeakMemory() as rss:  # CPU: RSS sampled from /proc
        result = fn()
    result["peak_rss_mib"] = rss.mib
    print(f"[{name}] {json.dumps(result)}", flush=True)
    return result


TRAINERS = ("transformers.Trainer", "Trainer (careful)")


def best_trainer(results: dict[str, dict]) -> str:
    """The faster Trainer configuration (training samples/s): the bar tailorlm is measured against."""
    return max((k for k in TRAINERS if k in results), key=lambda k: results[k].get("samples_per_s") or 0.0)


def add_mfu(results: dict[str, dict], peak: float) -> None:
    """MFU of every side from its real tokens/s, the model's matmul parameters and the measured matmul peak."""
    parameters = next(r["matmul_parameters"] for r in results.values() if r.get("matmul_parameters"))
    for result in results.values():
        result["mfu"] = round(mfu(result.get("real_tokens_per_s") or 0.0, parameters, peak), 4)


def print_table(results: dict[str, dict]) -> None:
    best = best_trainer(results)
    tailor = results["tailorlm"]
    names = [k for k in TRAINERS if k in results]
    rows = [("accuracy", "{:.4f}"), ("f1_macro", "{:.4f}"), ("wall_s", "{:.1f}"), ("train_s", "{:.1f}"),
            ("samples_per_s", "{:.2f}"), ("real_tokens_per_s", "{:.0f}"), ("train_cpu_s", "{:.1f}"),
            ("samples_per_cpu_s", "{:.2f}"), ("mfu", "{:.1%}"),
            ("peak_rss_mib", "{:.0f}"), ("max_length", "{}")]
    print(f"\n{'metric':<20}" + "".join(f"{n[:22]:>24}" for n in names) + f"{'tailorlm':>14}{'tailorlm/best':>16}")
    for key, fmt in rows:
        b, a = tailor.get(key), results[best].get(key)
        ratio = f"{b / a:.3f}" if a and key not in ("accuracy", "f1_macro", "max_length") else "–"
        cells = "".join(f"{fmt.format(results[n].get(key)):>24}" for n in names)
        print(f"{key:<20}{cells}{fmt.format(b):>14}{ratio:>16}")
    print(f"best Trainer: {best}; accuracy difference (tailorlm − best Trainer): "
          f"{100 * (tailor['accuracy'] - results[best]['accuracy']):+.2f} points")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="one labelled CSV (text,label), split 80/20 here")
    parser.add_argument("--train", type=Path)
    parser.add_argument("--test", type=Path)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=0, help="0: tokenizer limit for Trainer, auto for tailorlm")
    parser.add_argument("--max-rows", type=int, default=0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--order", choices=["trainer-first", "tailorlm-first"], default="trainer-first")
    parser.add_argument("--set", action="append", help="extra tailorlm recipe override")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/compare.json"))
    args = parser.parse_args(argv)

    from tailorlm.cli import _quiet_libraries
    from tailorlm.models.registry import resolve_model

    _quiet_libraries()
    work = Path(tempfile.mkdtemp(prefix="tailor-bench-"))
    if args.data:
        if not args.data.exists():
            raise SystemExit(f"{args.data}: not found (the shared datasets live in ../shared/data)")
        train_csv, test_csv = split_csv(args.data, 0.2, args.seed, work / "data", args.max_rows or None)
    else:
        train_csv, test_csv = args.train, args.test
    model_path = resolve_model(args.model).source
    runs = {
        "transformers.Trainer": lambda: plain_trainer(train_csv, test_csv, model_path, args, work),
        "Trainer (careful)": lambda: plain_trainer(train_csv, test_csv, model_path, args, work / "careful", True),
        "tailorlm": lambda: tailorlm_run(train_csv, test_csv, args.model, args, work),
    }
    order = list(runs) if args.order == "trainer-first" else list(reversed(runs))
    peaks = [matmul_peak_flops(1024, 20)]
    results = {name: measure(name, runs[name]) for name in order}
    peaks.append(matmul_peak_flops(1024, 20))
    add_mfu(results, max(peaks))
    print_table(results)
    best = best_trainer(results)
    payload = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "args": {k: str(v) for k, v in vars(args).items()},
        "results": results,
        "matmul_peak_flops": max(peaks),
        "matmul_peaks_before_after": peaks,
        "best_trainer": best,
        "ratios": {  # tailorlm / the faster Trainer configuration
            k: results["tailorlm"][k] / results[best][k]
            for k in ("wall_s", "train_s", "samples_per_s", "real_tokens_per_s", "train_cpu_s", "samples_per_cpu_s",
                      "peak_rss_mib")
            if results[best].get(k)
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")
    return payload


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
