"""What every suite shares: realistic length mixes, peak-memory measurement, result rows, the table, the JSON.

Each row measures one training run in this process. Ratios between rows of one run are what to read: wall-clock
figures move with the machine's load, but both sides of a ratio see the same machine within minutes.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RUN_DATE = "2026-11-23"


# ---------------------------------------------------------------------------------------------- lengths and text


def lognormal_lengths(n: int, log_mean: float, log_sd: float, low: int, high: int, seed: int) -> list[int]:
    """Token lengths with a long right tail, like real user text (most short, a few very long)."""
    rng = np.random.default_rng(seed)
    return [int(x) for x in np.clip(np.round(rng.lognormal(log_mean, log_sd, n)), low, high)]


_FILLER_TEXT = (
    "the a of to and in it is was for on that with as at this we my our by from they have be not are or an "
    "but so if had has would could should there their about after before when then than which what who over "
    "again still just also very more most some any each other into out up down off new old last next first"
)
FILLER = _FILLER_TEXT.split()


def keyword_text(label_words: list[str], n_words: int, rng: random.Random) -> str:
    """Filler words with the label's keywords every few words: learnable in one epoch, at any length."""
    words = []
    for i in range(n_words):
        words.append(rng.choice(label_words) if i % 6 == 0 else rng.choice(FILLER))
    return " ".join(words)


# ---------------------------------------------------------------------------------------------- measuring


class PeakMemory:
    """Peak memory of a block: CUDA ``max_memory_allocated`` (reset on entry) or RSS sampled from /proc on CPU."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self.cuda = torch.cuda.is_available()

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            return self
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
            return
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return round(self.peak / 2**20, 1)


@dataclass
class Row:
    """One measured training run."""

    name: str
    side: str  # "Trainer" or "tailorlm"
    dataset: str
    train_s: float
    samples: int  # training examples seen (rows × epochs)
    real_tokens: int  # non-padding tokens seen
    metric_name: str
    metric: float | None
    peak_mib: float = 0.0
    wall_s: float = 0.0
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.train_s if self.train_s else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.real_tokens / self.train_s if self.train_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"samples_per_s": round(self.samples_per_s, 3),
                               "real_tokens_per_s": round(self.tokens_per_s, 1)}


def measure(fn: Callable[[], Row]) -> Row:
    """Run one row with its peak memory; seeds reset so that every row starts from the same state."""
    torch.manual_seed(0)
    with PeakMemory() as memory:
        started = time.perf_counter()
        row = fn()
        row.wall_s = round(time.perf_counter() - started, 2)
    row.peak_mib = memory.mib
    print(f"  {row.dataset:<12} {row.name:<34} {row.train_s:7.1f} s  {row.samples_per_s:7.2f} samples/s  "
          f"{row.tokens_per_s:8.0f} tok/s  {row.metric_name} {fmt(row.metric)}  peak {row.peak_mib:,.0f} MiB",
          flush=True)
    return row


def fmt(value: float | None, pattern: str = "{:.4f}") -> str:
    return "–" if value is None else pattern.format(value)


# ---------------------------------------------------------------------------------------------- reporting


def ratio_to(rows: list[Row], reference: Row, row: Row) -> dict[str, float | None]:
    """tailorlm/Trainer (or row/reference): samples/s, tokens/s, memory, and the metric difference."""
    def div(a: float, b: float) -> float | None:
        return round(a / b, 3) if b else None

    diff = None if row.metric is None or reference.metric is None else round(row.metric - reference.metric, 4)
    return {"samples_per_s": div(row.samples_per_s, reference.samples_per_s),
            "real_tokens_per_s": div(row.tokens_per_s, reference.tokens_per_s),
            "peak_memory": div(row.peak_mib, reference.peak_mib), "metric_diff": diff}


def print_table(rows: list[Row], references: dict[str, Row], extra_columns: dict[str, Callable[[Row], str]]
                | None = None) -> str:
    """A Markdown table (pasteable into RESULTS.md); ratios against each dataset's reference row."""
    extra_columns = extra_columns or {}
    head = ["dataset", "row", "train s", "samples/s", "real tok/s", "peak MiB", "metric", "× samples/s vs ref",
            *extra_columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        ref = references.get(row.dataset)
        ratio = ratio_to(rows, ref, row) if ref else {}
        cells = [row.dataset, row.name, f"{row.train_s:.1f}", f"{row.samples_per_s:.2f}", f"{row.tokens_per_s:.0f}",
                 f"{row.peak_mib:,.0f}", f"{row.metric_name} {fmt(row.metric)}",
                 fmt(ratio.get("samples_per_s"), "{:.2f}") if ref is not row else "1.00 (ref)",
                 *(fn(row) for fn in extra_columns.values())]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print("\n" + table + "\n", flush=True)
    return table


def machine() -> dict[str, Any]:
    import transformers

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def write_json(out: Path, suite: str, rows: list[Row], references: dict[str, Row], table: str,
               extra: dict[str, Any] | None = None) -> None:
    payload = {
        "suite": suite,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "rows": [r.as_dict() for r in rows],
        "ratios_vs_reference": {f"{r.dataset}/{r.name}": ratio_to(rows, references[r.dataset], r)
                                for r in rows if r.dataset in references},
        "table_markdown": table,
        **(extra or {}),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {out}", flush=True)
