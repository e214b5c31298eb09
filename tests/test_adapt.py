"""Domain-adaptive continued pretraining (adapt.pretrain): perplexity goes down, no test text leaks into it, and a
`tailor run` fine-tunes (full or LoRA) on the adapted body while the baselines keep the original model."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from rich.console import Console

from tailorlm.errors import DataError, RecipeError
from tailorlm.recipe import recipe_from_dict
from tailorlm.rundir import RunDir
from tests.conftest import sentiment_rows
from tests.helpers import run_cli
from tests.test_bad_input import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")

JARGON = ["turbine", "gearbox", "nacelle", "yaw", "pitch", "blade", "rotor", "torque", "inverter", "scada"]
VERBS = ["checks", "resets", "logs", "aligns", "greases"]


def jargon_lines(n: int = 200, seed: int = 0) -> list[str]:
    """Short maintenance-log lines from a fixed small vocabulary: a domain a model can learn in a few steps."""
    rng = random.Random(seed)
    return [f"the {rng.choice(JARGON)} {rng.choice(VERBS)} the {rng.choice(JARGON)} {rng.choice(JARGON)}"
            for _ in range(n)]


def splits(test: list[str], train: list[str] | None = None) -> SimpleNamespace:
    """Prepared-data stand-in: only the text columns matter to the corpus."""
    return SimpleNamespace(train=pd.DataFrame({"text": train or []}), validation=pd.DataFrame({"text": []}),
                           test=pd.DataFrame({"text": test}))


def adapt_recipe(model: Path | str, **adapt: object) -> object:
    return recipe_from_dict({"model": {"name": str(model)}, "training": {"warmup": 0.0},
                             "adapt": {"pretrain": True, **adapt}})


# ------------------------------------------------------------------------------------------- corpus


def test_lines_equal_to_test_texts_are_dropped_and_counted(tmp_path: Path) -> None:
    from tailorlm.adapt.corpus import build_corpus

    test_text = "the rotor logs the yaw torque"
    domain = tmp_path / "domain.txt"
    # the same text after whitespace and unicode cleaning (double space, NBSP, zero-width space) must be caught
    domain.write_text(f"the gearbox resets the blade\n{test_text}\nthe  rotor logs\u00a0the yaw torque\n"
                      f"the\u200b rotor logs the yaw torque\n\nthe nacelle aligns the pitch\n", encoding="utf-8")
    corpus = build_corpus(adapt_recipe("minilm", text=str(domain), holdout=0.0),
                          splits([test_text], train=["the scada checks the inverter"]))
    assert corpus.counts["dropped_leaking"] == 3
    assert corpus.counts["dropped_empty"] == 1
    assert sorted(corpus.train) == ["the gearbox resets the blade", "the nacelle aligns the pitch",
                                    "the scada checks the inverter"]
    assert test_text not in corpus.train + corpus.holdout


def test_holdout_is_a_share_of_the_corpus_and_csv_columns_are_read(tmp_path: Path) -> None:
    from tailorlm.adapt.corpus import build_corpus

    domain = tmp_path / "notes.csv"
    pd.DataFrame({"id": range(50), "note": jargon_lines(50, seed=3)}).to_csv(domain, index=False)
    corpus = build_corpus(adapt_recipe("minilm", text=str(domain), text_column="note", holdout=0.2, max_rows=40),
                          splits(["unrelated test text"]))
    assert corpus.counts["from_file"] == 40
    kept = 40 - corpus.counts["dropped_duplicate"]
    assert len(corpus.holdout) == round(kept * 0.2) and len(corpus.train) + len(corpus.holdout) == kept
    assert not set(corpus.train) & set(corpus.holdout)


@pytest.mark.parametrize(
    ("content", "column", "needles"),
    [
        (None, "text", ["nowhere.txt", "adapt.text", "not found"]),
        ("id,body\n1,the rotor\n", "text", ["'text'", "adapt.text_column", "body"]),
        ("", "text", ["adapt.text", "empty"]),
        ("only the test text\n", "text", ["adapt.text", "validation/test"]),
    ],
    ids=["missing-file", "wrong-column", "empty-file", "all-leaking"],
)
def test_bad_domain_text_is_one_line(tmp_path: Path, content: str | None, column: str, needles: list[str]) -> None:
    from tailorlm.adapt.corpus import build_corpus

    suffix = ".csv" if content and content.startswith("id,") else ".txt"
    domain = tmp_path / (f"domain{suffix}" if content is not None else "nowhere.txt")
    if content is not None:
        domain.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        build_corpus(adapt_recipe("minilm", text=str(domain), text_column=column), splits(["only the test text"]))
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_recipe_checks_the_adapt_section() -> None:
    from tailorlm.recipe import load_recipe

    with pytest.raises(RecipeError, match=r"adapt\.holdout"):
        load_recipe(None, ["adapt.holdout=0.9"])
    with pytest.raises(RecipeError, match=r"adapt\.pretrain runs in one process"):
        load_recipe(None, ["adapt.pretrain=true", "training.num_processes=2"])
    with pytest.raises(RecipeError, match=r"unknown recipe key 'adapt\.mlm_prob'"):
        load_recipe(None, ["adapt.mlm_prob=0.2"])


def test_domain_file_is_hashed_for_resume_and_reproduce(tmp_path: Path) -> None:
    from tailorlm.provenance import data_files

    domain = tmp_path / "domain.txt"
    domain.write_text("the rotor logs the yaw\n", encoding="utf-8")
    assert "adapt.text" in data_files(adapt_recipe("minilm", text=str(domain)))
    off = recipe_from_dict({"adapt": {"pretrain": False, "text": str(domain)}})
    assert "adapt.text" not in data_files(off)  # an unused file cannot block a resume


# ------------------------------------------------------------------------------------------- pretraining


def test_dapt_lowers_heldout_masked_lm_perplexity(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tailorlm.adapt.pretrain import continue_pretraining, read_stats
    from tailorlm.models.loading import load_tokenizer
    from tailorlm.models.registry import resolve_model

    lines = jargon_lines()
    domain = tmp_path / "domain.txt"
    domain.write_text("\n".join(lines) + "\n", encoding="utf-8")
    recipe = adapt_recipe(tiny_model_dir, text=str(domain), learning_rate=5e-3, epochs=3, batch_size=16,
                          max_length=32)
    resolved = resolve_model(str(tiny_model_dir))
    adapted = continue_pretraining(recipe, resolved, load_tokenizer(resolved, recipe.model), splits([lines[0]]),
                                   RunDir.create(tmp_path / "run"), Console(quiet=True))
    assert adapted.path == (tmp_path / "run" / "adapted").resolve()
    assert (adapted.path / "model.safetensors").is_file() and not list(adapted.path.glob("*.bin"))
    stats = read_stats(adapted.path)
    assert stats["objective"] == "masked-lm" and stats["dropped_leaking"] == 1
    assert stats["new_head"] is True  # the fixture saved a bare BertModel: the MLM head is new, and said so
    assert stats["holdout_rows"] == round((200 - 1 - stats["dropped_duplicate"]) * 0.1)
    # a real margin: the random MLM head of a body that never saw this text vs one that pretrained on it
    assert stats["perplexity_after"] < stats["perplexity_before"] / 10, stats
    assert stats["steps"] == 3 * -(-stats["rows"] // 16)


def test_whole_word_masking_masks_every_piece_of_a_word(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from tailorlm.adapt.pretrain import _collator, _encode

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    recipe = adapt_recipe(tiny_model_dir, whole_word_mask=True, mlm_probability=0.5)
    texts = ["scada inverter gearbox nacelle", "the turbine", "yaw scada torque inverter greases nacelle"]
    dataset = _encode(texts, tokenizer, recipe, "mlm")
    batch = _collator(tokenizer, recipe, "mlm", seed=3)([dataset[i] for i in range(len(dataset))])  # ragged rows
    assert batch["input_ids"].shape == batch["labels"].shape and "offset_mapping" not in batch
    split_words = 0
    for i in range(len(texts)):
        word_ids = tokenizer(texts[i], truncation=True, max_length=recipe.adapt.max_length).word_ids()
        masked = batch["labels"][i, : len(word_ids)] != -100
        for word in {w for w in word_ids if w is not None}:
            pieces = [masked[j].item() for j, w in enumerate(word_ids) if w == word]
            split_words += len(pieces) > 1
            assert all(pieces) or not any(pieces), (texts[i], word, pieces)
    assert split_words and batch["labels"].ne(-100).any()


def test_decoders_get_causal_lm_and_encoder_decoders_are_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BartConfig, LlamaConfig, LlamaForCausalLM

    from tailorlm.adapt.pretrain import continue_pretraining, objective, read_stats
    from tailorlm.errors import ModelError
    from tailorlm.models.registry import ResolvedModel, resolve_model

    decoder = tmp_path / "tiny-llama"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                 max_position_embeddings=64)).save_pretrained(decoder)
    tokenizer.save_pretrained(decoder)
    lines = jargon_lines(120, seed=2)
    recipe = adapt_recipe(decoder, learning_rate=5e-3, epochs=2, batch_size=16, max_length=32)
    resolved = resolve_model(str(decoder))
    assert objective(resolved, recipe) == "clm"
    continue_pretraining(recipe, resolved, tokenizer, splits([lines[0]], train=lines),
                         RunDir.create(tmp_path / "run"), Console(quiet=True))
    stats = read_stats(tmp_path / "run" / "adapted")
    assert stats["objective"] == "causal-lm" and stats["dropped_leaking"] == 1 and stats["new_head"] is False
    assert stats["perplexity_after"] < stats["perplexity_before"] / 5, stats

    seq2seq = tmp_path / "tiny-bart"
    BartConfig(vocab_size=100, d_model=16).save_pretrained(seq2seq)
    with pytest.raises(ModelError, match="encoder-decoder"):
        objective(ResolvedModel(name="tiny-bart", source=str(seq2seq), is_local=True), recipe)


def test_resumed_run_reuses_a_complete_adapted_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      tiny_model_dir: Path) -> None:
    import shutil

    from tailorlm import adapt
    from tailorlm.adapt import pretrain
    from tailorlm.models.registry import resolve_model

    run_dir = RunDir.create(tmp_path / "run")
    folder = run_dir.path / "adapted"
    shutil.copytree(tiny_model_dir, folder)
    (folder / pretrain.STATS_FILE).write_text(json.dumps({"rows": 7}), encoding="utf-8")
    monkeypatch.setattr(pretrain, "continue_pretraining", lambda *a, **k: pytest.fail("pretrained again"))
    run_dir.resume_from = run_dir.checkpoints / "checkpoint-4"
    body, entry = adapt.adapt_model(adapt_recipe(tiny_model_dir), resolve_model(str(tiny_model_dir)), None,
                                    splits(["x"]), run_dir, Console(quiet=True))
    assert body.path == folder.resolve() and entry == {"pretrain": {"rows": 7}}
    run_dir.resume_from = None  # a fresh run pretrains again, whatever an older run left
    with pytest.raises(pytest.fail.Exception, match="pretrained again"):
        adapt.adapt_model(adapt_recipe(tiny_model_dir), resolve_model(str(tiny_model_dir)), None, splits(["x"]),
                          run_dir, Console(quiet=True))


# ------------------------------------------------------------------------------------------- tailor run


@pytest.fixture(scope="module")
def dapt_recipe(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    work = tmp_path_factory.mktemp("dapt")
    data = work / "reviews.csv"
    pd.DataFrame(sentiment_rows(160)).to_csv(data, index=False)
    domain = work / "domain.txt"
    domain.write_text("\n".join(jargon_lines(120, seed=1)) + "\n", encoding="utf-8")
    recipe = work / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "classification",
        "output_dir": str(work / "out"),
        "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.25}},
        "training": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "early_stopping_patience": None},
        "baseline": {"linear_probe": False},
        "adapt": {"pretrain": True, "text": str(domain), "learning_rate": 5e-3, "epochs": 2, "max_length": 32},
    }))
    return recipe


def test_tailor_run_fine_tunes_the_adapted_body(dapt_recipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tailorlm.tasks.classification.task import ClassificationTask

    out = dapt_recipe.parent / "out"
    seen: dict[str, str] = {}
    build, baselines = ClassificationTask.build_model, ClassificationTask.baselines

    def spy_build(self: ClassificationTask, resolved: object, *args: object) -> object:
        seen["build"] = resolved.source
        return build(self, resolved, *args)

    def spy_baselines(self: ClassificationTask, recipe: object, data: object, resolved: object, *args: object) -> dict:
        seen["baselines"] = resolved.source
        return baselines(self, recipe, data, resolved, *args)

    monkeypatch.setattr(ClassificationTask, "build_model", spy_build)
    monkeypatch.setattr(ClassificationTask, "baselines", spy_baselines)
    code, stdout, stderr = run_cli(["run", str(dapt_recipe)])
    assert code == 0, stderr
    assert "domain perplexity on held-out text" in stderr + stdout
    adapted = out / "adapted"
    assert (adapted / "model.safetensors").is_file() and (adapted / "adapt.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    pretrain = metrics["adapt"]["pretrain"]
    assert {"rows", "holdout_rows", "dropped_leaking", "perplexity_before", "perplexity_after", "steps",
            "runtime_s"} <= set(pretrain)
    assert pretrain["from_file"] == 120 and pretrain["from_train"] == metrics["data"]["train"]
    assert pretrain["perplexity_after"] < pretrain["perplexity_before"]
    # the head is trained on the adapted body; the baselines measure what the team started from
    assert seen == {"build": str(adapted.resolve()), "baselines": metrics["model"]["base"]}
    assert "adapted" not in metrics["model"]["base"] and "zero_shot" in metrics["baseline"]
    saved = json.loads((out / "model" / "tailor_model.json").read_text())
    assert saved["base_model"] == "../adapted"  # built on the adapted body, which moves with the run directory
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert 'id="domain-adaptation"' in html and "## Domain adaptation" in md
    assert f"{pretrain['rows']:,} unlabelled domain texts" in md and "no pretraining head" in md


def test_lora_on_top_of_the_adapted_body(dapt_recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "lora"
    code, _, stderr = run_cli(["run", str(dapt_recipe), "--set", f"output_dir={out}", "--set", "model.peft.method=lora",
                               "--set", "model.peft.r=4", "--set", "training.epochs=1", "--set", "adapt.epochs=1"])
    assert code == 0, stderr
    assert (out / "model" / "adapter_model.safetensors").is_file() and (out / "adapted" / "adapt.json").is_file()
    meta = json.loads((out / "model" / "tailor_model.json").read_text())
    assert meta["base_model"] == "../adapted"  # the adapter is reloaded on the adapted body, wherever the run goes
    moved = tmp_path / "moved"
    shutil.move(out, moved)
    code, stdout, stderr = run_cli(["predict", str(moved), "--text", "the bill was awful and slow"])
    assert code == 0, stderr
    assert json.loads(stdout)["label"] in {"negative", "positive"}


def test_missing_domain_file_through_the_cli(dapt_recipe: Path, tmp_path: Path) -> None:
    code, _, stderr = run_cli(["run", str(dapt_recipe), "--set", f"output_dir={tmp_path / 'bad'}",
                               "--set", f"adapt.text={tmp_path / 'no-such.txt'}"])
    assert_one_line_error(code, stderr, "no-such.txt", "adapt.text")
