"""Issue 12 item 14: the training batch is fitted to the machine's memory before training (train/memory_fit.py;
the end-to-end run is in test_task_generation.py), and a causal LM's loss never materialises the whole
batch's fp32 logits (train/lm_loss.py)."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import pytest
import torch

from tailorlm.errors import UserError
from tailorlm.models.estimate import GIB
from tailorlm.train import memory_fit
from tailorlm.train.lm_loss import chunked_cross_entropy, labelled_token_loss
from tailorlm.train.memory_fit import HEADROOM, config_size, fit_micro_batch, memory_budget, training_bytes


@pytest.fixture(scope="module")
def smollm2_size():
    """SmolLM2-135M's shape (from its config, on the meta device: nothing is downloaded or loaded), with LoRA."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tailorlm.recipe import PeftConfig

    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         tie_word_embeddings=True)
    return config_size(config, AutoModelForCausalLM, PeftConfig(method="lora"), causal_lm=True)


def test_default_smollm2_run_is_split_into_micro_batches_on_a_24_gib_machine(smollm2_size) -> None:
    """The issue's case: batch 32 of ~500-token rows on 24 GiB was SIGKILLed; now it trains in micro-batches."""
    assert 130e6 < smollm2_size.parameters < 140e6 and smollm2_size.trainable < 2e6
    available = 24 * GIB
    full = training_bytes(smollm2_size, 32, 512)
    assert full > available  # why the default run was killed
    fit = fit_micro_batch(smollm2_size, 32, 512, available)
    assert fit.micro_batch < 32 and fit.micro_batch * fit.accumulation == 32
    assert fit.need_bytes <= HEADROOM * available
    bigger = next(d for d in range(fit.micro_batch + 1, 33) if 32 % d == 0)
    assert training_bytes(smollm2_size, bigger, 512) > HEADROOM * available  # the largest divisor that fits
    assert "micro-batch" in fit.reason and "effective batch unchanged" in fit.reason
    assert fit.record()["micro_batch"] == fit.micro_batch and fit.record()["memory_accumulation"] == fit.accumulation
    # logits: 3 fp32 copies of batch x length x vocabulary are part of the estimate
    logits = 3 * 32 * 512 * 49152 * 4
    assert full - training_bytes(smollm2_size.__class__(smollm2_size.parameters, smollm2_size.trainable,
                                                        smollm2_size.shape, False), 32, 512) == logits


def test_a_roomy_machine_keeps_the_batch_and_a_tiny_one_refuses(smollm2_size) -> None:
    fit = fit_micro_batch(smollm2_size, 32, 512, 1000 * GIB)
    assert (fit.micro_batch, fit.accumulation, fit.reduced) == (32, 1, False)
    with pytest.raises(UserError, match=r"training needs about .* GiB even at one example of 512 tokens.*"
                                        r"training.max_length"):
        fit_micro_batch(smollm2_size, 32, 512, 1 * GIB)
    off = fit_micro_batch(smollm2_size, 32, 512, None)
    assert off.micro_batch == 32 and "off" in off.reason


def test_the_budget_is_the_machines_free_memory_or_the_recipes(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    fake = namedtuple("svmem", "available total")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: fake(3 * GIB, 24 * GIB))
    monkeypatch.setattr(memory_fit, "_cgroup_room", lambda: None)
    assert memory_budget("auto", on_gpu=False) == (3 * GIB, "available RAM")
    monkeypatch.setattr(memory_fit, "_cgroup_room", lambda: 2 * GIB)  # a container's limit is tighter
    assert memory_budget("auto", on_gpu=False)[0] == 2 * GIB
    assert memory_budget("8GiB", on_gpu=False) == (8 * GIB, "training.memory_limit")
    assert memory_budget("off", on_gpu=False) == (None, "no check")
    with pytest.raises(UserError, match=r"training\.memory_limit 'lots'"):
        memory_budget("lots", on_gpu=False)


# ------------------------------------------------------------------------------------------- the loss


@pytest.fixture(scope="module")
def tiny_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def test_labelled_token_loss_equals_the_models_own_loss(tiny_lm) -> None:
    ids = torch.randint(0, 97, (3, 12))
    labels = ids.clone()
    labels[:, :5] = -100  # a prompt
    labels[2, 9:] = -100  # padding
    mask = (labels != -100).long()
    mask[2, 9:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    expected = tiny_lm(**inputs, labels=labels).loss
    total, count, outputs = labelled_token_loss(tiny_lm, inputs, labels)
    assert count == int((labels[:, 1:] != -100).sum())
    assert outputs.logits.shape == (count, 97)  # only the labelled tokens' logits were computed
    torch.testing.assert_close(total / count, expected)


def test_chunked_cross_entropy_has_the_same_value_and_gradient() -> None:
    logits = torch.randn(10, 7, requires_grad=True)
    targets = torch.randint(0, 7, (10,))
    reference = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    (grad_ref,) = torch.autograd.grad(reference, logits)
    chunked = chunked_cross_entropy(logits, targets, chunk=3)
    (grad,) = torch.autograd.grad(chunked, logits)
    torch.testing.assert_close(chunked, reference)
    torch.testing.assert_close(grad, grad_ref)


def _agree_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from tailorlm.train.memory_fit import BatchFit, agree_across_processes

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    micro = 8 if rank == 0 else 4  # the second process has less free memory
    fit = BatchFit(micro, 32 // micro, 16 // (rank + 1), 1.0, 2.0, "fits")
    agreed = agree_across_processes(fit)
    Path(out_dir, f"{rank}.txt").write_text(f"{agreed.micro_batch} {agreed.accumulation} {agreed.eval_batch}")
    dist.destroy_process_group()


def test_data_parallel_processes_agree_on_the_smallest_micro_batch(tmp_path: Path) -> None:
    """Two gloo processes that measured different free memory train with the same micro-batch (the smaller)."""
    import torch.multiprocessing as mp

    mp.spawn(_agree_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    assert {(tmp_path / f"{rank}.txt").read_text() for rank in (0, 1)} == {"4 8 8"}
