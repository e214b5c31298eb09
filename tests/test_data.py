"""Data preparation: every format, every reject reason with its row, splits, leakage, and one-line errors."""

from __future__ import annotations

import csv
import gzip
import json
import unicodedata
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailorlm.data import PreparedData, write_rejects
from tailorlm.data.pipeline import prepare
from tailorlm.errors import DataError
from tailorlm.recipe import CleanConfig, DataConfig
from tailorlm.tasks.classification.data import ClassificationRows, load_labelled_file, load_texts

WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "green",
    "music",
    "paper",
    "light",
    "table",
    "smile",
    "ocean",
    "tiger",
]


def texts(n: int, seed: int = 0) -> list[str]:
    """Distinct, near-duplicate-free texts (the fingerprint ignores digits, so vary the words)."""
    out = []
    for i in range(n):
        a, b, c = WORDS[i % 12], WORDS[(i // 12) % 12], WORDS[(i // 144 + seed) % 12]
        out.append(f"{a} {b} {c} {'x' * (i // 1728 + 1)}")
    return out


def labelled(n: int, labels: tuple[str, ...] = ("pos", "neg"), seed: int = 0) -> list[dict[str, str]]:
    return [{"text": t, "label": labels[i % len(labels)]} for i, t in enumerate(texts(n, seed))]


def write_csv(
    path: Path, rows: list[dict[str, str]] | list[list[str]], header: list[str] | None = None
) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        if rows and isinstance(rows[0], dict):
            header = header or list(rows[0])
            writer.writerow(header)
            writer.writerows([[r.get(h, "") for h in header] for r in rows])  # type: ignore[union-attr]
        else:
            writer.writerow(header or ["text", "label"])
            writer.writerows(rows)
    return path


def one_line_error(info: pytest.ExceptionInfo[DataError], *parts: str) -> str:
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    return message


def by_reason(rejects: list[dict]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in rejects:
        out.setdefault(r["reason"], []).append(r["row"])
    return out


def assert_invariant(data: PreparedData) -> None:
    """rows read = rows kept + rows rejected, per file (a carved split counts toward the train file)."""
    report = data.report
    carved = sum(report["rows_kept"][s] for s in ("validation", "test") if report["split_from_train"][s])
    assert (
        report["rows_read"]["train"]
        == report["rows_kept"]["train"] + carved + report["rows_rejected"]["train"]
    )
    for split in ("validation", "test"):
        if not report["split_from_train"][split]:
            assert report["rows_read"][split] == report["rows_kept"][split] + report["rows_rejected"][split]
    assert report["stages"][0]["rows"] == len(data.train) + len(data.validation) + len(data.test) + len(
        data.rejects
    )
    assert report["stages"][-1]["rows"] == len(data.train) + len(data.validation) + len(data.test)


# ------------------------------------------------------------------------------------------- formats


def test_every_format_loads_as_strings(tmp_path: Path) -> None:
    rows = [
        {"text": "first text", "label": "NA"},
        {"text": "second text", "label": "None"},
        {"text": "third text", "label": "0"},
    ]
    frame = pd.DataFrame(rows)
    files = {
        "a.csv": lambda p: frame.to_csv(p, index=False),
        "a.tsv": lambda p: frame.to_csv(p, index=False, sep="\t"),
        "a.jsonl": lambda p: p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n"),
        "a.json": lambda p: p.write_text(json.dumps(rows)),
        "b.json": lambda p: p.write_text(json.dumps({"data": rows})),
        "a.parquet": lambda p: frame.to_parquet(p),
        "a.csv.gz": lambda p: p.write_bytes(gzip.compress(frame.to_csv(index=False).encode())),
    }
    for name, write in files.items():
        path = tmp_path / name
        write(path)
        loaded, rejects = load_labelled_file(path, DataConfig(train=str(path)))
        assert rejects == [], name
        assert list(loaded.columns) == ["text", "label", "source", "row"]
        assert list(loaded["text"]) == ["first text", "second text", "third text"], name
        assert list(loaded["label"]) == ["NA", "None", "0"], name
        assert list(loaded["row"]) == [1, 2, 3], name
        assert set(loaded["source"]) == {str(path)}


def test_byte_order_marks_are_understood(tmp_path: Path) -> None:
    for encoding in ("utf-8-sig", "utf-16"):
        path = tmp_path / f"{encoding}.csv"
        path.write_text("text,label\ncafé crème,a\n", encoding=encoding)
        frame, _ = load_labelled_file(path, DataConfig(train=str(path)))
        assert list(frame["text"]) == ["café crème"], encoding


def test_numbers_become_label_strings_and_txt_is_for_predict(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    path.write_text('{"text": "one two", "label": 1}\n{"text": "three four", "label": 0.0}\n')
    frame, _ = load_labelled_file(path, DataConfig(train=str(path)))
    assert list(frame["label"]) == ["1", "0"]
    parquet = tmp_path / "n.parquet"
    pd.DataFrame({"text": ["aa bb", "cc dd"], "label": [0, 1]}).to_parquet(parquet)
    assert list(load_labelled_file(parquet, DataConfig(train=str(parquet)))[0]["label"]) == ["0", "1"]
    txt = tmp_path / "in.txt"
    txt.write_text("first line\n\nthird line\r\n")
    frame = load_texts(txt)
    assert list(frame["text"]) == ["first line", "third line"]
    assert list(frame["row"]) == [1, 3]
    with pytest.raises(DataError) as info:
        load_labelled_file(txt, DataConfig(train=str(txt)))
    one_line_error(info, str(txt), "without labels")


def test_predict_keeps_duplicates_and_needs_no_label(tmp_path: Path) -> None:
    rows = [["1", "same text"], ["2", "same text"], ["3", " "]]
    path = write_csv(tmp_path / "p.csv", rows, header=["id", "body"])
    frame, rejects = load_labelled_file(
        path, DataConfig(train=str(path), text_column="body"), split="predict", require_label=False
    )
    assert list(frame["text"]) == ["same text", "same text"]
    assert frame["label"].isna().all()
    assert [(r["row"], r["reason"]) for r in rejects] == [(3, "empty_text")]


def test_cleaning_normalises_text(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [["  ﬁne\u200b  day\t\nhere\x00 ", "a"], ["ＦＵＬＬ width", " b "]])
    cfg = DataConfig(train=str(path), clean=CleanConfig(lowercase=True))
    frame, _ = load_labelled_file(path, cfg)
    assert list(frame["text"]) == ["fine day here", "full width"]
    assert list(frame["label"]) == ["a", "b"]


def test_max_rows_reads_only_the_first_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", labelled(50))
    frame, _ = load_labelled_file(path, DataConfig(train=str(path), max_rows=7))
    assert list(frame["row"]) == list(range(1, 8))


def test_max_rows_limits_training_rows_only(tmp_path: Path) -> None:
    """Two runs with different data.max_rows are tested on the same rows: a carved test split comes from the
    whole file and a test file is read whole; data.max_eval_rows is the cap for validation and test."""
    path = write_csv(tmp_path / "m.csv", labelled(200))
    full = prepare(DataConfig(train=str(path)), ClassificationRows())
    capped = prepare(DataConfig(train=str(path), max_rows=40), ClassificationRows())
    assert list(capped.test["text"]) == list(full.test["text"]) and len(full.test) > 0
    assert list(capped.validation["text"]) == list(full.validation["text"])
    assert len(capped.train) == 40 < len(full.train)
    test = write_csv(tmp_path / "t.csv", labelled(60, seed=1))
    given = prepare(DataConfig(train=str(path), test=str(test), max_rows=40), ClassificationRows())
    assert len(given.test) == len(prepare(DataConfig(train=str(path), test=str(test)), ClassificationRows()).test)
    assert len(given.test) > 40
    eval_capped = prepare(DataConfig(train=str(path), test=str(test), max_eval_rows=10), ClassificationRows())
    assert len(eval_capped.test) <= 10


# ------------------------------------------------------------------------------------------- rejects


def test_each_reject_reason_names_its_row(tmp_path: Path) -> None:
    base = labelled(40)
    rows = [
        [base[0]["text"], "pos"],  # 1 kept
        ["", "pos"],  # 2 empty_text
        ["x", "pos"],  # 3 too_short
        ["word " * 30, "pos"],  # 4 too_long
        ["a text without label", ""],  # 5 missing_label
        [base[0]["text"], "pos"],  # 6 duplicate of row 1
        [base[0]["text"].upper() + "!!", "pos"],  # 7 near_duplicate of row 1
        ["conflicting words", "pos"],  # 8 conflicting_label
        ["Conflicting words.", "neg"],  # 9 conflicting_label
        ["too", "many", "fields"],  # 10 malformed_row
        ["a label outside the set", "maybe"],  # 11 unknown_label (data.labels given)
        ["this sentence leaks", "neg"],  # 12 leakage (also in test)
        *[[r["text"], r["label"]] for r in base[1:]],
    ]
    train = write_csv(tmp_path / "train.csv", rows)
    test = write_csv(
        tmp_path / "test.csv",
        [
            ["This sentence LEAKS!", "neg"],
            *[[t, "pos"] for t in texts(6, 5)],
            *[[t, "neg"] for t in texts(12, 5)[6:]],
        ],
    )
    cfg = DataConfig(
        train=str(train),
        test=str(test),
        labels=["pos", "neg"],
        split={"validation": 0.0},
        clean=CleanConfig(max_chars=100),
    )
    data = prepare(cfg, ClassificationRows())
    reasons = by_reason([r for r in data.rejects if r["split"] == "train"])
    assert reasons == {
        "malformed_row": [10],
        "empty_text": [2],
        "too_short": [3],
        "too_long": [4],
        "missing_label": [5],
        "unknown_label": [11],
        "conflicting_label": [8, 9],
        "duplicate": [6],
        "near_duplicate": [7],
        "leakage": [12],
    }
    details = {r["reason"]: r["detail"] for r in data.rejects}
    assert details["duplicate"] == "duplicate of row 1"
    assert details["near_duplicate"] == "near duplicate of row 1"
    assert details["leakage"] == "same text as test row 1"
    assert "row 9" in details["conflicting_label"] or "row 8" in details["conflicting_label"]
    assert "line 11" in details["malformed_row"]
    removed = data.report["removed"]
    assert all(removed[reason] >= 1 for reason in removed)
    assert all(
        set(r) == {"split", "source", "row", "reason", "detail", "text", "label"} for r in data.rejects
    )
    assert data.report["rows_read"]["train"] == len(rows)
    assert_invariant(data)
    assert any("outside data.labels" in w for w in data.report["warnings"])


def test_bad_jsonl_lines_are_rejected_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    lines = [json.dumps(r) for r in labelled(6)]
    lines[1] = '{"text": "broken", "label": '
    lines[3] = '["a list", "not an object"]'
    path.write_text("\n".join(lines) + "\n")
    frame, rejects = load_labelled_file(path, DataConfig(train=str(path)))
    assert list(frame["row"]) == [1, 3, 5, 6]
    assert [(r["row"], r["reason"]) for r in rejects] == [(2, "malformed_json"), (4, "malformed_json")]
    assert "not an object" in rejects[1]["detail"]


def test_ragged_and_badly_quoted_csv_rows_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text('text,label\ngood row one,a\n"bad"quote,b\nextra,field,here\nshort\ngood row two,b\n')
    frame, rejects = load_labelled_file(path, DataConfig(train=str(path)))
    assert list(frame["row"]) == [1, 5]
    assert [(r["row"], r["reason"]) for r in rejects] == [
        (2, "malformed_row"),
        (3, "malformed_row"),
        (4, "malformed_row"),
    ]


def test_unknown_labels_in_test_are_reported(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", labelled(40))
    test_rows = [[t, "pos"] for t in texts(8, 3)] + [
        ["surprise label one", "zzz"],
        ["surprise label two", "zzz"],
    ]
    test = write_csv(tmp_path / "test.csv", test_rows)
    data = prepare(DataConfig(train=str(train), test=str(test)), ClassificationRows())
    assert data.report["unknown_labels"] == {"validation": {}, "test": {"zzz": 2}}
    assert [r["row"] for r in data.rejects if r["reason"] == "unknown_label"] == [9, 10]
    assert "zzz" not in set(data.test["label"])
    assert data.labels == ["neg", "pos"]
    assert_invariant(data)


def test_leakage_between_train_validation_and_test(tmp_path: Path) -> None:
    pool = texts(60)
    train = write_csv(tmp_path / "train.csv", [[t, ("a", "b")[i % 2]] for i, t in enumerate(pool[:40])])
    validation = write_csv(tmp_path / "val.csv", [[pool[0], "a"], [pool[50], "a"], [pool[51], "b"]])
    test = write_csv(tmp_path / "test.csv", [[pool[1].upper(), "b"], [pool[50] + "!", "a"], [pool[52], "a"]])
    data = prepare(DataConfig(train=str(train), validation=str(validation), test=str(test)), ClassificationRows())
    leaks = sorted((r["split"], r["row"], r["detail"]) for r in data.rejects if r["reason"] == "leakage")
    assert leaks == [
        ("train", 1, "same text as validation row 1"),
        ("train", 2, "same text as test row 1"),
        ("validation", 2, "same text as test row 2"),
    ]
    assert data.report["removed"]["leakage"] == 3
    assert_invariant(data)
    kept = prepare(
        DataConfig(
            train=str(train),
            validation=str(validation),
            test=str(test),
            clean=CleanConfig(remove_leakage=False),
        ),
        ClassificationRows(),
    )
    assert kept.report["removed"]["leakage"] == 0


# ------------------------------------------------------------------------------------------- split


def test_stratified_split_keeps_proportions_and_is_deterministic(tmp_path: Path) -> None:
    rows = [
        {"text": t, "label": "a" if i < 200 else ("b" if i < 320 else "c")} for i, t in enumerate(texts(400))
    ]
    path = write_csv(tmp_path / "train.csv", rows)
    cfg = DataConfig(train=str(path), split={"validation": 0.1, "test": 0.2}, seed=7)
    data = prepare(cfg, ClassificationRows())
    assert (len(data.train), len(data.validation), len(data.test)) == (280, 40, 80)
    for frame in (data.train, data.validation, data.test):
        shares = frame["label"].value_counts(normalize=True)
        assert shares["a"] == pytest.approx(0.5, abs=0.02)
        assert shares["b"] == pytest.approx(0.3, abs=0.02)
        assert shares["c"] == pytest.approx(0.2, abs=0.02)
    again = prepare(cfg, ClassificationRows())
    for name in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(getattr(data, name), getattr(again, name))
    other = prepare(cfg.model_copy(update={"seed": 8}), ClassificationRows())
    assert list(other.test["row"]) != list(data.test["row"])
    all_rows = sorted([*data.train["row"], *data.validation["row"], *data.test["row"]])
    assert all_rows == list(range(1, 401))
    report = data.report
    assert report["split_from_train"] == {"validation": True, "test": True}
    assert report["label_distribution"]["test"] == {"a": 40, "b": 24, "c": 16}
    assert report["length_unit"] == "words"
    assert set(report["length"]["train"]) == {"min", "mean", "p50", "p95", "p99", "max"}
    assert_invariant(data)
    json.dumps(report)


def test_tiny_classes_fall_back_to_an_unstratified_split_with_warnings(tmp_path: Path) -> None:
    rows = [{"text": t, "label": "big"} for t in texts(60)] + [
        {"text": "the lonely rare row", "label": "rare"}
    ]
    data = prepare(DataConfig(train=str(write_csv(tmp_path / "t.csv", rows)), seed=1), ClassificationRows())
    warnings = " | ".join(data.report["warnings"])
    assert "not stratified" in warnings
    assert (
        "class 'rare' has only 1 training rows" in warnings or "class 'rare' has no training rows" in warnings
    )
    assert "class imbalance" in warnings or "no training rows" in warnings
    assert_invariant(data)


def test_zero_share_gives_an_empty_split_and_tokens_are_counted(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", labelled(30))
    data = prepare(
        DataConfig(train=str(path), split={"validation": 0.0, "test": 0.2}), ClassificationRows(),
        count_tokens=lambda batch: [len(t) for t in batch],
    )
    assert len(data.validation) == 0 and len(data.test) == 6
    assert list(data.validation.columns) == ["text", "label", "source", "row"]
    assert data.report["length_unit"] == "tokens"
    assert data.report["length"]["validation"] == {}
    assert data.report["length"]["train"]["max"] == max(len(t) for t in data.train["text"])


def test_write_rejects(tmp_path: Path) -> None:
    empty = tmp_path / "none.jsonl"
    write_rejects(empty, [])
    assert empty.read_text() == ""
    rejects = [
        {
            "split": "train",
            "source": "a.csv",
            "row": 3,
            "reason": "duplicate",
            "detail": "duplicate of row 1",
            "text": "héllo",
            "label": "x",
        }
    ]
    out = tmp_path / "sub" / "rejects.jsonl"
    write_rejects(out, rejects)
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == rejects


# ------------------------------------------------------------------------------------------- errors


def test_missing_file_and_column(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError) as info:
        prepare(DataConfig(train=str(missing)), ClassificationRows())
    one_line_error(info, str(missing), "file not found (data.train)", "relative to")
    path = write_csv(tmp_path / "t.csv", labelled(4))
    with pytest.raises(DataError) as info:
        prepare(DataConfig(train=str(path), text_column="txt"), ClassificationRows())
    one_line_error(info, str(path), "no column 'txt' (data.text_column)", "columns present: text, label")
    with pytest.raises(DataError) as info:
        prepare(DataConfig(train=str(path), label_column="category"), ClassificationRows())
    one_line_error(info, "no column 'category' (data.label_column)")
    with pytest.raises(DataError) as info:
        load_labelled_file(missing, DataConfig(train=str(missing)), split="eval")
    one_line_error(info, str(missing), "(--data)")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("latin.csv", b"text,label\ncaf\xe9 au lait,a\n", ["not valid UTF-8", "0xe9", "offset 14"]),
        ("empty.csv", b"", ["file is empty"]),
        ("blank.jsonl", b"\n\n", ["file is empty"]),
        ("header.csv", b"text,label\n", ["no data rows"]),
        (
            "quote.csv",
            b'text,label\ngood one,a\n"never closed,b\nmore,a\nrows,b\n',
            ["line 3", "never closed"],
        ),
        ("fake.parquet", b"this is not parquet", ["not a valid Parquet file"]),
        ("bad.json", b'[{"text": "a", "label": "b"},', ["invalid JSON at line 1"]),
        ("lines.json", b'{"text": "a b", "label": "x"}\n{"text": "c d", "label": "y"}\n', ["JSON Lines"]),
        ("scalar.json", b'"just a string"', ["expected a JSON array"]),
        ("arrays.jsonl", b"[1, 2]\n[3, 4]\n", ["no JSON objects"]),
        ("sheet.xlsx", b"PK\x03\x04", ["save the sheet as CSV"]),
        ("noext", b"text,label\n", ["cannot tell the format", "data.format"]),
        ("bad.csv.gz", b"not gzip at all", ["not a valid gz archive"]),
    ],
)
def test_bad_files_give_one_line_errors(
    tmp_path: Path, name: str, content: bytes, expected: list[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        prepare(DataConfig(train=str(path)), ClassificationRows())
    one_line_error(info, str(path), *expected)


def test_no_usable_rows_and_single_class(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [["", "a"], ["  ", "b"], ["x", "a"]])
    with pytest.raises(DataError) as info:
        prepare(DataConfig(train=str(path)), ClassificationRows())
    one_line_error(
        info, str(path), "no usable rows after cleaning (3 rejected: 2 empty_text, 1 too_short)", "row 1"
    )
    path = write_csv(tmp_path / "one.csv", [{"text": t, "label": "positive"} for t in texts(10)])
    with pytest.raises(DataError) as info:
        prepare(DataConfig(train=str(path)), ClassificationRows())
    one_line_error(info, str(path), "only one label ('positive') in the training data")
    train = write_csv(tmp_path / "train.csv", labelled(20))
    test = write_csv(tmp_path / "test.csv", [["unknown label text", "zzz"]])
    with pytest.raises(DataError) as info:
        prepare(DataConfig(train=str(train), test=str(test)), ClassificationRows())
    one_line_error(info, str(test), "no usable rows", "unknown_label")


def test_too_few_rows_to_split(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", labelled(2))
    with pytest.raises(DataError) as info:
        prepare(DataConfig(train=str(path)), ClassificationRows())
    one_line_error(info, str(path), "too few to hold out")


# ------------------------------------------------------------------------------------------- properties

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def check_loaded(frame: pd.DataFrame, rejects: list[dict]) -> None:
    assert list(frame.columns) == ["text", "label", "source", "row"]
    rows = [*frame["row"], *(r["row"] for r in rejects)]
    assert len(rows) == len(set(rows)) and all(isinstance(r, int) and r >= 1 for r in rows)
    for text in frame["text"]:
        assert text == text.strip() and len(text) >= 2
        assert not any(unicodedata.category(c) in ("Cc", "Cs") or c in "\u200b\ufeff" for c in text), text
    json.dumps(rejects)


@FUZZ
@given(
    content=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
    ext=st.sampled_from(["csv", "tsv", "jsonl", "json"]),
    require_label=st.booleans(),
)
def test_fuzzed_bytes_load_or_raise_data_error(
    tmp_path: Path, content: bytes, ext: str, require_label: bool
) -> None:
    path = tmp_path / f"fuzz.{ext}"
    path.write_bytes(b"text,label\n" + content if ext == "csv" and content[:1] != b"{" else content)
    try:
        frame, rejects = load_labelled_file(path, DataConfig(train=str(path)), require_label=require_label)
    except DataError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    check_loaded(frame, rejects)


@settings(FUZZ, max_examples=100)
@given(
    rows=st.lists(st.tuples(st.text(max_size=30), st.sampled_from(["a", "b", " a ", "", "NA"])), max_size=15),
    kind=st.sampled_from(["csv", "jsonl"]),
)
def test_fuzzed_texts_keep_the_row_invariant(tmp_path: Path, rows: list[tuple[str, str]], kind: str) -> None:
    path = tmp_path / f"rows.{kind}"
    if kind == "csv":
        write_csv(path, [list(r) for r in rows])
    else:
        path.write_text(
            "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows), encoding="utf-8"
        )
    try:
        frame, rejects = load_labelled_file(path, DataConfig(train=str(path)))
    except DataError as exc:
        assert "\n" not in str(exc) and not rows, exc  # only an empty file may fail
        return
    check_loaded(frame, rejects)
    assert len(frame) + len(rejects) == len(rows)
    assert Counter(r["reason"] for r in rejects).keys() <= {
        "empty_text",
        "too_short",
        "missing_label",
        "duplicate",
        "near_duplicate",
    }


# ------------------------------------------------------------------------------------------- the row spec


def test_a_task_is_a_row_spec_over_the_one_pipeline(tmp_path: Path) -> None:
    """A new task's data needs only its row spec: reading, cleaning order, leakage, splitting and the report's
    common keys come from data/pipeline.py."""
    from tailorlm.data.pipeline import FilePart, LeakRule, RowSpec

    class Shouting(RowSpec):
        reasons = ("leakage",)
        report_keys = ("rows_read", "rows_kept", "removed", "loudest")
        leak_rules = (LeakRule("leakage", lambda f: f["text"].str.lower(), lambda s, r: f"{s} row {r}"),)

        def read(self, split: str, path: str, cfg: DataConfig) -> FilePart:
            frame = pd.read_csv(path)
            frame = frame.assign(raw_text=frame["text"], source=path, row=range(1, len(frame) + 1))
            return FilePart.of(split, path, frame, [], len(frame))

        def report_extras(self, files, frames, rejects, labels, count_tokens):  # type: ignore[no-untyped-def]
            return {"loudest": max(frames["train"]["text"], key=str.upper)}

    train = write_csv(tmp_path / "train.csv", [{"text": t, "label": "x"} for t in ("a", "BB", "ccc", "dd")])
    test = write_csv(tmp_path / "test.csv", [{"text": "CCC", "label": "x"}])
    data = prepare(DataConfig(train=str(train), test=str(test), split={"validation": 0.0}), Shouting())
    assert list(data.report) == ["rows_read", "rows_kept", "removed", "loudest"]
    assert data.report["removed"] == {"leakage": 1} and data.rejects[0]["detail"] == "test row 1"
    assert list(data.train["text"]) == ["a", "BB", "dd"] and data.labels == [] and data.version_2 is None
