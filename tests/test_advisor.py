"""`tailor models --task`: the model advisor's catalogue, memory fit, ranking, CLI and errors (no network)."""

from __future__ import annotations

import json

import pytest

from tailorlm.errors import UserError
from tests.helpers import run_cli


@pytest.mark.parametrize("name", ["google-bert/bert-base-uncased", "Qwen/Qwen2.5-0.5B", "google-t5/t5-small"])
def test_catalogue_counts_match_a_config_built_count(name: str) -> None:
    """The written-down shape builds (on the meta device) a model of the published size, within 2%."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from tailorlm.models.advisor import CATALOGUE, catalogue_config
    from tailorlm.models.estimate import meta_model

    entry = CATALOGUE[name]
    auto = {"encoder": AutoModel, "decoder": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM}[entry.kind]
    model = meta_model(auto, catalogue_config(name))
    counted = sum(p.numel() for p in model.parameters())
    assert counted == pytest.approx(entry.params, rel=0.02)
    assert all(p.device.type == "meta" for p in model.parameters())


def test_parse_memory_forms() -> None:
    from tailorlm.models.advisor import parse_memory

    assert parse_memory("8 GB") == 8 * 10**9
    assert parse_memory("8GiB") == 8 * 2**30
    assert parse_memory("8000M") == 8 * 10**9
    assert parse_memory("512mib") == 512 * 2**20
    for bad in ("lots", "8", "GiB", "-1G"):
        with pytest.raises(UserError, match="--memory"):
            parse_memory(bad)


def test_tiny_budget_recommends_a_small_model() -> None:
    """700 MiB at batch 4 × 128 tokens: the base-size encoders do not fit, a small one is recommended."""
    from tailorlm.models.advisor import advise

    report = advise("classification", memory="700MiB", device="cpu", batch=4, seq=128)
    by_name = {a.name: a for a in report.models}
    for big in ("google-bert/bert-base-uncased", "FacebookAI/roberta-base", "microsoft/deberta-v3-base"):
        assert not by_name[big].fits
    assert report.recommended is not None and report.models[0].name == report.recommended
    assert by_name[report.recommended].parameters < 100e6 and by_name[report.recommended].fits
    assert "minilm" in by_name and by_name["minilm"].offline == "shipped"
    assert by_name["minilm"].kind != "decoder"  # the task's kind: no decoder aliases for classification
    # fitting ones first, then the rest
    fits = [a.fits for a in report.models]
    assert fits == sorted(fits, reverse=True)
    for advice in report.models:
        assert advice.lora_bytes < advice.full_bytes
        assert advice.lora_trainable < advice.parameters
        assert advice.tokens_per_s is not None and advice.tokens_per_s > 0

    only_full = advise("classification", memory="700MiB", device="cpu", peft="none", batch=4, seq=128)
    assert not any(a.fits_lora for a in only_full.models)


def test_cli_table_and_json() -> None:
    """Plain `tailor models` keeps its alias list (tests/test_speed_scale.py); --task prints the advice."""
    args = ["models", "--task", "classification", "--memory", "8GiB", "--device", "cpu", "--batch-size", "8"]
    code, out, err = run_cli(args)
    assert code == 0, err
    assert "minilm" in out and "google-bert/bert-base-uncased" in out and "recommended:" in out
    assert "speed: an estimate" in out and "6 × parameters" in out and "matmul measured" in out
    code, out, err = run_cli([*args, "--json"])
    assert code == 0, err
    data = json.loads(out)
    assert data["memory_bytes"] == 8 * 2**30 and data["batch_size"] == 8 and data["device"] == "cpu"
    names = [m["name"] for m in data["models"]]
    assert data["recommended"] in names and "speed is an estimate" in data["speed_note"]
    assert all(m["kind"] == "encoder" for m in data["models"])


@pytest.mark.parametrize(("args", "needle"), [
    (["--task", "classification", "--memory", "lots"], "--memory"),
    (["--task", "summarize"], "task 'summarize' is not known"),
])
def test_bad_input_is_one_line_exit_2(args: list[str], needle: str) -> None:
    code, _out, err = run_cli(["models", *args])
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1
