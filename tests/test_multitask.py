"""Multi-task learning (issue 15): task sampling, loss balancing, heads trained only by their own task, a joint
`tailor run` of classification + regression + token classification on a tiny BERT, save/reload through predict
and eval, and the bad inputs that stop with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tailorlm.multitask.balance import UncertaintyWeights, cosines, pcgrad
from tailorlm.multitask.sampling import SamplingPlan, TaskBatchSampler
from tests.conftest import sentiment_rows
from tests.helpers import run_cli
from tests.test_task_regression import scored_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZES = (800, 200, 50)


# ---------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(("method", "expected"), [
    ("proportional", np.array(SIZES) / sum(SIZES)),
    ("temperature", np.sqrt(SIZES) / np.sqrt(SIZES).sum()),  # T = 2
    ("round_robin", np.full(3, 1 / 3)),
])
def test_tasks_are_sampled_in_the_configured_proportions(method: str, expected: np.ndarray) -> None:
    """4,000 batches: each task's share within 0.02 of its planned one (about 2.5 binomial standard errors at
    p = 0.5; round-robin is exact up to the one batch 4,000 leaves over)."""
    plan = SamplingPlan(method, SIZES, steps=4000, temperature=2.0)
    assert np.allclose(plan.probabilities(), expected)
    shares = np.bincount(plan.schedule(seed=3), minlength=3) / 4000
    assert np.abs(shares - expected).max() < (1 / 4000 if method == "round_robin" else 0.02), shares
    assert plan.record(3)["batches"] == np.bincount(plan.schedule(seed=3), minlength=3).tolist()


def test_temperature_flattens_and_annealing_moves_from_proportional_to_flatter() -> None:
    hot = SamplingPlan("temperature", SIZES, 10, temperature=1e6).probabilities()
    assert np.allclose(hot, 1 / 3, atol=1e-4)  # T -> infinity is uniform
    annealed = SamplingPlan("annealed", SIZES, 2000, anneal_to=5.0)
    assert np.allclose(annealed.probabilities(0), np.array(SIZES) / sum(SIZES))
    schedule = np.array(annealed.schedule(seed=1))
    first, last = (schedule[:500] == 0).mean(), (schedule[-500:] == 0).mean()
    assert first > last + 0.1, (first, last)  # the big task leads early, the small ones catch up


def test_every_batch_holds_one_task_and_rows_repeat_only_after_a_full_pass() -> None:
    plan = SamplingPlan("proportional", (30, 10), steps=40)
    batches = list(TaskBatchSampler(plan, batch_size=4, seed=0))
    assert len(batches) == 40 and all(len({t for t, _ in b}) == 1 for b in batches)
    small = [row for b in batches if b[0][0] == 1 for _, row in b]
    assert sorted(small[:10]) == list(range(10))  # the first pass covers every row once
    pcgrad_batches = list(TaskBatchSampler(plan, batch_size=4, seed=0, all_tasks_each_step=True))
    assert all({t for t, _ in b} == {0, 1} for b in pcgrad_batches)


# ---------------------------------------------------------------------------------------------- balance


def test_uncertainty_weighting_learns_a_larger_weight_for_the_less_noisy_task() -> None:
    """Two regression tasks on one shared layer, the same signal, one with 20x the target noise: the learned
    weight exp(-s) of the clean task ends well above the noisy one's."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 6, generator=gen)
    signal = x @ torch.randn(6, 1, generator=gen)
    targets = [signal + 0.05 * torch.randn(512, 1, generator=gen), signal + 1.0 * torch.randn(512, 1, generator=gen)]
    torch.manual_seed(0)
    shared, heads = torch.nn.Linear(6, 16), torch.nn.ModuleList([torch.nn.Linear(16, 1) for _ in range(2)])
    balance = UncertaintyWeights(2)
    optimizer = torch.optim.Adam([*shared.parameters(), *heads.parameters(), *balance.parameters()], lr=0.02)
    for step in range(600):
        task, rows = step % 2, torch.randint(0, 512, (32,), generator=gen)
        loss = torch.nn.functional.mse_loss(heads[task](torch.relu(shared(x[rows]))), targets[task][rows])
        optimizer.zero_grad()
        balance(task, loss).backward()
        optimizer.step()
    clean, noisy = balance.weights()
    assert clean > 5 * noisy, (clean, noisy)  # at the optimum exp(-s) = 1 / MSE: about 1/0.0025 vs 1/1


def test_pcgrad_removes_the_conflicting_component_and_keeps_agreeing_gradients() -> None:
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    combined = pcgrad([a, b])
    a_proj = a - (a @ b) / (b @ b) * b
    b_proj = b - (b @ a) / (a @ a) * a
    assert torch.allclose(combined, a_proj + b_proj)
    assert torch.allclose(pcgrad([a, torch.tensor([1.0, 1.0])]), torch.tensor([2.0, 1.0]))  # no conflict: a sum
    assert cosines(["a", "b"], [a, b]) == {"a|b": pytest.approx(-2 ** -0.5, abs=1e-6)}


# ---------------------------------------------------------------------------------------------- heads


def test_each_head_gets_gradients_only_from_its_own_tasks_batches(tiny_model_dir: Path) -> None:
    from transformers import (
        AutoModel,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        DataCollatorWithPadding,
    )

    from tailorlm.multitask.model import MultiTaskModel
    from tailorlm.multitask.trainer import TaskRowsDataset, task_collate
    from tailorlm.train.objective import Objective

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = BertConfig.from_pretrained(tiny_model_dir)
    models = {"a": BertForSequenceClassification(config), "b": BertForSequenceClassification(config)}
    mt = MultiTaskModel(AutoModel.from_pretrained(tiny_model_dir), models)
    assert mt.view("a").bert is mt.view("b").bert is mt.encoder
    assert len({id(p) for p in mt.parameters()}) == len(list(mt.state_dict()))  # every weight once
    texts = [f"text number {i}" for i in range(12)]
    splits = [[dict(tokenizer(t), labels=i % 2) for i, t in enumerate(texts)] for _ in range(2)]
    collate = task_collate(["a", "b"], [DataCollatorWithPadding(tokenizer)] * 2)
    dataset = TaskRowsDataset(splits)
    for batch_rows in TaskBatchSampler(SamplingPlan("round_robin", (12, 12), steps=6), 4, seed=0):
        batch = collate([dataset[key] for key in batch_rows])
        name = batch.pop("task")
        mt.zero_grad(set_to_none=True)
        Objective("example")(mt.view(name), batch)[0].backward()
        for head in ("a", "b"):
            got = [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in mt.heads[head].parameters()]
            assert all(got) if head == name else not any(got), (name, head, got)
        assert mt.encoder.embeddings.word_embeddings.weight.grad is not None  # the shared encoder learns from both


# ---------------------------------------------------------------------------------------------- a joint run


def _write(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def multitask_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tailorlm.demos.token_classification import generate_ner_dataset

    tmp = tmp_path_factory.mktemp("mt-data")
    ner = generate_ner_dataset(tmp / "ner", seed=5, n_sentences=100)
    return {"sent_train": _write(tmp / "sent.csv", sentiment_rows(160)),
            "score_train": _write(tmp / "score.csv", scored_rows(160)),
            "ner_train": ner["train.jsonl"], "ner_test": ner["test.jsonl"]}


def multitask_recipe(tmp: Path, model: Path, files: dict[str, Path], **multitask: object) -> dict:
    split = {"validation": 0.2, "test": 0.25}
    return {
        "output_dir": str(tmp / "run"),
        "model": {"name": str(model)},
        "tasks": [
            {"name": "sentiment", "task": "classification", "data": {"train": str(files["sent_train"]),
                                                                     "split": split}},
            {"name": "score", "task": "regression", "data": {"train": str(files["score_train"]),
                                                              "label_column": "score", "split": split}},
            {"name": "ner", "task": "token-classification", "data": {"train": str(files["ner_train"]),
                                                                     "test": str(files["ner_test"])}},
        ],
        "training": {"batch_size": 16, "learning_rate": 4e-3, "warmup": 0.0, "early_stopping_patience": None,
                     "epochs": 3},
        "multitask": {"sampling": "temperature", "steps": 90, "conflict_batches": 1, **multitask},
    }


@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path,
                  multitask_files: dict[str, Path]) -> Path:
    tmp = tmp_path_factory.mktemp("mt-run")
    recipe = tmp / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(multitask_recipe(tmp, tiny_model_dir, multitask_files)), encoding="utf-8")
    code, _, stderr = run_cli(["run", str(recipe)])
    assert code == 0, stderr
    return tmp / "run"


def test_a_joint_run_reports_every_task_against_its_own_baselines(multitask_run: Path) -> None:
    metrics = json.loads((multitask_run / "metrics.json").read_text())
    assert metrics["task"] == "multi-task" and set(metrics["tasks"]) == {"sentiment", "score", "ner"}
    assert set(metrics["tasks"]["sentiment"]["baseline"]) == {"zero_shot", "linear_probe"}
    assert set(metrics["tasks"]["score"]["baseline"]) == {"mean", "ridge_probe"}
    assert set(metrics["tasks"]["ner"]["baseline"]) >= {"majority_tag"}
    for name, main in (("sentiment", "f1_macro"), ("score", "rmse"), ("ner", "f1")):
        assert main in metrics["tasks"][name]["tuned"] and main in metrics["tasks"][name]["validation"]
        assert (multitask_run / "tasks" / name / "data_report.json").is_file()
        assert (multitask_run / "tasks" / name / "predictions.jsonl").is_file() or name == "ner"  # no per-row
        assert "sentence" in metrics["verdict"][name]
    sampling = metrics["multitask"]["sampling"]
    assert sampling["method"] == "temperature" and sum(sampling["batches"]) == sampling["steps"] == 90
    assert metrics["multitask"]["gradient_cosines"] and "sentiment|score" in metrics["multitask"]["gradient_cosines"][0]
    history = json.loads((multitask_run / "log_history.json").read_text())
    assert any("loss_sentiment" in e for e in history) and any("eval_combined" in e for e in history)
    assert metrics["train"]["global_step"] == 90
    # it learned, on every task (the floors: a constant label, the training mean; measured: macro-F1 1.0, RMSE
    # 1.06 vs 1.94 for the mean, entity F1 0.38 at 150 steps)
    tasks = metrics["tasks"]
    assert tasks["sentiment"]["tuned"]["f1_macro"] > 0.8
    assert tasks["score"]["tuned"]["rmse"] < 0.8 * tasks["score"]["baseline"]["mean"]["rmse"]
    assert tasks["ner"]["tuned"]["f1"] > 0.0
    report = (multitask_run / "report.md").read_text()
    assert report.count("multi-task fine-tune") == 3 and "sentiment / score" in report
    assert (multitask_run / "report.html").read_text().count("<table>") >= 4
    code, _, stderr = run_cli(["report", str(multitask_run)])  # tailor report draws the multi-task report again
    assert code == 0, stderr
    assert (multitask_run / "report.md").read_text() == report
    model = multitask_run / "model"
    assert (model / "encoder" / "model.safetensors").is_file() and not (model / "model.safetensors").exists()
    assert sorted(p.name for p in (model / "heads").iterdir()) == ["ner", "score", "sentiment"]


def test_the_saved_model_reloads_and_predicts_identically_per_task(multitask_run: Path,
                                                                   multitask_files: dict[str, Path]) -> None:
    metrics = json.loads((multitask_run / "metrics.json").read_text())
    predictions = {name: [json.loads(line) for line in (multitask_run / "tasks" / name / "predictions.jsonl")
                          .read_text().splitlines()] for name in ("sentiment", "score")}
    texts = [row["text"] for row in predictions["sentiment"][:5]]
    code, stdout, stderr = run_cli(["predict", str(multitask_run), "--task", "sentiment",
                                    *[a for t in texts for a in ("--text", t)]])
    assert code == 0, stderr
    labels = [json.loads(chunk)["label"] for chunk in _json_objects(stdout)]
    assert labels == [row["predicted"] for row in predictions["sentiment"][:5]]
    row = predictions["score"][0]
    code, stdout, stderr = run_cli(["predict", str(multitask_run), "--task", "score", "--text", row["text"]])
    assert code == 0, stderr
    assert json.loads(stdout)["score"] == pytest.approx(row["prediction"], abs=1e-4)
    out = multitask_run.parent / "eval-ner.json"
    code, _, stderr = run_cli(["eval", str(multitask_run), "--task", "ner", "--data",
                               str(multitask_files["ner_test"]), "--output", str(out)])
    assert code == 0, stderr
    assert json.loads(out.read_text())["f1"] == pytest.approx(metrics["tasks"]["ner"]["tuned"]["f1"], abs=1e-6)


def _json_objects(text: str) -> list[str]:
    """The pretty-printed JSON objects of ``tailor predict``'s output, one per input."""
    decoder, out, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        obj, end = decoder.raw_decode(text, i)
        out.append(json.dumps(obj))
        i = end
    return out


# ---------------------------------------------------------------------------------------------- bad input


def _one_line_exit_2(args: list[str], *expected: str) -> str:
    code, _, stderr = run_cli(args)
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1, stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _bad_recipe(tmp: Path, tiny_model_dir: Path, files: dict[str, Path], change: object) -> Path:
    recipe = multitask_recipe(tmp, tiny_model_dir, files)
    change(recipe)
    path = tmp / "bad.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_a_duplicated_task_name_exits_2_with_one_line(tmp_path: Path, tiny_model_dir: Path,
                                                      multitask_files: dict[str, Path]) -> None:
    def duplicate(recipe: dict) -> None:
        recipe["tasks"][2]["name"] = "sentiment"

    _one_line_exit_2(["run", str(_bad_recipe(tmp_path, tiny_model_dir, multitask_files, duplicate))],
                     "tasks[2].name", "'sentiment' is used twice")


def test_a_task_that_cannot_share_the_encoder_exits_2_with_one_line(tmp_path: Path, tiny_model_dir: Path,
                                                                    multitask_files: dict[str, Path]) -> None:
    def generation(recipe: dict) -> None:
        recipe["tasks"][1]["task"] = "generation"

    _one_line_exit_2(["run", str(_bad_recipe(tmp_path, tiny_model_dir, multitask_files, generation))],
                     "tasks[1].task", "'generation' cannot share the encoder", "classification")


def _other_tokenizer_model(folder: Path) -> Path:
    """A tiny BERT whose tokenizer has its own 40-word vocabulary."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *[chr(c) for c in range(ord("a"), ord("z") + 1)]]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


def test_mismatched_tokenizers_exit_2_with_one_line(tmp_path: Path, tiny_model_dir: Path,
                                                    multitask_files: dict[str, Path]) -> None:
    other = _other_tokenizer_model(tmp_path / "other-model")

    def mismatched(recipe: dict) -> None:
        recipe["tasks"][1]["model"] = str(other)

    line = _one_line_exit_2(["run", str(_bad_recipe(tmp_path, tiny_model_dir, multitask_files, mismatched))],
                            "tasks[1].model", "a different tokenizer", "share one encoder")
    assert "Traceback" not in line


def test_an_unknown_task_in_predict_and_eval_exits_2_with_one_line(multitask_run: Path,
                                                                   multitask_files: dict[str, Path]) -> None:
    _one_line_exit_2(["predict", str(multitask_run), "--task", "urgency", "--text", "hello"],
                     "--task 'urgency'", "sentiment, score, ner")
    _one_line_exit_2(["predict", str(multitask_run), "--text", "hello"], "multi-task model", "--task NAME")
    _one_line_exit_2(["eval", str(multitask_run), "--task", "nope", "--data", str(multitask_files["ner_test"])],
                     "--task 'nope'")
    _one_line_exit_2(["card", str(multitask_run)], "multi-task model has no model card yet", "--task NAME")


def test_the_recipe_refuses_an_unknown_select_task_and_a_single_task_list(tmp_path: Path, tiny_model_dir: Path,
                                                                         multitask_files: dict[str, Path]) -> None:
    def select(recipe: dict) -> None:
        recipe["multitask"]["select"] = "urgency"

    _one_line_exit_2(["run", str(_bad_recipe(tmp_path, tiny_model_dir, multitask_files, select))],
                     "multitask.select", "'urgency'")

    def single(recipe: dict) -> None:
        recipe["tasks"] = recipe["tasks"][:1]

    _one_line_exit_2(["run", str(_bad_recipe(tmp_path, tiny_model_dir, multitask_files, single))],
                     "at least two tasks")


# ---------------------------------------------------------------------------------------------- other settings


def _two_task_run(tmp: Path, tiny_model_dir: Path, files: dict[str, Path], **settings: object) -> dict:
    recipe = multitask_recipe(tmp, tiny_model_dir, files, **settings.pop("multitask", {}))
    recipe["tasks"] = recipe["tasks"][:2]
    for key, value in settings.items():
        recipe.setdefault(key, {}).update(value)
    path = tmp / "two.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    code, _, stderr = run_cli(["run", str(path)])
    assert code == 0, stderr
    return json.loads((tmp / "run" / "metrics.json").read_text())


def test_uncertainty_weighting_with_one_shared_lora_adapter_and_the_single_task_comparison(
        tmp_path: Path, tiny_model_dir: Path, multitask_files: dict[str, Path]) -> None:
    metrics = _two_task_run(tmp_path, tiny_model_dir, multitask_files, model={"peft": {"method": "lora", "r": 4}},
                            multitask={"balance": "uncertainty", "steps": 40, "comparison": "single_task",
                                       "sampling": "round_robin"})
    mt = metrics["multitask"]
    assert set(mt["uncertainty_weights"]) == {"sentiment", "score"} and mt["uncertainty_history"]
    assert mt["uncertainty_weights"] != {"sentiment": 1.0, "score": 1.0}  # the log-variances were trained
    assert mt["sampling"]["batches"] == [20, 20]
    assert metrics["train"]["trainable_params"] < metrics["train"]["total_params"]  # LoRA: the encoder is frozen
    comparison = metrics["comparison"]
    assert set(comparison["tasks"]) == {"sentiment", "score"}
    assert comparison["tasks"]["sentiment"]["batches"] == 20
    for name in ("sentiment", "score"):
        entry = comparison["tasks"][name]
        assert entry["single_task"] is not None and entry["multi_task"] is not None
        assert (tmp_path / "run" / "single" / name / "metrics.json").is_file()
    assert "paired_test" in comparison["tasks"]["sentiment"]
    assert comparison["train_time_s"]["single_tasks_sum"] > 0
    assert comparison["parameters_served"]["multi_task"] < comparison["parameters_served"]["single_tasks_sum"]
    assert "single-task fine-tune" in (tmp_path / "run" / "report.md").read_text()
    code, stdout, stderr = run_cli(["predict", str(tmp_path / "run"), "--task", "score", "--text", "great shop"])
    assert code == 0, stderr  # the merged encoder reloads with its head
    assert isinstance(json.loads(stdout)["score"], float)


def test_pcgrad_takes_one_batch_of_every_task_per_step(tmp_path: Path, tiny_model_dir: Path,
                                                       multitask_files: dict[str, Path]) -> None:
    metrics = _two_task_run(tmp_path, tiny_model_dir, multitask_files,
                            multitask={"balance": "pcgrad", "steps": 30, "select": "sentiment"})
    assert metrics["train"]["global_step"] == 30 and metrics["train"]["global_batch"] == 32
    assert metrics["multitask"]["select"] == {"metric": "sentiment_f1_macro", "greater_is_better": True,
                                              "by": "sentiment"}
    assert metrics["tasks"]["sentiment"]["tuned"]["f1_macro"] > 0.6


def test_qa_shares_the_encoder_with_a_classifier(tmp_path: Path, tiny_model_dir: Path,
                                                 multitask_files: dict[str, Path]) -> None:
    from tailorlm.demos.qa import generate_qa_dataset

    qa = generate_qa_dataset(tmp_path / "qa", seed=3, n_passages=24)
    recipe = multitask_recipe(tmp_path, tiny_model_dir, multitask_files, steps=20, sampling="proportional")
    recipe["tasks"] = [recipe["tasks"][0], {"name": "answers", "task": "qa", "data": {
        "train": str(qa["train"]), "validation": str(qa["validation"]), "test": str(qa["test"])}}]
    path = tmp_path / "qa.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    code, _, stderr = run_cli(["run", str(path)])
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"exact_match", "f1"} <= set(metrics["tasks"]["answers"]["tuned"])
    assert "span_probe" in metrics["tasks"]["answers"]["baseline"]
    code, stdout, stderr = run_cli(["predict", str(tmp_path / "run"), "--task", "answers", "--question", "who?",
                                    "--context", "Ann runs the shop."])
    assert code == 0, stderr
    assert "answer" in json.loads(stdout)


def test_uncertainty_weighting_in_a_run_weighs_the_clean_task_above_its_noisy_copy(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    """The same texts scored twice, once with the exact score and once with heavy noise added: trained jointly
    through the multi-task trainer, the clean task's learned weight exp(-s) ends above the noisy one's."""
    rng = np.random.default_rng(0)
    rows = scored_rows(200)
    clean = _write(tmp_path / "clean.csv", rows)
    noisy = _write(tmp_path / "noisy.csv", [r | {"score": float(r["score"]) + rng.normal(0, 3.0)} for r in rows])
    data = {"label_column": "score", "split": {"validation": 0.15, "test": 0.15}}
    recipe = {"output_dir": str(tmp_path / "run"), "model": {"name": str(tiny_model_dir)},
              "tasks": [{"name": "clean", "task": "regression", "data": {"train": str(clean), **data}},
                        {"name": "noisy", "task": "regression", "data": {"train": str(noisy), **data}}],
              "training": {"batch_size": 16, "learning_rate": 4e-3, "warmup": 0.0, "early_stopping_patience": None,
                           "epochs": 1},
              "baseline": {"linear_probe": False},
              "multitask": {"balance": "uncertainty", "sampling": "round_robin", "steps": 80, "conflict_batches": 0}}
    path = tmp_path / "u.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    code, _, stderr = run_cli(["run", str(path)])
    assert code == 0, stderr
    weights = json.loads((tmp_path / "run" / "metrics.json").read_text())["multitask"]["uncertainty_weights"]
    assert weights["clean"] > 1.2 * weights["noisy"], weights


def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_result(
        tmp_path: Path, tiny_model_dir: Path, multitask_files: dict[str, Path]) -> None:
    from rich.console import Console
    from transformers import TrainerCallback

    from tailorlm.recipe import recipe_from_dict
    from tailorlm.run import run

    class StopAt(TrainerCallback):
        def on_step_end(self, args: object, state: object, control: object, **kw: object) -> None:
            if state.global_step == 14:  # after the checkpoint of step 12
                raise KeyboardInterrupt

    def recipe(out: str) -> object:
        raw = multitask_recipe(tmp_path, tiny_model_dir, multitask_files, steps=20, conflict_batches=0)
        raw["tasks"] = raw["tasks"][:2]
        raw["training"]["evals_per_epoch"] = 2
        raw["output_dir"] = str(tmp_path / out)
        return recipe_from_dict(raw)

    quiet = Console(quiet=True)
    straight = run(recipe("straight"), quiet)
    with pytest.raises(KeyboardInterrupt):
        run(recipe("killed"), quiet, extra_callbacks=[StopAt()])
    status = json.loads((tmp_path / "killed" / "status.json").read_text())
    assert status["status"] == "interrupted"
    resumed_recipe = recipe("killed")
    resumed_recipe.training.resume = "always"
    resumed = run(resumed_recipe, quiet)
    resumed_from = json.loads((tmp_path / "killed" / "status.json").read_text())["resumed_from"]
    assert resumed_from.endswith("checkpoint-12")  # evaluated (and saved) every 3 steps
    for name in ("sentiment", "score"):
        a, b = (({k: v for k, v in m["tasks"][name]["tuned"].items() if isinstance(v, float)}) for m in (resumed,
                                                                                                    straight))
        assert a == pytest.approx(b, abs=1e-6), name
    assert resumed["validation"]["combined"] == pytest.approx(straight["validation"]["combined"], abs=1e-6)


def test_set_reaches_one_task_by_name_and_the_recipe_refuses_top_level_data(tmp_path: Path, tiny_model_dir: Path,
                                                                            multitask_files: dict[str, Path]) -> None:
    from tailorlm.errors import RecipeError
    from tailorlm.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(multitask_recipe(tmp_path, tiny_model_dir, multitask_files)), encoding="utf-8")
    recipe = load_recipe(path, ["tasks.score.loss_weight=2.5", "tasks.0.data.label_column=stars"])
    assert recipe.tasks[1].loss_weight == 2.5 and recipe.tasks[0].data.label_column == "stars"
    with pytest.raises(RecipeError, match=r"no task 'urgency'.*sentiment, score, ner"):
        load_recipe(path, ["tasks.urgency.loss_weight=2"])
    with pytest.raises(RecipeError, match=r"remove the top-level data\.train"):
        load_recipe(path, [f"data.train={multitask_files['sent_train']}"])


def test_tailor_tune_searches_a_per_task_key_and_a_sampler_key_on_the_combined_score(
        tmp_path: Path, tiny_model_dir: Path, multitask_files: dict[str, Path]) -> None:
    import csv

    raw = multitask_recipe(tmp_path, tiny_model_dir, multitask_files, steps=10, conflict_batches=0)
    raw["tasks"] = raw["tasks"][:2]
    raw["baseline"] = {"zero_shot": False, "linear_probe": False}
    raw["search"] = {"pruner": "none", "space": {
        "tasks.score.loss_weight": {"type": "categorical", "choices": [0.1, 3.0]},
        "multitask.sampling": {"type": "categorical", "choices": ["round_robin"]}}}
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    code, _, stderr = run_cli(["tune", str(path), "--method", "grid", "--trials", "2"])
    assert code == 0, stderr
    with (tmp_path / "run" / "trials.csv").open(encoding="utf-8") as handle:
        trials = list(csv.DictReader(handle))
    assert [t["state"] for t in trials] == ["complete", "complete"]
    assert sorted(t["tasks.score.loss_weight"] for t in trials) == ["0.1", "3.0"]
    assert trials[0]["value"] != trials[1]["value"]  # the weight reached the trial: the combined score moved
    for trial in trials:
        resolved = yaml.safe_load((Path(trial["dir"]) / "recipe.resolved.yaml").read_text())
        assert resolved["multitask"]["sampling"] == "round_robin"
        assert str(resolved["tasks"][1]["loss_weight"]) == trial["tasks.score.loss_weight"]
    bad = dict(raw, search={"space": {"tasks.urgency.loss_weight": {"type": "categorical", "choices": [1.0]}}})
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    _one_line_exit_2(["tune", str(path), "--trials", "1"], "no task 'urgency'", "sentiment, score")


def test_test_texts_another_task_trains_on_are_counted() -> None:
    from types import SimpleNamespace

    from tailorlm.multitask.stages import cross_task_overlap

    def unit(name: str, train: list[str], test: list[str]) -> object:
        data = SimpleNamespace(train=pd.DataFrame({"text": train}), test=pd.DataFrame({"text": test}))
        return SimpleNamespace(name=name, data=data)

    units = [unit("intent", ["Power is off!", "bill too high"], ["meter reading"]),
             unit("urgency", ["meter reading", "gas smell"], ["power is OFF", "new text"]),
             unit("tags", ["x"], ["y"])]
    assert cross_task_overlap(units) == {"intent": {"urgency": 1}, "urgency": {"intent": 1}}


def test_seeds_summarise_each_task_and_the_single_task_comparison_over_runs(
        tmp_path: Path, tiny_model_dir: Path, multitask_files: dict[str, Path]) -> None:
    raw = multitask_recipe(tmp_path, tiny_model_dir, multitask_files, steps=12, conflict_batches=0,
                           comparison="single_task")
    raw["tasks"] = raw["tasks"][:2]
    raw["training"]["seeds"] = 2
    raw["baseline"] = {"zero_shot": False}
    path = tmp_path / "seeds.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    code, _, stderr = run_cli(["run", str(path)])
    assert code == 0, stderr
    out = tmp_path / "run"
    metrics = json.loads((out / "metrics.json").read_text())
    per_seed = [json.loads((out / f"seed-{s}" / "metrics.json").read_text()) for s in (42, 43)]
    assert metrics["seeds"]["values"] == [42, 43]
    for name, main in (("sentiment", "f1_macro"), ("score", "rmse")):
        task = metrics["tasks"][name]
        values = [m["tasks"][name]["tuned"][main] for m in per_seed]
        assert task["per_seed"] == values and task["tuned"][main] == pytest.approx(np.mean(values))
        assert task["tuned_std"][main] == pytest.approx(np.std(values, ddof=1))
        assert metrics["significance"][name]["seeds"] == 2
        assert "sentence" in metrics["verdict"][name]
        single = [m["comparison"]["tasks"][name]["single_task"] for m in per_seed]
        assert metrics["comparison"]["tasks"][name]["single_task"] == pytest.approx(np.mean(single))
        assert "p_value" in metrics["comparison"]["tasks"][name]["paired_test"]
    assert "(mean of 2 seeds)" in (out / "report.md").read_text()


def test_in_a_real_run_each_step_updates_only_the_head_of_the_task_its_batch_came_from(
        tmp_path: Path, tiny_model_dir: Path, multitask_files: dict[str, Path]) -> None:
    """Just before every optimizer step of a real run, only the sampled task's head holds gradients (the other
    head's are None: Trainer zeroes them to None after each step), and the shared encoder holds them every time."""
    from rich.console import Console
    from transformers import TrainerCallback

    from tailorlm.recipe import recipe_from_dict
    from tailorlm.run import run

    seen: list[tuple[bool, ...]] = []

    class HeadsWithGradients(TrainerCallback):
        def on_pre_optimizer_step(self, args: object, state: object, control: object, model: object = None,
                                  **kw: object) -> None:
            heads = tuple(any(p.grad is not None for p in model.heads[n].parameters()) for n in model.names)
            encoder = model.encoder.embeddings.word_embeddings.weight.grad is not None
            seen.append((*heads, encoder))

    raw = multitask_recipe(tmp_path, tiny_model_dir, multitask_files, steps=12, conflict_batches=0)
    raw["tasks"] = raw["tasks"][:2]
    raw["baseline"] = {"zero_shot": False, "linear_probe": False}
    recipe = recipe_from_dict(raw)
    metrics = run(recipe, Console(quiet=True), extra_callbacks=[HeadsWithGradients()])
    sizes = tuple(metrics["multitask"]["sampling"]["sizes"])
    schedule = SamplingPlan("temperature", sizes, 12, temperature=2.0).schedule(seed=recipe.training.seed)
    assert len(seen) == 12 and len(set(schedule)) == 2  # both tasks were sampled
    assert [(task == 0, task == 1, True) for task in schedule] == seen
