"""One worker of `tailor tune --workers N` (``python -m tailorlm tune-worker SPEC``, started by tune/spawn.py).

It opens the study its parent created, as a ``shared`` process (per-process sampler seed, TPE's constant liar,
the trial heartbeat), and runs ``study.optimize`` one trial at a time under the machine-wide slot lock until the
study's finished plus running trials reach the target (tune/study.py ``optimize``). It neither recovers trials
(the parent did, before starting it, and does again after) nor writes the summary outputs (the parent writes
them once every worker has stopped). A user-fixable error is written to the spec's result file, so the parent
can stop with that one line instead of N copies of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna

from tailorlm.errors import UserError
from tailorlm.recipe import recipe_from_dict
from tailorlm.terminal import LineConsole
from tailorlm.tune.objective import Objective
from tailorlm.tune.storage import SlotGate, slot_lock_path, storage_url
from tailorlm.tune.study import open_study, optimize


def run_worker(spec_path: Path) -> int:
    """Run the worker the spec describes; the exit code (0, or the error's) for the parent."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    import torch

    torch.set_num_threads(int(spec["threads"]))  # OMP_NUM_THREADS is set too: this also holds if torch ignored it
    plan, out = spec["plan"], Path(spec["out"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # as in the parent: its lines, not Optuna's per trial
    console = LineConsole(stderr=True)
    try:
        recipe = recipe_from_dict(spec["recipe"], f"tune worker {spec['index']}")
        study = open_study(recipe, out, plan["metric"], plan["direction"], shared=True, console=console)
        objective = Objective(recipe, out, plan["metric"], plan["direction"] == "maximize", console)
        gate = SlotGate(slot_lock_path(storage_url(recipe, out), recipe.search.study))
        optimize(study, objective, plan["target"], console, plan["grid"], gate=gate)
    except UserError as exc:
        Path(spec["result"]).write_text(json.dumps({"error": str(exc), "kind": type(exc).__name__}), encoding="utf-8")
        return exc.exit_code
    return 0
