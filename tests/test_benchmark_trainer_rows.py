"""The benchmark measures tailorlm against the best Trainer a careful user would run, and reports MFU honestly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from benchmarks.suites.common import Row, matmul_parameters, matmul_peak_flops, mfu


def _row(name: str, side: str, seconds: float, cpu_s: float, dataset: str = "longtail") -> Row:
    row = Row(name, side, dataset, seconds, 160, 16_000, "accuracy", 1.0)
    row.extra |= {"train_cpu_s": cpu_s, "cpu_samples_per_s": 160 / cpu_s}
    return row


def test_headline_ratio_is_against_the_fastest_trainer_configuration() -> None:
    from benchmarks.suites.cpu import headline

    rows = [_row("transformers.Trainer", "Trainer", 200.0, 100.0),
            _row("Trainer, group_by_length + p99 max_length", "Trainer", 100.0, 50.0),
            _row("tailorlm (defaults)", "tailorlm", 110.0, 55.0)]
    rows += [Row(r.name, r.side, "demo", r.train_s, r.samples, r.real_tokens, "accuracy", 1.0, extra=dict(r.extra))
             for r in rows]
    result = headline(rows)["longtail"]
    assert result["best_trainer"] == "Trainer, group_by_length + p99 max_length"
    assert result["samples_per_s_ratio"] == pytest.approx(100 / 110, abs=1e-3)  # slower than the careful Trainer
    assert result["samples_per_s_ratio_vs_docs_trainer"] == pytest.approx(200 / 110, abs=1e-3)
    assert result["samples_per_cpu_s_ratio"] == pytest.approx(50 / 55, abs=1e-3)
    assert "slower" in headline(rows)["text"]


def test_the_careful_trainer_row_really_groups_by_length(tmp_path: Path) -> None:
    """transformers 5 renamed ``group_by_length=True``: the row must end up with Trainer's LengthGroupedSampler."""
    from benchmarks.suites.cpu import Settings, trainer_arguments
    from datasets import Dataset
    from transformers import BertConfig, BertForSequenceClassification, Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32))
    data = Dataset.from_dict({"input_ids": [[1] * n for n in range(2, 10)], "labels": [0, 1] * 4})
    for grouped, sampler in ((True, LengthGroupedSampler), (False, torch.utils.data.RandomSampler)):
        trainer = Trainer(model=model, args=trainer_arguments(tmp_path / str(grouped), Settings(), grouped),
                          train_dataset=data)
        assert isinstance(trainer._get_train_sampler(), sampler)


def test_mfu_counts_matmul_weights_not_the_embedding_table() -> None:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=3)
    model = BertForSequenceClassification(config)
    per_layer = 4 * 32 * 32 + 2 * 32 * 64  # q, k, v, attention output; FFN in and out
    assert matmul_parameters(model) == 2 * per_layer + 32 * 32 + 32 * 3  # + pooler + classifier
    assert matmul_parameters(model) < sum(p.numel() for p in model.parameters()) - 1000 * 32
    assert mfu(1000.0, 10_000_000, 1.2e11) == pytest.approx(0.5)
    assert mfu(1000.0, 10, 0.0) == 0.0
    assert matmul_peak_flops(64, 2) > 0 and matmul_peak_flops(64, 2, clock=__import__("time").process_time) > 0
