"""Data parallel through the standard launchers: ``tailor run --num-processes N`` starts itself N times.

tailorlm has no engine of its own. With ``training.num_processes > 1`` (or an accelerate config file) the
``tailor run`` process re-launches the same command under

- ``accelerate launch --multi_gpu --num_processes N`` on CUDA GPUs (or ``--config_file FILE``: multi-GPU or
  multi-node data parallel; see examples/accelerate_multi_gpu.yaml), or
- ``torchrun --standalone --nproc_per_node N`` on CPU. (``accelerate launch --cpu`` starts multi-CPU jobs only
  through mpirun; torchrun needs nothing extra, and transformers' Trainer then joins a gloo process group.)

Every process prepares the same data (deterministic from the recipe) and trains its shard of each global batch;
Trainer averages the gradients (DDP). Only the main process writes the run directory: the workers' run directory
(:class:`WorkerRunDir`) sends its writes to a private scratch folder and they skip baselines, test evaluation and
saving. The global batch is ``training.batch_size × num_processes × gradient_accumulation``.

Engines that shard the weights across processes (FSDP, DeepSpeed ZeRO, Megatron-LM) are refused in one line
(:func:`check_unsharded`): rank 0 evaluates and saves alone after training, which needs every parameter whole in
its own memory, and accelerate enables FSDP only on GPUs, so no test here can exercise a sharded save.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tailorlm.errors import RecipeError
from tailorlm.rundir import RunDir

#: set in every launched process so that it never launches again
LAUNCHED_ENV = "TAILORLM_LAUNCHED"


def world_size() -> int:
    """Processes in this job (1 when not launched); read from the launcher's environment, no process group needed."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    """Rank 0 writes the run directory, prints progress and evaluates on the test split; the others only train."""
    return rank() == 0


def is_launched() -> bool:
    """True inside a process started by torchrun/accelerate (or by tailorlm's own relaunch)."""
    return LAUNCHED_ENV in os.environ or "LOCAL_RANK" in os.environ


#: accelerate's ``distributed_type`` values that shard parameters or optimiser state across processes
SHARDED_ENGINES = {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed", "MEGATRON_LM": "Megatron-LM"}
#: what ``accelerate launch --use_fsdp`` / ``--use_deepspeed`` set in the processes it starts
SHARDED_LAUNCH_VARIABLES = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DeepSpeed",
                            "ACCELERATE_USE_MEGATRON_LM": "Megatron-LM"}


def _unsupported(engine: str, source: str) -> RecipeError:
    return RecipeError(
        f"{source}: {engine} is not supported (untested: after training rank 0 evaluates and saves alone, which "
        "needs unsharded weights); use a data-parallel config (distributed_type: MULTI_GPU, "
        "examples/accelerate_multi_gpu.yaml) or training.num_processes"
    )


def _distributed_type(config: Path) -> str:
    """The ``distributed_type`` of an accelerate config file (YAML or JSON, as ``accelerate launch`` reads them)."""
    import yaml

    try:
        content = yaml.safe_load(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RecipeError(f"{config}: not a readable accelerate config ({type(exc).__name__}; "
                          "training.accelerate_config)") from None
    if not isinstance(content, dict):
        raise RecipeError(f"{config}: an accelerate config is a mapping of keys (write one with `accelerate config`;"
                          " training.accelerate_config)")
    return str(content.get("distributed_type") or "")


def check_unsharded(accelerate_config: str | None) -> None:
    """Refuse FSDP, DeepSpeed and Megatron-LM, from the config file or from a launcher's environment.

    Both sources matter: ``tailor run --accelerate-config FILE`` reads the file before launching, and a user who
    starts ``accelerate launch --use_fsdp -m tailorlm run ...`` directly reaches every rank with the variable set.
    """
    for variable, engine in SHARDED_LAUNCH_VARIABLES.items():
        if os.environ.get(variable, "").strip().lower() in {"1", "true", "yes"}:
            raise _unsupported(engine, f"{variable} is set by the launcher")
    if accelerate_config is None:
        return
    config = Path(accelerate_config)
    if not config.is_file():
        raise RecipeError(f"{config}: accelerate config file not found (training.accelerate_config)")
    engine = SHARDED_ENGINES.get(_distributed_type(config).upper())
    if engine is not None:
        raise _unsupported(engine, f"{config} (training.accelerate_config)")


def needs_launch(num_processes: int, accelerate_config: str | None) -> bool:
    """Whether this ``tailor run`` must start the launcher; every run passes here before training, launched or
    not, so a sharded engine is refused here before any work (:func:`check_unsharded`)."""
    check_unsharded(accelerate_config)
    return (num_processes > 1 or accelerate_config is not None) and not is_launched()


def launch_command(
    cli_args: list[str], num_processes: int, accelerate_config: str | None = None, gpu: bool | None = None
) -> list[str]:
    """The command that runs ``tailor <cli_args>`` N times: accelerate on GPUs or with a config file, else torchrun."""
    import torch

    gpu = torch.cuda.is_available() if gpu is None else gpu
    if accelerate_config is not None:
        check_unsharded(accelerate_config)
        head = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_config]
        if num_processes > 1:
            head += ["--num_processes", str(num_processes)]
        return [*head, "-m", "tailorlm", *cli_args]
    if gpu:
        available = torch.cuda.device_count()
        if num_processes > available:
            raise RecipeError(
                f"training.num_processes is {num_processes} but {available} GPU(s) are visible; use at most {available}"
            )
        return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                str(num_processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "-m", "tailorlm", *cli_args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(num_processes),
            "-m", "tailorlm", *cli_args]


def child_environment(num_processes: int) -> dict[str, str]:
    """Split the CPU threads between the processes (oversubscribed OpenMP threads make CPU DDP crawl)."""
    env = os.environ.copy()
    env[LAUNCHED_ENV] = "1"
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, num_processes))))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def relaunch(cli_args: list[str], num_processes: int, accelerate_config: str | None = None) -> int:
    """Run the launcher in the foreground and return its exit code (the main process's errors reach the user)."""
    command = launch_command(cli_args, num_processes, accelerate_config)
    return subprocess.run(command, env=child_environment(num_processes), check=False).returncode


class WorkerRunDir(RunDir):
    """A non-main rank's view of the run directory: same checkpoint folder, every other write kept private.

    Checkpoints stay shared because Trainer saves them on the main process and every rank reloads the best one at
    the end. Everything else a worker would write (data report, rejects, log history, status) goes to a scratch
    folder that is removed at exit, so the run directory holds exactly one copy of each file.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.scratch = Path(tempfile.mkdtemp(prefix=f"tailor-rank{rank()}-"))

    @property
    def rejects(self) -> Path:
        return self.scratch / "rejects.jsonl"

    @property
    def log_history(self) -> Path:
        return self.scratch / "log_history.json"

    def write_json(self, name: str, payload: Any) -> Path:
        return self.scratch / name

    def write_text(self, name: str, text: str) -> Path:
        return self.scratch / name

    def set_status(self, status: str, **extra: Any) -> None:
        return None

    def cleanup(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def wait_for_all() -> None:
    """Barrier after training: every rank has reloaded the best checkpoint before rank 0 deletes the folder."""
    import torch.distributed as dist

    if world_size() > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()


def launch_overrides(num_processes: int | None, accelerate_config: str | None) -> list[str]:
    """``--num-processes`` and ``--accelerate-config`` are recipe keys; the CLI flags are ``--set`` shorthands."""
    overrides = []
    if num_processes is not None:
        overrides.append(f"training.num_processes={num_processes}")
    if accelerate_config is not None:
        overrides.append(f"training.accelerate_config={accelerate_config}")
    return overrides


def relaunch_run(recipe_path: str, overrides: list[str], num_processes: int, accelerate_config: str | None) -> int:
    """``tailor run RECIPE --set ...`` again, N times under the launcher; the recipe keys tell it not to relaunch."""
    cli_args = ["run", recipe_path]
    for item in overrides:
        cli_args += ["--set", item]
    return relaunch(cli_args, num_processes, accelerate_config)
