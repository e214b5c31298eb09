"""Issue 20, part A: fast feedback before the heavy stack loads, every recipe error at once, a did-you-mean over
full dotted keys, `tailor keys`, `--version`/`-h`, `tailor models` that converts nothing, `tailor cache`, the
advisor offline, and `tailor estimate` at the run's own length."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tailorlm.errors import ModelError, RecipeError
from tailorlm.recipe import load_recipe, recipe_from_dict
from tests.helpers import run_cli

SRC = str(Path(__file__).resolve().parents[1] / "src")
HEAVY = ("torch", "transformers", "peft", "pandas")


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                          timeout=120, check=False)


def _cli_without_heavy_imports(args: list[str], **env: str) -> tuple[int, str, list[str]]:
    """Run the CLI in a fresh interpreter; return (exit code, stderr, heavy modules imported by the end)."""
    code = (
        "import sys\nfrom tailorlm.cli import main\n"
        f"sys.argv = ['tailor', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\nelse:\n    code = 0\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    done = _python(code, **env)
    lines = done.stderr.strip().splitlines()
    heavy = json.loads(lines[-1].removeprefix("HEAVY ").replace("'", '"'))
    return done.returncode, "\n".join(lines[:-1]), heavy


# ------------------------------------------------------------------ fast feedback


def test_cli_recipe_tasks_and_checks_import_without_torch() -> None:
    modules = ["tailorlm.cli", "tailorlm.recipe", "tailorlm.tasks", "tailorlm.errors", "tailorlm.keys",
               "tailorlm.precheck", "tailorlm.models.registry", "tailorlm.models.cache", "tailorlm.data.load"]
    done = _python("import sys\n" + "".join(f"import {m}\n" for m in modules)
                   + f"print([m for m in {HEAVY!r} if m in sys.modules])")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_bad_files_columns_and_model_fail_before_torch_all_at_once(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text("text,label\nhello there,a\nbye now,b\n", encoding="utf-8")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'run'}\nmodel: {{name: minilmm}}\n"
                      f"data: {{train: {train}, test: {tmp_path / 'nope.csv'}, text_column: txt}}\n", encoding="utf-8")
    started = time.monotonic()
    code, err, heavy = _cli_without_heavy_imports(["run", str(recipe)])
    assert code == 2 and heavy == [], (err, heavy)
    assert time.monotonic() - started < 30  # a fresh interpreter on a busy 2-core box; the point is `heavy`
    assert len(err.splitlines()) == 1, err
    assert "3 problems" in err and "no column 'txt' (data.text_column)" in err and "did you mean 'text'" in err
    assert "nope.csv: file not found (data.test)" in err
    assert "minilmm" in err and "did you mean 'minilm'?" in err and "offline choices: minilm" in err


def test_a_typo_d_model_name_offline_fails_in_under_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    from tailorlm.models.registry import check_model_name

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"minilmm: .*HF_HUB_OFFLINE=1 is set.*did you mean 'minilm'\?") as info:
        check_model_name("minilmm")
    assert time.monotonic() - started < 1.0
    assert "\n" not in str(info.value) and "smollm2" in str(info.value)


def test_an_unreachable_hub_is_noticed_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    from tailorlm.models.offline import hub_unreachable
    from tailorlm.models.registry import check_model_name

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens, refused at once
    started = time.monotonic()
    assert "127.0.0.1" in (hub_unreachable() or "")
    with pytest.raises(ModelError, match="the hub cannot be reached"):
        check_model_name("some-org/no-such-model")
    assert time.monotonic() - started < 2.0


# ------------------------------------------------------------------ recipe errors and keys


def test_every_recipe_error_is_reported_at_once() -> None:
    with pytest.raises(RecipeError) as info:
        recipe_from_dict({"training": {"lr": 1e-4, "epochs": "many", "batch_size": 0}}, "r.yaml")
    message = str(info.value)
    assert message.startswith("r.yaml: 3 problems:") and "\n" not in message
    for needle in ("'training.epochs'", "or 'auto' (got 'many')", "'training.batch_size'", "'training.lr'"):
        assert needle in message


@pytest.mark.parametrize(("key", "meant"), [
    ("training.lr", "'training.learning_rate'"), ("training.bs", "'training.batch_size'"),
    ("trainng.epochs", "'training' (training.epochs)"), ("epochs", "'training.epochs'"),
    ("model.peft.rank", "'model.peft.r'"), ("training.max_len", "'training.max_length'"),
    ("model.model_name_or_path", "'model.name'"),
])
def test_did_you_mean_names_the_full_dotted_key(key: str, meant: str) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(None, [f"{key}=1"])
    assert f"; did you mean {meant}?" in str(info.value)


@pytest.mark.parametrize(("raw", "hint"), [
    ({"model": {"peft": "lora"}}, "'model.peft' is a section, not a value; use model.peft.method: lora"),
    ({"model": "minilm"}, "use model.name: minilm"),
    ({"data": "train.csv"}, "use data.train: train.csv"),
])
def test_a_value_where_a_section_belongs_gets_the_key_it_meant(raw: dict, hint: str) -> None:
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(raw, "r.yaml")
    assert hint in str(info.value) and "pydantic" not in str(info.value).lower()


def test_a_mistyped_choice_gets_the_word_it_meant() -> None:
    with pytest.raises(RecipeError, match=r"key 'task' .*\(got 'clasification'\); did you mean 'classification'\?"):
        recipe_from_dict({"task": "clasification"}, "r.yaml")


def test_a_comma_separated_string_where_a_list_belongs_gets_the_list() -> None:
    with pytest.raises(RecipeError, match=r"key 'data.labels' .*; write a YAML list: \[yes, no\]"):
        recipe_from_dict({"data": {"labels": "yes, no"}}, "r.yaml")


def test_keys_shows_descriptions_allowed_values_and_filters() -> None:
    code, out, _ = run_cli(["keys", "model.peft"])
    assert code == 0
    keys = [line.split()[0] for line in out.splitlines()[1:] if line.strip() and line.startswith("model")]
    assert keys and all(k.startswith("model.peft.") for k in keys)
    assert "none | lora" in out and "LoRA rank" in out
    code, out, _ = run_cli(["keys", "--search", "zero-shot"])
    assert code == 0 and "data.label_descriptions" in out and "training.epochs" not in out
    code, out, _ = run_cli(["keys", "search"])
    assert "search.space" in out and "grid | random | bayes" in out
    code, _, err = run_cli(["keys", "trainin.lr"])
    assert code == 2 and "did you mean 'training.learning_rate'" in err


def test_version_short_help_and_no_bool_metavar() -> None:
    from tailorlm import __version__

    code, out, _ = run_cli(["--version"])
    assert code == 0 and out.strip() == f"tailorlm {__version__}"
    code, out, _ = run_cli(["run", "-h"])
    assert code == 0 and "--dry-run" in out
    assert "<bool>" not in out and "KEY=VALUE" in out
    code, out, _ = run_cli(["models", "-h"])  # `tailor estimate` is the one command; --estimate stays, hidden
    assert code == 0 and "--estimate" not in out and "--task" in out


# ------------------------------------------------------------------ models, cache, advisor, estimate


def test_models_lists_without_converting_or_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    code, err, heavy = _cli_without_heavy_imports(["models"], TAILORLM_CACHE=str(cache))
    assert code == 0, err
    assert heavy == [] and not cache.exists()
    monkeypatch.setenv("TAILORLM_CACHE", str(cache))
    code, out, _ = run_cli(["models"])
    assert code == 0 and "134.5 M" in out and "on first use" in " ".join(out.split())
    assert not cache.exists()


def test_cache_list_and_clear_touch_only_what_tailorlm_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILORLM_CACHE", str(tmp_path))
    for folder in ("smollm2-135m-instruct", "tokenized/abc", ".minilm-l6-seq2seq.x1y2", "my-own-models"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "smollm2-135m-instruct" / "model.safetensors").write_bytes(b"0" * 4096)
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    code, out, _ = run_cli(["cache", "list"])
    assert code == 0 and "3 entries" in out and "smollm2-135m-instruct" in out and "my-own-models" not in out
    code, _, err = run_cli(["cache", "clear"])  # no terminal to confirm on, no --yes: nothing deleted
    assert code == 2 and "--yes" in err and (tmp_path / "smollm2-135m-instruct").exists()
    code, out, _ = run_cli(["cache", "clear", "--yes"])
    assert code == 0 and "deleted 3 entries" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-own-models", "notes.txt"]


def test_offline_the_advisor_prefers_what_is_here() -> None:
    from tailorlm.models.advisor import Advice, rank

    def advice(name: str, offline: str, parameters: int) -> Advice:
        return Advice(name, "encoder", offline, parameters, 1, 1.0, 1.0, True, True, None)

    candidates = [advice("minilm", "shipped", 22_000_000), advice("bert-base", "download", 110_000_000)]
    assert [a.name for a in rank(candidates)] == ["bert-base", "minilm"]
    assert [a.name for a in rank(candidates, offline=True)] == ["minilm", "bert-base"]


def test_the_advisor_estimates_unconverted_aliases_without_writing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tailorlm.models.advisor import shipped_candidates
    from tailorlm.tasks import get_spec

    monkeypatch.setenv("TAILORLM_CACHE", str(tmp_path / "cache"))
    generation = {c.name: c for c in shipped_candidates(get_spec("generation"))}
    translation = {c.name: c for c in shipped_candidates(get_spec("translation"))}
    assert generation["smollm2"].config.num_hidden_layers == 30
    assert translation["minilm-seq2seq"].config.decoder.add_cross_attention is True
    assert not (tmp_path / "cache").exists()


def test_estimate_uses_the_length_the_run_picks(tiny_recipe: Path) -> None:
    from transformers import AutoTokenizer

    from tailorlm.models.estimate import estimate_recipe

    recipe = load_recipe(tiny_recipe)
    est = estimate_recipe(recipe)
    train = recipe.data.train
    texts = [line.rsplit(",", 1)[0] for line in Path(train).read_text(encoding="utf-8").splitlines()[1:]]
    tokenizer = AutoTokenizer.from_pretrained(recipe.model.name)
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    p99_ceiling = -(-int(np.percentile(lengths, 99)) // 8) * 8
    assert est.seq < 64 and est.seq in (p99_ceiling, p99_ceiling - 8, p99_ceiling + 8)  # train split of the rows
    assert "as the run picks it" in est.seq_note


def test_the_first_run_that_needs_smollm2_says_it_converts_and_where(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tailorlm.models import gguf

    monkeypatch.setenv("TAILORLM_CACHE", str(tmp_path))
    converted: list[Path] = []
    monkeypatch.setattr(gguf, "convert_gguf", lambda source, out: converted.append(out) or out)
    assert gguf.shipped_smollm2() == tmp_path / "smollm2-135m-instruct" == converted[0]
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and "converting" in line and str(tmp_path / "smollm2-135m-instruct") in line
    assert "tailor cache clear" in line


def test_a_dry_run_prints_the_plan_then_says_the_run_could_not_start(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'run'}\ndata: {{train: {tmp_path / 'missing.csv'}}}\n",
                      encoding="utf-8")
    code, out, err = run_cli(["run", str(recipe), "--dry-run"])
    assert code == 2 and "run  prepare" in out
    assert "missing.csv: file not found (data.train)" in err and not (tmp_path / "run").exists()
