"""Domain-adversarial training (adapt.adversarial, adapt/dann.py): the reversal layer's gradient, the loss term's
schedule and bookkeeping, a tailor run that reports the domain shift before and after, and its one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class _Body(torch.nn.Module):
    """A one-layer feature extractor with the interface the DANN term reads (``config.hidden_size``, a forward
    returning ``last_hidden_state``), over 6 input features: 1 that carries the label, 4 that the domains shift."""

    def __init__(self) -> None:
        super().__init__()
        from types import SimpleNamespace

        self.config = SimpleNamespace(hidden_size=8)
        self.layer = torch.nn.Linear(6, 8)

    def forward(self, x: torch.Tensor) -> object:
        from types import SimpleNamespace

        return SimpleNamespace(last_hidden_state=torch.tanh(self.layer(x)).unsqueeze(1))


class _Classifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body, self.head = _Body(), torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        from tailorlm.adapt.dann import mean_pool

        return {"logits": self.head(5 * mean_pool(self.body(x).last_hidden_state, None))}


def _domain(n: int, shift: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, 2, (n,), generator=generator)
    x = torch.randn(n, 6, generator=generator) * 0.5
    x[:, 0] += (2 * y - 1) * 1.5
    x[:, 2:] += shift  # the target's nuisance: easy to tell apart, useless for the label
    return x, y


def _train(adversarial: bool, steps: int = 1500, seed: int = 0) -> tuple[float, float]:
    """(held-out domain accuracy of a fresh classifier on the learnt features, target task accuracy)."""
    from tailorlm.adapt.dann import DomainAdversarialLoss, mean_pool
    from tailorlm.adapt.shift import domain_accuracy

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    (xs, ys), (xt, _) = _domain(512, 0.0, generator), _domain(512, 1.5, generator)
    model = _Classifier()

    def targets() -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield from ({"x": xt[i:i + 32]} for i in range(0, 512, 32))

    term = DomainAdversarialLoss(model.body, targets(), steps, 1.0, seed=seed) if adversarial else None
    params = [*model.parameters(), *(term.parameters() if term else [])]
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9)  # DANN's own optimiser (Ganin et al. 2016)
    model.train()
    for step in range(steps):
        i = step * 32 % 512
        outputs = model(xs[i:i + 32])
        loss = torch.nn.functional.cross_entropy(outputs["logits"], ys[i:i + 32])
        if term is not None:
            loss = loss + term(model, {}, outputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        (hs, _), (ht, yt) = _domain(400, 0.0, generator), _domain(400, 1.5, generator)
        features = [mean_pool(model.body(x).last_hidden_state, None).double().numpy() for x in (hs, ht)]
        task_accuracy = float((model(ht)["logits"].argmax(1) == yt).float().mean())
    return domain_accuracy(*features), task_accuracy


def test_on_two_constructed_domains_the_adapted_features_hide_the_domain_and_keep_the_task() -> None:
    """Without DANN a fresh domain classifier tells the domains apart from the learnt features; with it, its
    held-out accuracy falls to near chance, while the task accuracy on the (unlabelled) target domain holds."""
    plain_domain, plain_task = _train(adversarial=False)
    dann_domain, dann_task = _train(adversarial=True)
    assert plain_domain > 0.9 and plain_task > 0.95
    assert dann_domain < 0.65, (plain_domain, dann_domain)
    assert dann_task > 0.95, dann_task


def test_the_terms_state_survives_a_checkpoint_so_a_resumed_run_continues_it(tiny_model_dir: Path,
                                                                              tmp_path: Path) -> None:
    from types import SimpleNamespace

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tailorlm.adapt.dann import DomainAdversarialLoss, SaveWithCheckpoints, body_of, target_batches

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = [f"tweet lol {r['text']}" for r in sentiment_rows(12)]

    def make() -> tuple[Any, DomainAdversarialLoss]:
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
        return model, DomainAdversarialLoss(body_of(model), target_batches(tokenizer, texts, 32, 4, seed=0),
                                            total_steps=10, max_lambda=1.0)

    model, term = make()
    batch = tokenizer([r["text"] for r in sentiment_rows(4)], padding=True, return_tensors="pt")
    model.train()
    optimizer = torch.optim.SGD(term.parameters(), lr=0.5)
    for _ in range(3):
        term(model, dict(batch), model(**batch)).backward()
        optimizer.step()
        optimizer.zero_grad()
    checkpoint = tmp_path / "checkpoint-3"
    checkpoint.mkdir()
    SaveWithCheckpoints(term).on_save(SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(global_step=3), None)
    _, resumed = make()
    assert resumed.restore(checkpoint) is True
    assert resumed.steps == 3 and resumed.totals == term.totals and resumed.lambda_ == term.lambda_
    for key, value in term.head.state_dict().items():
        assert torch.equal(resumed.head.state_dict()[key], value), key
    assert torch.equal(next(resumed.targets)["input_ids"], next(term.targets)["input_ids"])  # same next batch
    _, fresh = make()
    assert fresh.restore(tmp_path) is False and fresh.steps == 0  # a checkpoint without the state: afresh
