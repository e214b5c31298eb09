"""`tailor tune --workers N`: N processes on this machine, each running trials of the one study.

Processes, not threads: a trial is a whole training run holding the GIL between kernels, and torch's intra-op
threads scale poorly on the small matrices of a fine-tune on a CPU, so N processes with ``cores // N`` threads
each keep the cores busier than one process with all of them. Each worker is ``python -m tailorlm tune-worker
SPEC`` (a hidden command, tune/worker.py) with ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set in its environment,
so torch starts with its share, and with one GPU of several in ``CUDA_VISIBLE_DEVICES``. The workers meet only in
the study's storage; the parent keeps ``tune.lock``, so a second, independent `tailor tune` on the folder is still
refused, and waits. Ctrl-C reaches the workers (same process group; SIGTERM to the parent is passed on): each
re-queues its running trial, as a single process does.

This module only starts, waits for and stops processes; what a worker does is tune/worker.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from tailorlm.recipe import Recipe

#: seconds the workers get to stop on their own after an interrupt, then after SIGINT, before SIGKILL
GRACE_S = (5.0, 60.0)


@dataclass(frozen=True)
class WorkerPlan:
    """What every worker is told: how many run, the study's target, the grid size, the metric and direction."""

    count: int
    target: int
    grid: int | None
    metric: str
    direction: str


@dataclass(frozen=True)
class WorkerEnd:
    """How a worker ended: its exit code and, for a user-fixable error, the message and its class name."""

    index: int
    code: int
    error: str | None = None
    kind: str | None = None


def cpu_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def threads_per_worker(count: int) -> int:
    return max(1, cpu_cores() // count)


def gpu_ids() -> list[str]:
    """The GPUs workers are spread over: those CUDA_VISIBLE_DEVICES lists, else every device torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in (part.strip() for part in listed.split(",")) if g]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def worker_env(index: int, threads: int, gpus: list[str]) -> dict[str, str]:
    """The worker's environment: its thread share (read by torch at start-up) and its GPU."""
    env = dict(os.environ) | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                              "TOKENIZERS_PARALLELISM": "false", "TAILORLM_TUNE_WORKER": str(index)}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    return env


def run_workers(recipe: Recipe, out: Path, plan: WorkerPlan, console: Console) -> list[WorkerEnd]:
    """Start ``plan.count`` workers on the study, wait for all of them, and say how each ended."""
    threads, gpus = threads_per_worker(plan.count), gpu_ids()
    console.print(f"{plan.count} workers, {threads} torch thread{'s' if threads > 1 else ''} each"
                  + (f", GPUs {', '.join(gpus)}" if gpus else ""))
    with tempfile.TemporaryDirectory(prefix="tailor-tune-") as tmp:
        processes = []
        for index in range(plan.count):
            spec = Path(tmp) / f"worker-{index}.json"
            spec.write_text(json.dumps({
                "recipe": recipe.model_dump(mode="json"), "out": str(out), "plan": asdict(plan), "index": index,
                "threads": threads, "result": str(Path(tmp) / f"result-{index}.json"),
            }), encoding="utf-8")
            command = [sys.executable, "-m", "tailorlm", "tune-worker", str(spec)]
            processes.append(subprocess.Popen(command, env=worker_env(index, threads, gpus)))
        try:
            codes = [process.wait() for process in processes]
        except KeyboardInterrupt:
            stop(processes)
            raise
        return [_ended(index, code, Path(tmp) / f"result-{index}.json") for index, code in enumerate(codes)]


def _ended(index: int, code: int, result: Path) -> WorkerEnd:
    try:
        said = json.loads(result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        said = {}
    return WorkerEnd(index, code, said.get("error"), said.get("kind"))


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """After an interrupt: give the workers time to re-queue their trials (Ctrl-C reached them too), then
    interrupt those still running (the parent alone got SIGTERM), and kill what is left."""
    for grace, send in zip(GRACE_S, (signal.SIGINT, None), strict=True):
        deadline = time.monotonic() + grace
        while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        for process in processes:
            if process.poll() is None and send is not None:
                process.send_signal(send)
            elif process.poll() is None:
                process.kill()
    for process in processes:
        process.wait()
