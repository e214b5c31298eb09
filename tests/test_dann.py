"""Domain-adversarial training (adapt.adversarial, adapt/dann.py): the reversal layer's gradient, the loss term's
schedule and bookkeeping, a tailor run that reports the domain shift before and after, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import sentiment_rows
from tests.helpers import run_cli
from tests.test_bad_input import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gradient_through_the_reversal_is_minus_lambda_times_the_heads_own() -> None:
    from tailorlm.adapt.dann import DomainHead, reverse_gradient

    torch.manual_seed(0)
    head = DomainHead(8, width=16)
    features = torch.randn(5, 8)
    domains = torch.tensor([0, 1, 0, 1, 1])

    def grad(lambda_: float | None) -> torch.Tensor:
        x = features.clone().requires_grad_(True)
        inputs = x if lambda_ is None else reverse_gradient(x, lambda_)
        torch.nn.functional.cross_entropy(head(inputs), domains).backward()
        return x.grad

    plain = grad(None)
    for lambda_ in (0.0, 0.3, 2.5):
        assert torch.allclose(grad(lambda_), -lambda_ * plain, atol=1e-7)
    assert torch.equal(reverse_gradient(features, 0.7), features)  # identity forward


def test_schedule_rises_from_zero_to_the_cap() -> None:
    from tailorlm.adapt.dann import schedule

    assert schedule(0.0, 2.0) == 0.0
    assert schedule(0.5, 1.0) == pytest.approx(2 / (1 + 2.718281828 ** -5) - 1)
    assert schedule(1.0, 1.0) == pytest.approx(0.9999092, abs=1e-6)
    assert schedule(3.0, 1.0) == schedule(1.0, 1.0)  # progress past the end stays at the cap


def test_the_term_trains_only_its_head_counts_steps_and_adds_nothing_in_eval(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tailorlm.adapt.dann import DomainAdversarialLoss, body_of, target_batches

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    targets = target_batches(tokenizer, [f"tweet lol {r['text']}" for r in sentiment_rows(6)], 32, 4, seed=0)
    term = DomainAdversarialLoss(body_of(model), targets, total_steps=4, max_lambda=1.0)
    assert not {id(p) for p in term.parameters()} & {id(p) for p in model.parameters()}
    batch = tokenizer([r["text"] for r in sentiment_rows(4)], padding=True, return_tensors="pt")
    model.train()
    for _ in range(3):
        outputs = model(**batch)
        loss = term(model, dict(batch), outputs)
        assert loss.item() > 0
    assert term.steps == 3 and term.stats()["domain_accuracy"] is not None
    assert 0 < term.stats()["final_lambda"] < 1
    model.eval()
    with torch.no_grad():
        assert term(model, dict(batch), model(**batch)).item() == 0.0
    assert term.steps == 3


def write_domains(work: Path, n: int = 160) -> tuple[Path, Path]:
    """Source: labelled reviews marked 'report:'; target: other reviews marked 'tweet lol', unlabelled."""
    rows = sentiment_rows(2 * n)
    source, target = work / "source.csv", work / "target.txt"
    pd.DataFrame([{"text": "report: " + r["text"], "label": r["label"]} for r in rows[:n]]).to_csv(source, index=False)
    target.write_text("\n".join("tweet lol " + r["text"] for r in rows[n:]) + "\n", encoding="utf-8")
    return source, target


def dann_recipe(work: Path, model_dir: Path, source: Path, target: str | None, epochs: float = 2) -> Path:
    adapt = {"adversarial": True} | ({"target_unlabeled": target} if target is not None else {})
    recipe = work / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "classification", "output_dir": str(work / "out"), "model": {"name": str(model_dir)},
        "data": {"train": str(source), "split": {"validation": 0.2, "test": 0.25}},
        "training": {"epochs": epochs, "batch_size": 16, "learning_rate": 1e-3, "early_stopping_patience": None},
        "baseline": {"linear_probe": False}, "adapt": adapt,
    }))
    return recipe


def test_tailor_run_reports_the_domain_shift_before_and_after(tmp_path: Path, tiny_model_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from tailorlm.adapt.dann import DomainAdversarialLoss

    made: list[tuple[DomainAdversarialLoss, dict[str, torch.Tensor]]] = []
    init = DomainAdversarialLoss.__init__

    def spy(self: DomainAdversarialLoss, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)
        made.append((self, {k: v.clone() for k, v in self.head.state_dict().items()}))

    monkeypatch.setattr(DomainAdversarialLoss, "__init__", spy)
    source, target = write_domains(tmp_path)
    code, stdout, stderr = run_cli(["run", str(dann_recipe(tmp_path, tiny_model_dir, source, str(target)))])
    assert code == 0, stderr
    # the trainer optimised the domain head (an extra parameter group) and cleared its gradients after each step
    (term, initial), = made
    assert any(not torch.equal(initial[k], v) for k, v in term.head.state_dict().items())
    assert all(p.grad is None for p in term.parameters())
    adversarial = json.loads((tmp_path / "out" / "metrics.json").read_text())["adapt"]["adversarial"]
    assert adversarial["max_lambda"] == 1.0 and adversarial["total_steps"] > 0
    for when in ("before", "after"):
        assert 0.0 <= adversarial[when]["domain_accuracy"] <= 1.0
        assert -2.0 <= adversarial[when]["proxy_a_distance"] <= 2.0
    assert 0 < adversarial["final_lambda"] <= 1.0
    assert adversarial["training"]["steps"] == adversarial["total_steps"]
    assert "domain classifier accuracy" in stderr + stdout
    # the domain head is not part of the model: the saved model reloads as a plain classifier
    from transformers import AutoModelForSequenceClassification

    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "model")
    assert not any("domain" in name for name, _ in saved.named_parameters())


def test_adversarial_without_a_target_file_is_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    source, _ = write_domains(tmp_path, 40)
    code, _, err = run_cli(["run", str(dann_recipe(tmp_path, tiny_model_dir, source, None))])
    assert_one_line_error(code, err, "adapt.target_unlabeled")


def test_a_missing_target_file_is_one_line_naming_the_key(tmp_path: Path, tiny_model_dir: Path) -> None:
    source, _ = write_domains(tmp_path, 40)
    recipe = dann_recipe(tmp_path, tiny_model_dir, source, str(tmp_path / "nope.txt"))
    code, _, err = run_cli(["run", str(recipe)])
    assert_one_line_error(code, err, "adapt.target_unlabeled")
    assert not (tmp_path / "out" / "model").exists()
