"""tailorlm against plain transformers' Trainer, and each of tailorlm's speed-ups on its own, in one process.

    python -m benchmarks.run --suite cpu                       # ~10 min on 2 cores: MiniLM, demo + long-tailed data
    python -m benchmarks.run --suite gpu                       # Qwen2-0.5B-shaped LM (full, LoRA), BERT-base classifier
    python -m benchmarks.run --suite gpu --dry-run             # tiny shapes, 2 steps per row, any device (a smoke test)
    python -m benchmarks.run --suite cpu --quick               # tiny CPU run of every row (a smoke test)
    python -m benchmarks.run --suite cpu --no-ablations --no-packing --rows 160 --threads 1   # Trainer rows vs tailorlm

Prints a Markdown table (wall time, samples/s, real non-padding tokens/s, peak memory, final metric, ratio to the
fastest Trainer row, MFU) and writes JSON to ``--out``. Every figure is measured in this run; nothing is copied in.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=["cpu", "gpu"], required=True)
    parser.add_argument("--out", type=Path, help="JSON results (default benchmarks/out/<suite>.json)")
    parser.add_argument("--dry-run", action="store_true", help="gpu: tiny shapes, 2 steps a row, on any device")
    parser.add_argument("--quick", action="store_true", help="cpu: a few rows of data, every row (smoke test)")
    parser.add_argument("--no-ablations", action="store_true", help="cpu: only Trainer vs tailorlm")
    parser.add_argument("--no-packing", action="store_true", help="cpu: leave out the decoder packing rows")
    parser.add_argument("--rows", type=int, default=240, help="cpu: training rows per dataset")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--compile", action="store_true", help="cpu: add the torch.compile row (slow on CPU)")
    parser.add_argument("--skip", action="append", default=[],
                        help="cpu: leave out ablation rows whose name contains this (repeatable), e.g. bf16")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    np.seterr(all="ignore")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.suite == "gpu":
        from benchmarks.suites.gpu import run_suite as run_gpu

        out = args.out or Path(f"benchmarks/out/gpu{'-dry-run' if args.dry_run else ''}.json")
        return run_gpu(out, args.dry_run)
    from benchmarks.suites.cpu import Settings
    from benchmarks.suites.cpu import run_suite as run_cpu

    settings = Settings(n_train=args.rows, n_test=args.rows // 2, seed=args.seed, ablations=not args.no_ablations,
                        gen_train=max(16, args.rows // 2), compile=args.compile, skip=tuple(args.skip),
                        packing=not args.no_packing)
    if args.quick:
        settings = Settings(n_train=16, n_test=8, batch_size=8, seed=args.seed, ablations=not args.no_ablations,
                            gen_train=16, compile=args.compile, skip=tuple(args.skip), packing=not args.no_packing,
                            matmul_n=256, matmul_iters=2)
    return run_cpu(args.out or Path(f"benchmarks/out/cpu{'-quick' if args.quick else ''}.json"), settings)


if __name__ == "__main__":
    main()
