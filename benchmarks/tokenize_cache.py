"""What the tokenisation cache saves: encoding a realistic classification set cold, then again from the cache.

    python -m benchmarks.tokenize_cache --rows 20000

Generates the CPU suite's long-tailed texts (log-normal lengths, median ~55 words, tail past 300), prepares them
with tailorlm's real data stage, and times, in one process: the plain tokenizer call a Trainer script makes
(``tokenizer(texts, truncation=True)``), tailorlm's encode on a cold cache (a miss: it tokenises, measures the
p99 length, writes Arrow files) and on the warm cache (a hit: key hashing plus memory-mapped loading). A
second ``tailor run``, every ``tailor tune`` trial and every ``--seeds`` run after the first take the warm path.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def measure(rows: int, seed: int) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from benchmarks.suites.cpu import longtail_frames, write_split
    from tailorlm.data.token_cache import encode_with_cache
    from tailorlm.models.registry import resolve_model
    from tailorlm.recipe import recipe_from_dict
    from tailorlm.tasks import get_task

    work = Path(tempfile.mkdtemp(prefix="tailor-bench-cache-"))
    os.environ["TAILORLM_TOKENIZED_CACHE"] = str(work / "tokenized")
    train_csv, test_csv = write_split(*longtail_frames(rows, max(100, rows // 10), seed), work / "data")
    recipe = recipe_from_dict({"task": "classification", "model": {"name": "minilm"},
                               "data": {"train": str(train_csv), "test": str(test_csv)}}, "tokenize-cache bench")
    task = get_task("classification")
    data = task.prepare_data(recipe, None)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm").source)
    texts = list(data.train["text"]) + list(data.validation["text"])

    started = time.perf_counter()
    tokenizer(texts, truncation=True)
    plain_s = time.perf_counter() - started
    timings = {}
    for label in ("cold", "warm"):
        started = time.perf_counter()
        encoded, status = encode_with_cache(task, recipe, data, tokenizer)
        timings[label] = {"seconds": round(time.perf_counter() - started, 3), "cache": status}
    size = sum(f.stat().st_size for f in (work / "tokenized").rglob("*") if f.is_file())
    return {"rows_encoded": len(texts), "max_length": encoded.max_length,
            "plain_tokenizer_s": round(plain_s, 3), **timings,
            "warm_vs_cold": round(timings["cold"]["seconds"] / timings["warm"]["seconds"], 1),
            "cache_mib": round(size / 2**20, 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20000, help="training rows (validation is 10%% of them)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/tokenize-cache.json"))
    args = parser.parse_args(argv)
    result = measure(args.rows, args.seed) | {"date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count()}
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
