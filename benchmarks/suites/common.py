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
        started, cpu_started = time.perf_counter(), time.process_time()
        row = fn()
        row.wall_s = round(time.perf_counter() - started, 2)
        # CPU seconds of the whole row (load, tokenise, train, evaluate): on a machine shared with other jobs this
        # moves far less than wall time, which counts the time the process waited for a core
        row.extra["row_cpu_s"] = round(time.process_time() - cpu_started, 2)
    cpu = row.extra.get("train_cpu_s")
    if cpu:
        row.extra["cpu_samples_per_s"] = round(row.samples / cpu, 3)
        row.extra["cpu_tokens_per_s"] = round(row.real_tokens / cpu, 1)
    row.peak_mib = memory.mib
    print(f"  {row.dataset:<12} {row.name:<34} {row.train_s:7.1f} s  {row.samples_per_s:7.2f} samples/s  "
          f"{row.tokens_per_s:8.0f} tok/s  {row.metric_name} {fmt(row.metric)}  peak {row.peak_mib:,.0f} MiB",
          flush=True)
    return row


def matmul_peak_flops(n: int, iters: int, dtype: torch.dtype = torch.float32,
                      clock: Callable[[], float] = time.perf_counter) -> float:
    """Achievable matmul FLOP/s here and now: a square ``n``-matmul in a loop after a warm-up, on the GPU when there is
    one, else on the CPU with torch's current thread count (what the training rows use). Measured in the same run as
    the rows, under the same load, so that MFU says how much of what this machine can do a row used.
    ``clock=time.process_time`` gives FLOPs per CPU second: on a CPU shared with other jobs, the peak per second the
    process actually ran (compare it with ``TrainClock``'s CPU seconds)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    started = clock()
    for _ in range(iters):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * iters / (clock() - started)


class TrainClock:
    """A Trainer callback that records the process CPU seconds of training alone (``on_train_begin`` to
    ``on_train_end``). With one torch thread, CPU seconds are compute: unlike wall time they do not grow when other
    jobs take the cores, so throughput per CPU second compares rows measured under different load."""

    def __init__(self) -> None:
        self.started = 0.0
        self.cpu_s = 0.0

    def callback(self) -> Any:
        from transformers import TrainerCallback

        clock = self

        class _Clock(TrainerCallback):
            def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
                clock.started = time.process_time()

            def on_train_end(self, *args: Any, **kwargs: Any) -> None:
                clock.cpu_s = time.process_time() - clock.started

        return _Clock()


def matmul_parameters(model: torch.nn.Module) -> int:
    """Weights that take part in a matmul for every token: those of ``nn.Linear`` layers (a tied LM head counts, being
    a Linear; an input embedding does not: a lookup costs no FLOPs). MiniLM has 22.7 M parameters, of which 11.7 M
    are its embedding table: counting them would double its MFU."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def mfu(tokens_per_s: float, parameters: int, peak_flops: float) -> float:
    """Model FLOPs utilisation: 6 × matmul parameters × real (non-padding) tokens/s ÷ the measured matmul peak.

    6 = forward (2) + backward (4) FLOPs per parameter per token; attention's sequence-length term is left out
    (small at these lengths), and padding tokens are not useful work, so a row that pads wastes MFU."""
    return 6 * parameters * tokens_per_s / peak_flops if peak_flops else 0.0


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
