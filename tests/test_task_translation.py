"""Translation: reading pairs and their rejects, BLEU/chrF, and `tailor run` end to end on tiny random T5 and Marian.

The models are built from configs with random weights and a word-level tokenizer trained on the demo pairs
(no sentencepiece, no download), so a few seconds of training lifts BLEU well above the untrained model's.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tailorlm.data.pipeline import prepare
from tailorlm.demos.translation import PROBLEMS, demo_pairs, generate_demo_mt
from tailorlm.errors import DataError
from tailorlm.recipe import DataConfig
from tailorlm.tasks.translation.data import PairRows
from tailorlm.tasks.translation.task import corpus_scores, lowercases, task_prefix
from tests.helpers import run_cli

SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2: pad (also the decoder start), eos, unk


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tokenizer() -> object:
    """A word-level tokenizer over the demo vocabulary, appending </s> like T5 and Marian tokenizers do."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    pairs = demo_pairs(600)
    words = [*pairs["source"], *pairs["target"], "translate Scots to English:"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=128)


def _save(model: object, tokenizer: object, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


@pytest.fixture(scope="module")
def tiny_t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = _tokenizer()
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=64, d_ff=128, num_layers=2, num_heads=4, d_kv=16,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, dropout_rate=0.0)
    return _save(T5ForConditionalGeneration(config), tokenizer, tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="module")
def tiny_marian_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import MarianConfig, MarianMTModel

    tokenizer = _tokenizer()
    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=len(tokenizer), d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=128,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, forced_eos_token_id=1, dropout=0.0,
        scale_embedding=True,  # embeddings x sqrt(d_model): a tiny random Marian learns several times faster
    )
    return _save(MarianMTModel(config), tokenizer, tmp_path_factory.mktemp("tiny-marian"))


@pytest.fixture(scope="module")
def mt_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate_demo_mt(tmp_path_factory.mktemp("scots_mt"), n_rows=200, seed=7)


def _recipe(folder: Path, model: Path, files: dict[str, Path], **overrides: object) -> Path:
    recipe = {
        "task": "translation",
        "output_dir": str(folder / "out"),
        "model": {"name": str(model)},
        "data": {"train": str(files["train"]), "validation": str(files["validation"]), "test": str(files["test"]),
                 "source_lang": "sco", "target_lang": "en"},
        "training": {"epochs": 8, "batch_size": 16, "learning_rate": 3e-3, "warmup": 0.0,
                     "early_stopping_patience": None},
        "generation": {"max_new_tokens": 24, "samples": 3, "max_eval_rows": 20},
    }
    for dotted, value in overrides.items():
        node = recipe
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[leaf] = value  # type: ignore[index]
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def _section(html: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">(.*?)</section>', html, flags=re.DOTALL)
    assert match, f"section {sid} missing"
    return match.group(1)


# ------------------------------------------------------------------------------------------ demo data


def test_demo_pairs_are_deterministic_distinct_and_cover_every_phrase() -> None:
    first, again = demo_pairs(120, seed=3), demo_pairs(120, seed=3)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(demo_pairs(120, seed=4))
    assert first["source"].is_unique and len(first) == 120
    for scots, english in PROBLEMS:
        rows = first[first["source"].str.contains(scots, regex=False)]
        assert len(rows) >= 1 and rows["target"].str.contains(english, regex=False).all(), scots


# ------------------------------------------------------------------------------------------ reading pairs


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_pairs_rejects_carry_their_reason_and_counts_add_up(tmp_path: Path) -> None:
    good = [{"source": f"we've nae power {i}", "target": f"we have no power {i}"} for i in range(30)]
    bad = [
        {"source": "", "target": "an empty source"},
        {"source": "the lights are oot", "target": ""},
        {"source": "we've nae power 3", "target": "we have no power 3"},  # duplicate of row 4
        {"source": "WE'VE NAE POWER 3!", "target": "We have no power 3."},  # near duplicate
    ]
    train = _write(tmp_path / "train.csv", good + bad)
    test = _write(tmp_path / "test.csv", [{"source": "we've nae power 5", "target": "we have no power 5"},
                                          {"source": "naebody came oot", "target": "nobody came out"}])
    data = prepare(DataConfig(train=str(train), test=str(test), split={"validation": 0.1, "test": 0.0}), PairRows())
    reasons = sorted(r["reason"] for r in data.rejects)
    assert reasons == ["duplicate", "empty_target", "empty_text", "leakage", "near_duplicate"]
    empty_target = next(r for r in data.rejects if r["reason"] == "empty_target")
    assert empty_target["row"] == 32 and empty_target["split"] == "train" and empty_target["source"] == str(train)
    assert empty_target["text"] == "the lights are oot" and "data.target_column" not in empty_target["detail"]
    leak = next(r for r in data.rejects if r["reason"] == "leakage")
    assert "test row 1" in leak["detail"]
    assert list(data.train.columns) == ["src_text", "tgt_text", "source", "row"]
    report = data.report
    assert report["rows_read"] == {"train": 34, "validation": 0, "test": 2}
    assert report["rows_kept"]["train"] + report["rows_kept"]["validation"] + report["rows_rejected"]["train"] == 34
    assert report["removed"]["empty_target"] == 1 and report["length_unit"] == "words"
    assert report["split_from_train"] == {"validation": True, "test": False}
    assert {"length", "target_length", "stages", "warnings", "sources"} <= set(report)


def test_repeated_sources_are_kept_and_their_overlap_reported(tmp_path: Path) -> None:
    """A source that recurs with another translation is not leakage: only the exact pair is; the shared
    sources are counted in the data report (source_overlap)."""
    train = _write(tmp_path / "train.csv", [{"source": "thank ye kindly", "target": f"thank you, visitor {i}"}
                                            for i in range(20)] + [{"source": "aye", "target": "yes"}])
    test = _write(tmp_path / "test.csv", [{"source": "thank ye kindly", "target": "many thanks"},
                                          {"source": "aye", "target": "yes"}, {"source": "naw", "target": "no"}])
    data = prepare(DataConfig(train=str(train), test=str(test), split={"validation": 0.0}), PairRows())
    leaks = [(r["row"], r["detail"]) for r in data.rejects if r["reason"] == "leakage"]
    assert leaks == [(21, "same pair as test row 2")]
    assert len(data.train) == 20 and data.report["source_overlap"]["test"] == {"rows": 1, "of": 3}


def test_missing_column_names_the_translation_key(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.csv", [{"src": "aye", "target": "yes"}])
    with pytest.raises(DataError, match=r"no column 'source' \(data\.source_column\).*did you mean 'src'"):
        prepare(DataConfig(train=str(train)), PairRows())


def test_jsonl_pairs_with_custom_columns(tmp_path: Path) -> None:
    rows = [{"sco": f"the lights are oot {i}", "en": f"the lights are out {i}"} for i in range(20)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n", encoding="utf-8")
    data = prepare(DataConfig(train=str(path), source_column="sco", target_column="en"), PairRows())
    assert len(data.train) + len(data.validation) + len(data.test) == 20
    assert [r["reason"] for r in data.rejects] == ["malformed_json"]
    assert data.test["tgt_text"].str.startswith("the lights are out").all()


def test_a_file_with_only_empty_targets_is_one_clear_error(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.csv", [{"source": f"aye {i}", "target": ""} for i in range(5)])
    with pytest.raises(DataError, match=r"no usable pairs after cleaning \(5 rejected: 5 empty_target\)"):
        prepare(DataConfig(train=str(train)), PairRows())


# ------------------------------------------------------------------------------------------ metrics


def test_bleu_and_chrf_through_sacrebleu_on_a_hand_example() -> None:
    reference = "the cat sat on the mat"
    assert corpus_scores([reference], [reference]) == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}
    # 1- to 4-gram precisions 6/7, 4/6, 3/5, 2/4; the output is longer, so no brevity penalty
    scores = corpus_scores(["the cat sat on the red mat"], [reference])
    expected = 100 * math.exp(sum(math.log(p) for p in (6 / 7, 4 / 6, 3 / 5, 2 / 4)) / 4)
    assert scores["bleu"] == pytest.approx(expected, abs=1e-6)
    assert scores["bleu"] < scores["chrf"] < 100.0
    assert corpus_scores(["nothing alike"], [reference])["bleu"] == pytest.approx(0.0)


def test_an_uncased_model_is_scored_case_insensitively_and_says_so(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    assert lowercases(AutoTokenizer.from_pretrained(tiny_model_dir))  # MiniLM's uncased vocabulary
    cased = corpus_scores(["i am moving house"], ["I am moving house"])
    folded = corpus_scores(["i am moving house"], ["I am moving house"], lowercase=True)
    assert cased["bleu"] < 100.0 and "case_insensitive" not in cased
    assert folded == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0), "case_insensitive": True}


def test_t5_prefix_only_for_t5_families_with_both_languages() -> None:
    assert task_prefix("t5", "en", "de") == "translate English to German: "
    assert task_prefix("mt5", "sco", "xx") == "translate Scots to xx: "
    assert task_prefix("marian", "en", "de") == ""
    assert task_prefix("t5", None, "de") == ""


# ------------------------------------------------------------------------------------------ recipe errors


def test_no_model_name_means_the_offline_minilm_seq2seq(tmp_path: Path, mt_files: dict[str, Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With no model named, translation warm-starts an encoder-decoder from the shipped MiniLM, built once."""
    monkeypatch.setenv("TAILORLM_CACHE", str(tmp_path / "cache"))
    recipe = _recipe(tmp_path, Path("x"), mt_files)
    raw = yaml.safe_load(recipe.read_text())
    del raw["model"]
    recipe.write_text(yaml.safe_dump(raw))
    code, _, stderr = run_cli(["prepare", str(recipe)])
    assert code == 0, stderr
    folder = tmp_path / "cache" / "minilm-l6-seq2seq"
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "encoder-decoder" and config["decoder"]["add_cross_attention"] is True
    assert list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))


def test_an_encoder_only_model_is_refused_clearly(tmp_path: Path, tiny_model_dir: Path,
                                                  mt_files: dict[str, Path]) -> None:
    code, _, stderr = run_cli(["run", str(_recipe(tmp_path, tiny_model_dir, mt_files))])
    assert code == 2
    assert "is not a seq2seq (encoder-decoder) model" in stderr and "Traceback" not in stderr


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def t5_run(tmp_path_factory: pytest.TempPathFactory, tiny_t5_dir: Path, mt_files: dict[str, Path]) -> Path:
    work = tmp_path_factory.mktemp("t5-run")
    code, stdout, stderr = run_cli(["run", str(_recipe(work, tiny_t5_dir, mt_files))])
    assert code == 0, stderr
    assert "before vs after" in stdout and "bleu" in stdout and "chrf" in stdout
    return work / "out"


def _check_metrics(run: Path, n_test: int) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "translation"
    before, after = metrics["baseline"]["pretrained"], metrics["tuned"]
    for scores in (before, after):
        assert 0.0 <= scores["bleu"] <= 100.0 and 0.0 <= scores["chrf"] <= 100.0 and scores["loss"] > 0
        assert scores["n"] == n_test
    # an untrained random model produces noise; a few seconds of tuning must beat it clearly
    assert after["bleu"] > before["bleu"] + 10 and after["chrf"] > before["chrf"] + 10
    assert after["loss"] < before["loss"]
    copied = metrics["baseline"]["copy_source"]  # the no-model reference, scored on the same rows
    assert copied["n"] == n_test and 0.0 <= copied["bleu"] <= 100.0 and "loss" not in copied
    # a real seq2seq model's "before" is a reference; only the shipped warm start (random cross-attention) is a floor
    assert before["floor"] is False and copied["floor"] is False
    samples = metrics["samples"]
    assert len(samples) == 3
    for sample in samples:
        assert set(sample) == {"source", "reference", "before", "after"}
        assert isinstance(sample["before"], str) and isinstance(sample["after"], str)
    assert all(set(e) == {"source", "reference", "predicted", "chrf"} for e in metrics["errors"])
    return metrics


def test_t5_run_directory_metrics_and_report(t5_run: Path, mt_files: dict[str, Path]) -> None:
    for name in ["recipe.resolved.yaml", "run_info.json", "data_report.json", "rejects.jsonl", "metrics.json",
                 "log_history.json", "report.html", "report.md", "status.json"]:
        assert (t5_run / name).is_file(), name
    assert (t5_run / "model" / "model.safetensors").is_file() and not list((t5_run / "model").glob("*.bin"))
    meta = json.loads((t5_run / "model" / "tailor_model.json").read_text())
    assert meta["task"] == "translation" and meta["prefix"] == "translate Scots to English: "
    metrics = _check_metrics(t5_run, n_test=len(pd.read_csv(mt_files["test"])))
    assert metrics["validation"]["loss"] > 0

    html = (t5_run / "report.html").read_text(encoding="utf-8")
    assert "Fine-tuning raised BLEU on the test split" in _section(html, "summary")
    comparison = _section(html, "comparison")
    assert "BLEU" in comparison and "chrF" in comparison
    assert f"{metrics['tuned']['bleu']:.3f}" in comparison
    assert f"{metrics['baseline']['pretrained']['chrf']:.3f}" in comparison
    samples = _section(html, "samples")
    assert "Before and after" in samples and "Before tuning" in samples and "After tuning" in samples
    assert metrics["samples"][0]["reference"] in samples
    for absent in ("confusion", "per-class"):
        assert f'id="{absent}"' not in html and f'href="#{absent}"' not in html
    assert "Target length" in _section(html, "data-quality")
    md = (t5_run / "report.md").read_text(encoding="utf-8")
    assert "## Before and after" in md and "confuses labels" not in md


def test_eval_reloads_the_saved_model_and_scores_a_file(t5_run: Path, mt_files: dict[str, Path],
                                                        tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    code, stdout, stderr = run_cli(["eval", str(t5_run), "--data", str(mt_files["test"]), "--output", str(out)])
    assert code == 0, stderr
    result = json.loads(out.read_text())
    tuned = json.loads((t5_run / "metrics.json").read_text())["tuned"]
    assert result["bleu"] == pytest.approx(tuned["bleu"], abs=1e-6)  # the same rows, the same decoding
    assert "bleu" in stdout


def test_marian_run(tmp_path: Path, tiny_marian_dir: Path, mt_files: dict[str, Path]) -> None:
    recipe = _recipe(tmp_path, tiny_marian_dir, mt_files, training__learning_rate=1e-2)
    code, _, stderr = run_cli(["run", str(recipe)])
    assert code == 0, stderr
    run = tmp_path / "out"
    _check_metrics(run, n_test=len(pd.read_csv(mt_files["test"])))
    assert json.loads((run / "model" / "tailor_model.json").read_text())["prefix"] == ""  # not a T5 family
    html = (run / "report.html").read_text(encoding="utf-8")
    assert '<section id="samples">' in html and "Fine-tuning raised BLEU" in html


def test_lora_on_t5_saves_an_adapter_that_reloads(tmp_path: Path, tiny_t5_dir: Path,
                                                  mt_files: dict[str, Path]) -> None:
    recipe = _recipe(tmp_path, tiny_t5_dir, mt_files, model__peft={"method": "lora", "r": 4},
                     training__epochs=2, baseline__zero_shot=False)
    code, _, stderr = run_cli(["run", str(recipe)])
    assert code == 0, stderr
    run = tmp_path / "out"
    assert (run / "model" / "adapter_model.safetensors").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 < metrics["train"]["trainable_params"] < metrics["train"]["total_params"]
    assert list(metrics["baseline"]) == ["copy_source"] and {"bleu", "chrf", "loss"} <= set(metrics["tuned"])
    assert all(s["before"] is None for s in metrics["samples"])  # no pretrained model measured, nothing to show
    out = tmp_path / "eval.json"
    code, _, stderr = run_cli(["eval", str(run), "--data", str(mt_files["test"]), "--output", str(out)])
    assert code == 0, stderr
    assert json.loads(out.read_text())["bleu"] == pytest.approx(metrics["tuned"]["bleu"], abs=1e-4)
