"""Issue 5: speed settings, data parallel on 2 CPU processes, memory estimates, and the benchmark's GPU dry run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tailorlm.errors import RecipeError
from tailorlm.recipe import TrainingConfig, load_recipe
from tests.conftest import write_recipe
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _ddp_recipe(tmp_path: Path, model: Path, data: Path, out: str) -> Path:
    """Dropout 0 and random (not length-grouped) batches: the only differences left are float reduction order."""
    return write_recipe(tmp_path / f"{out}.yaml", f"""
task: classification
output_dir: {tmp_path / out}
model: {{name: {model}}}
data:
  train: {data}
  split: {{validation: 0.2, test: 0.2}}
training: {{epochs: 2, batch_size: 16, learning_rate: 5.0e-3, dropout: 0.0, group_by_length: false,
           early_stopping_patience: null}}
baseline: {{zero_shot: false, linear_probe: false}}
""")


def _losses(run_dir: Path) -> list[float]:
    return [e["loss"] for e in json.loads((run_dir / "log_history.json").read_text()) if "loss" in e]


@pytest.mark.timeout(300)
def test_two_cpu_processes_match_one_process(tmp_path: Path, tiny_model_dir: Path, sentiment_csv: Path) -> None:
    """`tailor run --num-processes 2` (torchrun, gloo) with half the per-device batch trains like one process.

    96 training rows = 6 global batches of 16, so no rank pads its last batch with repeated rows.
    """
    from safetensors.torch import load_file

    code, _, stderr = run_cli(["run", str(_ddp_recipe(tmp_path, tiny_model_dir, sentiment_csv, "one"))])
    assert code == 0, stderr
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    env.pop("TAILORLM_LAUNCHED", None)
    result = subprocess.run(
        [sys.executable, "-m", "tailorlm", "run", str(_ddp_recipe(tmp_path, tiny_model_dir, sentiment_csv, "two")),
         "--num-processes", "2", "--set", "training.batch_size=8"],
        capture_output=True, text=True, env=env, timeout=280, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = tmp_path / "one", tmp_path / "two"
    assert _losses(one) == pytest.approx(_losses(two), abs=1e-4)
    assert _losses(one)[0] != pytest.approx(_losses(one)[-1], abs=1e-3)  # it did learn something
    weights_one = load_file(one / "model" / "model.safetensors")
    weights_two = load_file(two / "model" / "model.safetensors")
    for name, tensor in weights_one.items():
        torch.testing.assert_close(weights_two[name], tensor, atol=1e-4, rtol=1e-3)
    # only the main process wrote the run directory: one rejects file, one metrics file, a finished status
    assert json.loads((two / "status.json").read_text())["status"] == "finished"
    assert json.loads((two / "metrics.json").read_text())["data"]["train"] == 96


def test_launch_commands(tmp_path: Path) -> None:
    from tailorlm.train.distributed import launch_command, launch_overrides

    cpu = launch_command(["run", "r.yaml"], 2, gpu=False)
    assert cpu[1:3] == ["-m", "torch.distributed.run"] and "--nproc_per_node" in cpu and cpu[-2:] == ["run", "r.yaml"]
    config = ROOT / "examples" / "accelerate_multi_gpu.yaml"
    accel = launch_command(["run", "r.yaml"], 4, str(config), gpu=True)
    assert accel[1:3] == ["-m", "accelerate.commands.launch"] and accel[accel.index("--config_file") + 1] == str(config)
    with pytest.raises(RecipeError, match="not found"):
        launch_command(["run", "r.yaml"], 2, str(tmp_path / "missing.yaml"))
    with pytest.raises(RecipeError, match="GPU"):
        launch_command(["run", "r.yaml"], torch.cuda.device_count() + 1, gpu=True)
    assert launch_overrides(2, None) == ["training.num_processes=2"]


@pytest.mark.parametrize("content", [
    "distributed_type: FSDP\nfsdp_config: {fsdp_version: 2}\n",
    '{"distributed_type": "DEEPSPEED", "deepspeed_config": {"zero_stage": 3}}',
    "distributed_type: megatron_lm\n",
])
def test_sharded_engines_are_refused_before_anything_runs(tmp_path: Path, tiny_recipe: Path, content: str) -> None:
    """Rank 0 evaluates and saves alone after training, which sharded weights cannot do: one line, exit 2, no run."""
    from tailorlm.train.distributed import launch_command

    config = tmp_path / "sharded.yaml"
    config.write_text(content)
    with pytest.raises(RecipeError, match="is not supported"):
        launch_command(["run", "r.yaml"], 2, str(config), gpu=True)
    output_dir = load_recipe(tiny_recipe).output_dir
    code, _, err = run_cli(["run", str(tiny_recipe), "--accelerate-config", str(config), "--num-processes", "2"])
    assert code == 2 and "is not supported (untested" in err and len(err.strip().splitlines()) == 1, err
    assert not Path(output_dir).exists()


def test_sharded_launch_from_outside_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """`accelerate launch --use_fsdp -m tailorlm run ...` reaches every rank with ACCELERATE_USE_FSDP set."""
    from tailorlm.train.distributed import needs_launch

    for variable in ("LOCAL_RANK", "TAILORLM_LAUNCHED", "ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(variable, raising=False)
    assert needs_launch(1, str(ROOT / "examples" / "accelerate_multi_gpu.yaml")) is True  # the shipped example: DDP
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(RecipeError, match="ACCELERATE_USE_FSDP is set by the launcher: FSDP is not supported"):
        needs_launch(2, None)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    assert needs_launch(2, None) is False  # launched already, data parallel: trains


def test_speed_keys_map_to_training_arguments() -> None:
    from tailorlm.train.speed import checkpointing_name, compile_enabled, optimizer_name, speed_arguments

    defaults = speed_arguments(TrainingConfig())
    name = checkpointing_name()
    assert defaults["torch_compile"] is torch.cuda.is_available()  # auto: GPUs only
    assert defaults["average_tokens_across_devices"] is False  # per-example losses must not be scaled under DDP
    assert defaults[name] is False and defaults["auto_find_batch_size"] is False
    assert compile_enabled("on") and not compile_enabled("off")
    assert optimizer_name("adamw") == "adamw_torch" and optimizer_name("adamw_fused") == "adamw_torch_fused"
    on = speed_arguments(TrainingConfig(gradient_checkpointing=True, num_workers=2), token_weighted_loss=True)
    assert on[name] is True and on[f"{name}_kwargs"] == {"use_reentrant": False}
    assert on["dataloader_persistent_workers"] and on["average_tokens_across_devices"]
    with pytest.raises(RecipeError, match="torch_compile"):
        load_recipe(None, ["training.torch_compile=sometimes"])


def test_training_arguments_take_the_checkpointing_keys_without_a_deprecation_warning(tmp_path: Path) -> None:
    """Passing the renamed key (even as False) made transformers warn on every run; the installed name does not."""
    import warnings

    from transformers import TrainingArguments

    from tailorlm.train.speed import checkpointing_arguments

    for on in (False, True):
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*checkpointing.*deprecated", category=FutureWarning)
            args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[],
                                     **checkpointing_arguments(on))
        assert args.gradient_checkpointing is on  # the old name mirrors the new one where both exist


def test_estimate_counts_parameters_without_loading(tiny_recipe: Path, tiny_model_dir: Path) -> None:
    """Meta-device counts equal a real model's; LoRA's count equals peft's trainable parameters."""
    from transformers import AutoModelForSequenceClassification

    from tailorlm.models.estimate import estimate_recipe
    from tailorlm.models.peft import apply_lora, count_parameters

    recipe = load_recipe(tiny_recipe, ["data.labels=[negative, positive]", "training.max_length=64"])
    est = estimate_recipe(recipe)
    real = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    assert est.parameters == sum(p.numel() for p in real.parameters())
    trainable, _ = count_parameters(apply_lora(real, recipe.model.peft, "SEQ_CLS"))
    assert est.lora_trainable == trainable
    full_fp32 = est.rows[0]
    assert full_fp32.setting == "full · fp32" and full_fp32.optimizer == 8 * est.parameters
    assert est.rows[1].activations == pytest.approx(full_fp32.activations / 2)
    # activations against what autograd really keeps for backward: the real model, in train mode, at the
    # recipe's batch and length. Measured 1.17x the estimate (embeddings and head are outside the formula).
    measured = saved_activation_bytes(real.train(), recipe.training.batch_size, 64)
    assert 0.85 < measured / full_fp32.activations < 1.3, (measured, full_fp32.activations)


def saved_activation_bytes(model: torch.nn.Module, batch: int, seq: int) -> int:
    """Bytes of the tensors autograd saves for backward in one training forward pass, each storage counted once
    and the parameters left out (they are weights, not activations): torch's own record of activation memory."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    torch.manual_seed(0)
    ids = torch.randint(5, 1000, (batch, seq))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.zeros(batch, dtype=torch.long))
    return sum(saved.values())


@pytest.mark.parametrize(("hidden", "heads", "seq", "batch"), [(32, 2, 64, 16), (64, 4, 128, 8), (128, 4, 64, 8)])
def test_activation_estimate_per_layer_matches_what_autograd_saves(hidden: int, heads: int, seq: int,
                                                                   batch: int) -> None:
    """One transformer layer's activations (3 layers minus 1, halved) against the Korthikanti formula in fp32.
    Measured: 1.09-1.14x (fp32 dropout masks are bytes, which the formula's doubling of 16-bit counts misses)."""
    from transformers import AutoModelForSequenceClassification, BertConfig

    from tailorlm.models.estimate import activation_bytes, config_shape

    def measured(layers: int) -> tuple[int, BertConfig]:
        config = BertConfig(vocab_size=1000, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=4 * hidden, max_position_embeddings=seq)
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(config).train()
        return saved_activation_bytes(model, batch, seq), config

    one, _ = measured(1)
    three, config = measured(3)
    per_layer = (three - one) / 2
    estimated = activation_bytes(config_shape(config), batch, seq, 4, checkpointing=False, causal_lm=False) / 3
    assert 0.9 < per_layer / estimated < 1.2, (per_layer, estimated)


def test_cli_estimate_and_models(tiny_recipe: Path) -> None:
    code, out, err = run_cli(["estimate", str(tiny_recipe)])
    assert code == 0, err
    assert "full · fp32" in out and "GiB" in out and "parameters" in out
    rows = [line for line in out.splitlines() if line.strip().startswith(("full", "lora", "setting"))]
    assert len(rows) == 5 and all(len(line.rstrip()) <= 80 for line in rows), rows
    assert not [line for line in out.splitlines() if line.strip() == "autocast"], out  # no value wraps to a row
    code, out, err = run_cli(["models"])
    assert code == 0, err
    assert "minilm" in out and "22.7 M" in out


def test_benchmark_gpu_suite_dry_run(tmp_path: Path) -> None:
    """The GPU suite's configs, data, both sides and MFU on tiny shapes, 2 steps a row, on CPU."""
    from benchmarks.run import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = main(["--suite", "gpu", "--dry-run", "--out", str(tmp_path / "gpu.json")])
    finally:
        torch.set_num_threads(threads)
    payload = json.loads((tmp_path / "gpu.json").read_text())
    assert result["rows"] == 6 and len(payload["rows"]) == 6
    assert {r["dataset"] for r in payload["rows"]} == {"qwen2-full", "qwen2-lora", "bert-cls"}
    assert all(r["real_tokens_per_s"] > 0 and r["metric"] is not None for r in payload["rows"])
    assert payload["matmul_peak_flops"] > 0 and all(v > 0 for v in payload["mfu"].values())


def test_benchmark_lognormal_lengths_are_long_tailed() -> None:
    from benchmarks.suites.common import lognormal_lengths

    lengths = lognormal_lengths(2000, 5.5, 0.7, 16, 1024, seed=0)
    assert min(lengths) >= 16 and max(lengths) <= 1024
    median, p99 = sorted(lengths)[1000], sorted(lengths)[1980]
    assert 200 < median < 300 and p99 > 3 * median


class BatchTooLargeForMemory(TrainerCallback):
    """A Trainer callback standing in for a device that cannot fit more than ``limit`` rows a batch: it raises the
    out-of-memory error torch raises (the message Trainer's batch-size finder recognises) at the first step of any
    attempt whose per-device batch is larger."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.refused: list[int] = []

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                      **kwargs: object) -> None:
        size = state.train_batch_size or args.per_device_train_batch_size
        if size > self.limit:
            self.refused.append(size)
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (batch of {size} rows)")


def test_auto_batch_size_shrinks_by_a_tenth_and_reports_the_batch_it_trained_at(tmp_path: Path,
                                                                                tiny_model_dir: Path,
                                                                                sentiment_csv: Path,
                                                                                capsys: pytest.CaptureFixture[str],
                                                                                ) -> None:
    """training.auto_batch_size=true: 16 → 14 → 12 rows (×0.9, not halved) on any device (CPU here); metrics and
    the console say 12; samples/s is the 96 rows of the one epoch over the training time."""
    from tailorlm.run import run as run_pipeline

    recipe = load_recipe(_ddp_recipe(tmp_path, tiny_model_dir, sentiment_csv, "auto"),
                         ["training.auto_batch_size=true", "training.epochs=1", "training.calibrate=false"])
    memory = BatchTooLargeForMemory(limit=12)
    metrics = run_pipeline(recipe, extra_callbacks=[memory])
    assert memory.refused == [16, 14]
    assert "out of memory at batch 16 per device: trained at batch 12" in capsys.readouterr().err
    train = metrics["train"]
    assert train["batch_size"] == 12 and train["global_batch"] == 12
    assert train["global_step"] == 8  # ceil(96 / 12) steps of the batch that fits, one epoch
    assert train["samples_per_s"] == pytest.approx(96 / train["runtime_s"], rel=0.01)


def test_auto_batch_size_with_no_batch_that_fits_is_one_line(tmp_path: Path, tiny_model_dir: Path,
                                                             sentiment_csv: Path) -> None:
    """Even one row out of memory: accelerate's finder gives up with a bare RuntimeError; the user gets a UserError."""
    from tailorlm.errors import UserError
    from tailorlm.run import run as run_pipeline

    recipe = load_recipe(_ddp_recipe(tmp_path, tiny_model_dir, sentiment_csv, "none_fits"),
                         ["training.auto_batch_size=true", "training.batch_size=4"])
    memory = BatchTooLargeForMemory(limit=0)
    with pytest.raises(UserError, match="out of memory at every batch from 4 down to 1 row per device"):
        run_pipeline(recipe, extra_callbacks=[memory])
    assert memory.refused == [4, 3, 2, 1]
