"""Bootstrap intervals, paired tests, layer-wise LR decay and attention dropout: small, exact checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tailorlm.evaluate.stats import (
    accuracy_stat,
    bootstrap_ci,
    macro_f1_stat,
    mcnemar,
    paired_bootstrap,
    paired_test,
    point,
    significance,
)


def _labels(n: int, error_rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    flip = rng.random(n) < error_rate
    return y, np.where(flip, (y + 1) % 3, y)


def test_bootstrap_ci_contains_estimate_and_is_deterministic() -> None:
    y, pred = _labels(300, 0.2, seed=1)
    stat = macro_f1_stat(y, pred, 3)
    first = bootstrap_ci(stat, len(y))
    again = bootstrap_ci(stat, len(y))
    assert first == again  # fixed seed: the same run always reports the same interval
    assert first["low"] < first["estimate"] < first["high"]
    assert first["resamples"] == 2000 and first["level"] == 0.95
    assert 0.02 < first["high"] - first["low"] < 0.2  # ~300 examples: a few points either way


def test_macro_f1_stat_matches_sklearn() -> None:
    from sklearn.metrics import f1_score

    y, pred = _labels(200, 0.3, seed=2)
    pred[pred == 2] = 1  # a label never predicted still counts (as 0), like the report's macro-F1
    expected = f1_score(y, pred, labels=[0, 1, 2], average="macro", zero_division=0)
    assert point(macro_f1_stat(y, pred, 3), len(y)) == pytest.approx(expected)


def test_mcnemar_matches_hand_computed_table() -> None:
    # 10 examples only A gets right, 2 only B: exact two-sided p = 2 * P(X <= 2 | n=12, 1/2) = 2 * 79 / 4096
    a = [True] * 10 + [False] * 2 + [True] * 30
    b = [False] * 10 + [True] * 2 + [True] * 30
    result = mcnemar(a, b)
    assert (result["a_only_correct"], result["b_only_correct"]) == (10, 2)
    assert result["p_value"] == pytest.approx(158 / 4096)
    assert result["mid_p"] == pytest.approx(158 / 4096 - 66 / 4096)
    assert result["verdict"] == "significant at 5%"
    assert mcnemar([True, False], [True, False])["p_value"] == 1.0


def test_paired_bootstrap_separates_real_gain_from_noise() -> None:
    y, good = _labels(400, 0.1, seed=3)
    _, bad = _labels(400, 0.4, seed=4)
    bad = np.where(np.random.default_rng(5).random(400) < 0.4, (y + 2) % 3, y)
    strong = paired_bootstrap(accuracy_stat(y, good), accuracy_stat(y, bad), len(y))
    assert strong["difference"] > 0.2 and strong["p_value"] < 0.01 and strong["verdict"] == "significant at 5%"
    same = paired_bootstrap(accuracy_stat(y, good), accuracy_stat(y, good), len(y))
    assert same["difference"] == 0 and same["verdict"] == "not significant at 5%"


def test_significance_of_prediction_rows_picks_better_baseline() -> None:
    y, pred = _labels(120, 0.1, seed=6)
    _, weak = _labels(120, 0.5, seed=7)
    names = ["a", "b", "c"]
    rows = [{"id": str(i), "text": f"t{i}", "label": names[t], "predicted": names[p],
             "baselines": {"zero_shot": {"predicted": names[w]}, "linear_probe": {"predicted": names[t]}}}
            for i, (t, p, w) in enumerate(zip(y, pred, weak, strict=True))]
    result = significance([rows], "f1_macro", names)
    assert result is not None and result["ci"]["low"] <= result["ci"]["estimate"] <= result["ci"]["high"]
    assert result["vs_baseline"]["baseline"] == "linear_probe"  # the perfect one is the bar to clear
    assert result["vs_baseline"]["bootstrap"]["difference"] < 0
    assert "mcnemar" in result["vs_baseline"]
    two_seeds = paired_test([rows, rows], [rows], "accuracy", names, system_b="zero_shot")
    assert two_seeds is not None and "mcnemar" not in two_seeds  # several seeds: bootstrap of the mean only


# ------------------------------------------------------------------------------------------ regularisation keys


def _tiny_classifier(tiny_model_dir: Path, **config: float):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    cfg = AutoConfig.from_pretrained(tiny_model_dir, num_labels=2, **config)
    return AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, config=cfg)


def test_layer_lr_decay_param_groups(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import TrainingArguments

    from tailorlm.train.optim import layer_lr_groups, optimizer_cls_and_kwargs
    from tailorlm.train.resume import ResumableTrainer

    model = _tiny_classifier(tiny_model_dir)
    groups = layer_lr_groups(model, 1e-3, 0.5, 0.01)
    lr_by_depth = {g["layer_depth"]: g["lr"] for g in groups}
    # 2 layers: embeddings 0.5^3, layer 0 0.5^2, layer 1 0.5, head (classifier, pooler) full
    assert lr_by_depth == pytest.approx({0: 1.25e-4, 1: 2.5e-4, 2: 5e-4, 3: 1e-3})
    names = {id(p): n for n, p in model.named_parameters()}
    for group in groups:
        for param in group["params"]:
            name = names[id(param)]
            assert ("bias" in name or "LayerNorm" in name) == (group["weight_decay"] == 0.0), name
            if name.startswith("classifier."):
                assert group["lr"] == 1e-3
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))

    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, weight_decay=0.01, use_cpu=True,
                             report_to=[], optim="adamw_torch_fused")
    spec = optimizer_cls_and_kwargs(model, args, 0.5)
    assert spec is not None and spec[1].get("fused") is True  # the Trainer's own (fused) AdamW
    trainer = ResumableTrainer(model=model, args=args, optimizer_cls_and_kwargs=spec)
    for _ in range(2):  # a rebuild (the batch-size finder's retry) keeps the layer-wise rates
        trainer.optimizer = None
        optimizer = trainer.create_optimizer()
        assert sorted({g["lr"] for g in optimizer.param_groups}) == pytest.approx([1.25e-4, 2.5e-4, 5e-4, 1e-3])
    assert optimizer_cls_and_kwargs(model, args, 1.0) is None  # 1.0: off, the Trainer's default groups


def test_attention_dropout_and_llrd_keys_reach_config_and_resolved_recipe(tiny_model_dir: Path) -> None:
    from transformers import AutoConfig

    from tailorlm.recipe import dump_recipe, load_recipe
    from tailorlm.tasks.common import set_dropout

    recipe = load_recipe(None, ["training.attention_dropout=0.3", "training.dropout=0.2",
                                "training.layer_lr_decay=0.9"])
    config = AutoConfig.from_pretrained(tiny_model_dir)
    set_dropout(config, recipe.training.dropout, recipe.training.attention_dropout)
    assert config.hidden_dropout_prob == 0.2
    assert config.attention_probs_dropout_prob == 0.3
    resolved = dump_recipe(recipe)
    assert "attention_dropout: 0.3" in resolved and "layer_lr_decay: 0.9" in resolved and "seeds: 1" in resolved
