"""Issue 12's guards: no command deletes a user's folder, leak checks fold near-duplicates, saved models are
cleaned and loaded like the run that made them, and data files are read within bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli


@pytest.fixture()
def lora_adapter(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A model/ folder as a LoRA run saves it (adapter, tokenizer, tailor_model.json), without training."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tailorlm.models.registry import write_model_meta

    folder = tmp_path / "run" / "model"
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS"))
    model.save_pretrained(folder, safe_serialization=True)
    model.get_base_model().config.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    write_model_meta(folder, {"task": "classification", "labels": ["negative", "positive"],
                              "base_model": str(tiny_model_dir), "peft": "lora", "max_length": 32})
    return folder


# ------------------------------------------------------------------------------------------- item 1: deletes


def test_export_refuses_a_folder_holding_user_files(tmp_path: Path, lora_adapter: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("years of work")
    code, _, stderr = run_cli(["export", str(lora_adapter), "--out", str(out)])
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and "tailor_model.json" in stderr
    assert (out / "thesis.txt").read_text() == "years of work"
    assert not (tmp_path / ".mine.tmp").exists() and not (tmp_path / ".mine.old").exists()


def test_export_replaces_an_earlier_export_but_not_its_own_source(tmp_path: Path, lora_adapter: Path) -> None:
    out = tmp_path / "merged"
    for _ in range(2):  # the second export replaces the first: it holds tailor_model.json
        code, _, stderr = run_cli(["export", str(lora_adapter), "--out", str(out)])
        assert code == 0, stderr
    assert (out / "model.safetensors").is_file()
    code, _, stderr = run_cli(["export", str(lora_adapter), "--out", str(lora_adapter.parent)])
    assert code == 2 and "model being exported" in stderr
    assert (lora_adapter / "adapter_config.json").is_file()


def test_replace_dir_never_deletes_a_folder_without_its_marker(tmp_path: Path) -> None:
    from tailorlm.errors import UserError
    from tailorlm.rundir import replace_dir

    final, tmp = tmp_path / "model", tmp_path / ".model.tmp"
    final.mkdir()
    (final / "notes.md").write_text("mine")
    tmp.mkdir()
    with pytest.raises(UserError, match="tailorlm did not write"):
        replace_dir(tmp, final, "tailor_model.json")
    assert (final / "notes.md").is_file() and not tmp.exists()


def test_prepare_and_run_refuse_output_dir_holding_data_or_foreign_model(tmp_path: Path, tiny_recipe: Path,
                                                                         sentiment_csv: Path) -> None:
    code, _, stderr = run_cli(["prepare", str(tiny_recipe), "--set", f"output_dir={sentiment_csv.parent}"])
    assert code == 2 and "lies inside output_dir" in stderr
    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "model" / "weights-i-made.bin").write_text("x")
    code, _, stderr = run_cli(["prepare", str(tiny_recipe), "--set", f"output_dir={out}"])
    assert code == 2 and "output_dir/model" in stderr
    assert (out / "model" / "weights-i-made.bin").is_file()


# ------------------------------------------------------------------------------------------- item 2: DAPT leaks


def _splits(train: list[str], validation: list[str], test: list[str]) -> object:
    from types import SimpleNamespace

    import pandas as pd

    return SimpleNamespace(**{name: pd.DataFrame({"text": texts}) for name, texts in
                              (("train", train), ("validation", validation), ("test", test))})


def test_pretraining_corpus_drops_near_duplicates_of_test_texts(tmp_path: Path) -> None:
    from tailorlm.adapt.corpus import build_corpus
    from tailorlm.recipe import recipe_from_dict

    domain = tmp_path / "domain.txt"
    domain.write_text("The bill was late!\nthe meter was read\nTHE BILL WAS LATE (2)\n", encoding="utf-8")
    recipe = recipe_from_dict({"adapt": {"pretrain": True, "text": str(domain), "holdout": 0.0}})
    corpus = build_corpus(recipe, _splits(["the app was slow"], [], ["the bill was late"]))
    assert sorted(corpus.train) == ["the app was slow", "the meter was read"]
    assert corpus.counts["dropped_leaking"] == 2


def test_self_training_drops_near_duplicates_of_labelled_texts(tmp_path: Path) -> None:
    from tailorlm.adapt.self_train import read_unlabelled
    from tailorlm.recipe import recipe_from_dict

    pool = tmp_path / "pool.txt"
    pool.write_text("The bill was late!\nthe call was quick\nThe App, was great.\n", encoding="utf-8")
    recipe = recipe_from_dict({"adapt": {"self_train": True, "unlabelled": str(pool)}})
    unlabelled = read_unlabelled(recipe, _splits(["the app was great"], ["the meter was read"], ["the bill was late"]))
    assert unlabelled.texts == ["the call was quick"]
    assert unlabelled.counts["dropped_leaking"] == 2


# ------------------------------------------------------------------------------------------- item 3: QA leaks


def test_qa_train_questions_about_a_test_passage_are_dropped_and_counted(tmp_path: Path) -> None:
    import json

    from tailorlm.data.pipeline import prepare
    from tailorlm.recipe import DataConfig
    from tailorlm.tasks.qa.data import QARows

    passage = "Glenmor restored power in Kinlochbrae by 4pm."
    other = "The Storm Credit is paid to every household."

    def rows(*items: tuple[str, str, str]) -> str:
        return "".join(json.dumps({"question": q, "context": c, "answers": {"text": [a], "answer_start": [
            c.index(a)]}}) + "\n" for q, c, a in items)

    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text(rows(("Who restored power?", passage.upper().replace("4PM", "4pm"), "GLENMOR"),
                          ("Where was power restored?", passage, "Kinlochbrae"),
                          ("Who is paid?", other, "every household"),
                          ("By when?", passage.replace("4pm", "6pm"), "6pm")), encoding="utf-8")
    test.write_text(rows(("By when was power restored?", passage, "4pm")), encoding="utf-8")
    data = prepare(DataConfig(train=str(train), test=str(test), split={"validation": 0.0}), QARows())
    assert list(data.train["context"]) == [other, passage.replace("4pm", "6pm")]  # other numbers: not the same
    leaks = [r for r in data.rejects if r["reason"] == "context_leakage"]
    assert [r["row"] for r in leaks] == [1, 2] and all("test row 1" in r["detail"] for r in leaks)
    assert data.report["removed"]["context_leakage"] == 2


# ------------------------------------------------------------------------------------------- item 6: saved code


@pytest.fixture()
def saved_classifier(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A model/ folder as a full fine-tune saves it, without training."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tailorlm.models.registry import write_model_meta

    folder = tmp_path / "saved" / "model"
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    write_model_meta(folder, {"task": "classification", "labels": ["negative", "positive"], "max_length": 32})
    return folder


def test_saved_model_with_custom_code_is_refused_for_eval_and_predict(tmp_path: Path, saved_classifier: Path) -> None:
    import json

    marker = tmp_path / "MARKER"
    config = json.loads((saved_classifier / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilForSequenceClassification"}
    (saved_classifier / "config.json").write_text(json.dumps(config))
    (saved_classifier / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    data = tmp_path / "eval.csv"
    data.write_text("text,label\nthe bill was late,negative\n")
    folder = str(saved_classifier)
    for args in (["eval", folder, "--data", str(data)], ["predict", folder, "--text", "hi"]):
        code, _, stderr = run_cli(args)
        assert code == 2, stderr
        assert "modeling_evil.py" in stderr and "auto_map" in stderr and len(stderr.strip().splitlines()) == 1
    assert not marker.exists()


# ------------------------------------------------------------------------------------------- item 5: skew


def test_saved_model_keeps_the_runs_cleaning(tmp_path: Path, tiny_model_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tailorlm.models.registry import resolve_model
    from tailorlm.models.saved import load_saved_model
    from tailorlm.recipe import recipe_from_dict
    from tailorlm.rundir import RunDir
    from tailorlm.stages.outputs import save_model

    recipe = recipe_from_dict({"output_dir": str(tmp_path / "run"), "data": {"clean": {"lowercase": True}}})
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    save_model(model, AutoTokenizer.from_pretrained(tiny_model_dir), RunDir.create(recipe.output_dir), recipe,
               resolve_model(str(tiny_model_dir)), {"task": "classification", "labels": ["a", "b"]})
    assert load_saved_model(tmp_path / "run").clean.lowercase is True


def _lowercasing(folder: Path) -> Path:
    import json

    meta = json.loads((folder / "tailor_model.json").read_text())
    (folder / "tailor_model.json").write_text(json.dumps(meta | {"clean": {"lowercase": True}}))
    return folder


def test_predict_eval_and_audit_clean_inputs_like_the_run(tmp_path: Path, saved_classifier: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from tailorlm.fairness.pipeline import audit_saved_model
    from tailorlm.tasks.classification.task import ClassificationTask

    folder = str(_lowercasing(saved_classifier))
    code, stdout, stderr = run_cli(["predict", folder, "--text", "The Bill WAS Late"])
    assert code == 0, stderr
    assert json.loads(stdout)["text"] == "the bill was late"
    data = tmp_path / "eval.csv"
    data.write_text("text,label,group\nThe Bill WAS Late,negative,a\nThe App Was GREAT,positive,b\n")
    seen: list[str] = []
    evaluate = ClassificationTask.evaluate

    def spy(self: ClassificationTask, model: object, tokenizer: object, frame: object, *args: object) -> object:
        seen.extend(frame["text"])  # type: ignore[index]
        return evaluate(self, model, tokenizer, frame, *args)

    monkeypatch.setattr(ClassificationTask, "evaluate", spy)
    code, _, stderr = run_cli(["eval", folder, "--data", str(data)])
    assert code == 0, stderr
    audit_saved_model(Path(folder), data, "group", min_group_size=1)
    assert seen == ["the bill was late", "the app was great"] * 2


# ------------------------------------------------------------------------------------------- item 15: reads


def test_max_rows_reads_only_the_head_of_a_file(tmp_path: Path) -> None:
    import gzip
    import json

    from tailorlm.data.load import read_records, read_table
    from tailorlm.errors import DataError

    rows = "".join(json.dumps({"text": f"reading {i} of the meter", "label": "ok"}) + "\n" for i in range(60_000))
    packed = gzip.compress(rows.encode())
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])  # a truncated archive: only its head can be decompressed
    assert list(read_table(path, max_rows=3).frame["raw_text"]) == [f"reading {i} of the meter" for i in range(3)]
    records, _ = read_records(path, max_rows=2)  # predict --input, adapt.text with adapt.max_rows
    assert [values["text"] for _, values in records] == ["reading 0 of the meter", "reading 1 of the meter"]
    with pytest.raises(DataError, match="not a valid gz archive"):
        read_table(path)  # the whole file is needed without max_rows
    csv = tmp_path / "big.csv"
    csv.write_text("text,label\n" + "the bill was late,negative\n" * 100_000)
    assert len(read_table(csv, max_rows=2, max_bytes=1_500_000).frame) == 2  # 2.7 MB file, only the head read
    with pytest.raises(DataError, match="did you mean 'text'"):
        read_table(csv, text_column="texts", max_rows=2)


def test_files_over_data_max_file_bytes_are_refused_in_one_line(tmp_path: Path, tiny_recipe: Path) -> None:
    import gzip

    from tailorlm.data.load import read_table
    from tailorlm.errors import DataError

    code, _, stderr = run_cli(["prepare", str(tiny_recipe), "--set", "data.max_file_bytes=100"])
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "is larger than 100 bytes (data.max_file_bytes)" in stderr
    bomb = tmp_path / "small.csv.gz"
    bomb.write_bytes(gzip.compress(b"text,label\n" + b"a" * 3_000_000 + b",x\n"))  # 3 KB on disk, 3 MB inside
    with pytest.raises(DataError, match=r"decompresses to more than 1\.0 MiB"):
        read_table(bomb, max_bytes=1024**2)


def test_translation_inputs_are_cleaned_like_the_runs_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import tailorlm.tasks.translation.task as translation
    from tailorlm.models.saved import LoadedModel
    from tailorlm.tasks import get_task

    monkeypatch.setattr(translation, "translate", lambda model, tokenizer, sources, *rest: sources)  # echo
    loaded = LoadedModel(model=None, tokenizer=SimpleNamespace(), path=Path("model"),
                         meta={"task": "translation", "max_length": 16, "clean": {"lowercase": True}})
    out = get_task("translation").predict(loaded, [{"text": "Whit  TIME is it?"}])
    assert out == [{"translation": "whit time is it?"}]
