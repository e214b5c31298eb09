"""Which task each training batch comes from: every batch holds one task's rows; an epoch is a step budget.

- ``proportional``: task t with probability n_t / sum(n) (MT-DNN);
- ``temperature``: p_t ∝ n_t^(1/T) (T = 1 is proportional, large T uniform; jiant, tasknet);
- ``round_robin``: the tasks in turn, whatever their sizes;
- ``annealed``: temperature sampling whose T moves linearly from 1 to ``anneal_to`` over training, so large
  tasks lead first and small ones catch up (Stickland & Murray 2019 anneal the exponent the other way round;
  both are the same family).

Within a task, rows are drawn without replacement in a shuffled order, reshuffled at each full pass (seeded by
(seed, task, pass)), so every row is seen before any repeats. The schedule is a pure function of the seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

METHODS = ("proportional", "temperature", "round_robin", "annealed")


def temperature_probabilities(sizes: Sequence[int], temperature: float) -> np.ndarray:
    """p_t ∝ n_t^(1/T)."""
    weights = np.asarray(sizes, dtype=np.float64) ** (1.0 / temperature)
    return weights / weights.sum()


@dataclass(frozen=True)
class SamplingPlan:
    """How the tasks (``sizes``: training rows of each) share ``steps`` batches."""

    method: str
    sizes: tuple[int, ...]
    steps: int
    temperature: float = 2.0
    anneal_to: float = 5.0

    def probabilities(self, step: int = 0) -> np.ndarray:
        """The chance of each task at ``step`` (round-robin: its long-run share)."""
        if self.method == "proportional":
            return temperature_probabilities(self.sizes, 1.0)
        if self.method == "temperature":
            return temperature_probabilities(self.sizes, self.temperature)
        if self.method == "annealed":
            progress = step / max(1, self.steps - 1)
            return temperature_probabilities(self.sizes, 1.0 + (self.anneal_to - 1.0) * progress)
        if self.method == "round_robin":
            return np.full(len(self.sizes), 1.0 / len(self.sizes))
        raise ValueError(f"unknown sampling method '{self.method}'; use one of {', '.join(METHODS)}")

    def schedule(self, seed: int) -> list[int]:
        """The task index of every step, in order."""
        if self.method == "round_robin":
            return [step % len(self.sizes) for step in range(self.steps)]
        rng = np.random.default_rng([seed, 1515])
        if self.method != "annealed":
            return rng.choice(len(self.sizes), size=self.steps, p=self.probabilities()).tolist()
        return [int(rng.choice(len(self.sizes), p=self.probabilities(step))) for step in range(self.steps)]

    def record(self, seed: int) -> dict[str, object]:
        """What metrics.json keeps: the method, its settings, the planned and the realised shares."""
        schedule = self.schedule(seed)
        counts = np.bincount(schedule, minlength=len(self.sizes))
        out: dict[str, object] = {"method": self.method, "steps": self.steps, "sizes": list(self.sizes),
                                  "probabilities": [round(float(p), 6) for p in self.probabilities()],
                                  "batches": counts.tolist()}
        if self.method in ("temperature", "annealed"):
            out["temperature"] = self.temperature if self.method == "temperature" else [1.0, self.anneal_to]
        if self.method == "annealed":
            out["probabilities_end"] = [round(float(p), 6) for p in self.probabilities(self.steps - 1)]
        return out


class TaskRows:
    """One task's row indices, drawn without replacement; reshuffled after each full pass."""

    def __init__(self, size: int, batch_size: int, seed: int, task_index: int) -> None:
        self.size, self.batch_size, self.seed, self.task_index = size, batch_size, seed, task_index
        self.passes = 0
        self.order = self._shuffled()
        self.position = 0

    def _shuffled(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.task_index, self.passes]).permutation(self.size)

    def next_batch(self) -> list[int]:
        rows: list[int] = []
        while len(rows) < min(self.batch_size, self.size):
            if self.position == self.size:
                self.passes += 1
                self.order, self.position = self._shuffled(), 0
            take = min(self.batch_size - len(rows), self.size - self.position)
            rows += self.order[self.position : self.position + take].tolist()
            self.position += take
        return rows


class TaskBatchSampler:
    """A torch batch sampler: yields ``[(task, row), ...]`` lists, one task per batch, ``plan.steps`` of them.

    ``all_tasks_each_step`` (PCGrad) yields one batch of every task per step instead.
    """

    def __init__(self, plan: SamplingPlan, batch_size: int, seed: int, all_tasks_each_step: bool = False) -> None:
        self.plan, self.batch_size, self.seed = plan, batch_size, seed
        self.all_tasks_each_step = all_tasks_each_step
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.plan.steps

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        seed = self.seed + 7919 * self.epoch
        streams = [TaskRows(n, self.batch_size, seed, t) for t, n in enumerate(self.plan.sizes)]
        if self.all_tasks_each_step:
            for _ in range(self.plan.steps):
                yield [(t, row) for t, stream in enumerate(streams) for row in stream.next_batch()]
            return
        for task in self.plan.schedule(seed):
            yield [(task, row) for row in streams[task].next_batch()]
