"""Each task's spec (tasks/<name>/spec.py) states facts the code relies on; these tests hold the spec to the code.

A spec that drifted from its task (a main metric the task never reports, a capability its class lacks, a default
model that is no shipped alias) would turn into a wrong report or a traceback far from the cause.
"""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailorlm.recipe import Recipe
from tailorlm.tasks import TASK_NAMES, TASK_SPECS, get_spec, get_task
from tailorlm.tasks.base import EvalSettings, Task
from tailorlm.tasks.spec import CAPABILITIES, CardText, Demo, Metric, TaskSpec

SPECS = list(TASK_SPECS.values())
IDS = [spec.name for spec in SPECS]


def test_the_registry_is_the_recipes_task_list_and_each_package_exports_its_spec() -> None:
    import importlib

    assert typing.get_args(Recipe.model_fields["task"].annotation) == TASK_NAMES
    for name, spec in TASK_SPECS.items():
        assert spec.name == name and get_spec(name) is spec
        package = importlib.import_module(spec.task_class.partition(":")[0].rsplit(".", 1)[0])
        assert package.SPEC is spec
        task = get_task(name)
        assert task.spec is spec and task.name == name
        assert type(task).__module__ == f"{package.__name__}.task"  # the Task lives in the package's task.py


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_main_metric_is_the_reports_and_its_direction_agrees(spec: TaskSpec) -> None:
    from tailorlm.metric_names import TASK_MAIN_METRIC, greater_is_better

    assert spec.main_metric.name == TASK_MAIN_METRIC[spec.name]
    assert spec.main_metric.greater_is_better == greater_is_better(spec.main_metric.name)
    assert spec.select_metric.greater_is_better == greater_is_better(spec.select_metric.name)


def test_main_and_select_metric_differ_only_where_the_main_one_is_costly() -> None:
    differ = {spec.name: (spec.main_metric.name, spec.select_metric.name) for spec in SPECS
              if spec.main_metric != spec.select_metric}
    assert differ == {"translation": ("bleu", "loss"), "generation": ("perplexity", "loss")}


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_default_model_is_a_shipped_alias_and_the_model_classes_exist(spec: TaskSpec) -> None:
    import transformers
    from peft import TaskType

    from tailorlm.models.registry import ALIASES

    assert spec.default_model in ALIASES
    assert spec.model_name(None) == spec.default_model and spec.model_name("x/y") == "x/y"
    assert spec.auto_class() is getattr(transformers, spec.auto_model_class)
    assert TaskType(spec.peft_task_type)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_capabilities_match_what_the_task_class_does(spec: TaskSpec) -> None:
    task_class = spec.load_task_class()
    assert spec.has("proba") == (task_class.predict_proba is not Task.predict_proba)
    assert spec.has("calibration") == (task_class.calibrate is not Task.calibrate)
    for needs_proba in ("self_train", "fairness"):  # pseudo-labels and counterfactual swaps read probabilities
        assert not spec.has(needs_proba) or spec.has("proba")
    assert not spec.has("kfold") or spec.has("stratify")  # folds cut one labelled row per text
    assert not (spec.has("labels") and spec.has("generates"))


def test_a_task_without_probabilities_says_so() -> None:
    with pytest.raises(NotImplementedError, match="no class probabilities"):
        get_task("qa").predict_proba(None, None, ["x"], 8, 1)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_demo_generator_and_card_texts_resolve(spec: TaskSpec) -> None:
    assert callable(spec.demo.load())
    assert spec.demo.default_out.startswith("examples/data/")
    assert "{n}" in spec.card.length_note
    labels = ["PER", "LOC"] if spec.has("labels") else []
    text = spec.card.describe({"source_lang": "sco", "target_lang": "en"}, labels, lambda t: f"`{t}`")
    assert text.endswith(".") and all(f"`{label}`" in text for label in labels)


def test_the_card_shows_a_pipeline_call_for_the_encoder_tasks_only() -> None:
    with_pipeline = {spec.name for spec in SPECS if spec.card.pipeline_call is not None}
    assert with_pipeline == {"classification", "token-classification", "qa"}


def test_a_spec_refuses_an_unknown_capability() -> None:
    base = get_spec("qa")
    with pytest.raises(ValueError, match="unknown capabilities"):
        TaskSpec(base.name, base.task_class, None, Metric("f1", True), Metric("f1", True), "x", "SEQ_CLS",
                 "AutoModel", Demo("m:f", "examples/data/x"), CardText(base.card.describe),
                 frozenset({"telepathy"}))
    with pytest.raises(KeyError):
        base.has("telepathy")
    assert set(CAPABILITIES) >= {"proba", "kfold", "self_train", "per_example_loss", "fairness", "calibration"}


def test_reading_specs_and_the_recipe_imports_no_model_library() -> None:
    code = ("import sys, tailorlm.tasks, tailorlm.recipe, tailorlm.serve.card; "
            "print(sorted(m for m in ('torch', 'transformers', 'sacrebleu', 'seqeval') if m in sys.modules))")
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ the main metric is what evaluate reports


def test_classification_evaluate_reports_its_main_metric(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    frame = pd.DataFrame({"text": ["good service", "bad service", "fine"], "label": ["pos", "neg", "pos"]})
    out = get_task("classification").evaluate(model, AutoTokenizer.from_pretrained(tiny_model_dir), frame,
                                              {"labels": ["neg", "pos"]}, EvalSettings(16))
    assert get_spec("classification").main_metric.name in out["metrics"]


def test_token_classification_evaluate_reports_its_main_metric(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tags = ["O", "B-LOC", "I-LOC"]
    model = AutoModelForTokenClassification.from_pretrained(
        tiny_model_dir, num_labels=3, id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)})
    frame = pd.DataFrame({"tokens": [["rain", "in", "glenmor"], ["sun"]], "tags": [["O", "O", "B-LOC"], ["O"]]})
    out = get_task("token-classification").evaluate(model, AutoTokenizer.from_pretrained(tiny_model_dir), frame,
                                                    {"labels": ["LOC"], "tags": tags}, EvalSettings(16))
    assert get_spec("token-classification").main_metric.name in out["metrics"]


def test_qa_translation_and_generation_metric_functions_report_their_main_metric() -> None:
    """The functions their evaluate builds ``metrics`` with, on a tiny random causal LM for perplexity."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from tailorlm.tasks.generation.task import perplexity
    from tailorlm.tasks.qa.task import squad_metrics
    from tailorlm.tasks.translation.task import corpus_scores

    assert get_spec("qa").main_metric.name in squad_metrics(["4pm"], [["4pm"]])
    assert get_spec("translation").main_metric.name in corpus_scores(["a wee dug"], ["a small dog"])
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=16, n_positions=16))
    metrics = perplexity(model, [{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}], 1, 0)
    assert get_spec("generation").main_metric.name in metrics and np.isfinite(metrics["perplexity"])
