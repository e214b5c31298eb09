"""Reading labelled files into one shape, whatever their format.

Every reader turns a file into a :class:`RawTable`: the raw text and label of each data record as strings
(never numbers, never NaN: the label ``NA`` stays ``"NA"`` and ``0`` becomes ``"0"``), its 1-based row number,
and a reject for every record that could not be parsed. A problem with the file as a whole (missing, not
UTF-8, a missing column, not Parquet at all) is a one-line :class:`DataError`; a problem with one record only
rejects that record, so one stray quote does not cost the whole file.

Reads are bounded: a file, or the stream a .gz/.bz2/.xz decompresses to (a small archive can hold gigabytes), is
refused past ``data.max_file_bytes`` before it fills memory, and with ``data.max_rows`` the line-based formats
(csv, tsv, jsonl, txt) are streamed: only the lines those rows need are read and decompressed.
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import difflib
import gzip
import io
import json
import lzma
import math
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tailorlm.errors import DataError
from tailorlm.recipe import DataConfig

if TYPE_CHECKING:  # pandas is imported where a frame is built: the CLI's checks read headers without it
    import pandas as pd

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet", "txt")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
}
#: decompressing readers by file suffix; each opens its file for reading
_OPENERS: dict[str, Callable[[Path], IO[bytes]]] = {".gz": gzip.GzipFile, ".bz2": bz2.BZ2File, ".xz": lzma.LZMAFile}
#: data.max_file_bytes' default: larger files (or decompressed streams) are refused, not read into memory
DEFAULT_MAX_FILE_BYTES: int | None = DataConfig.model_fields["max_file_bytes"].default
_CHUNK = 1 << 20
_SURROGATES = re.compile("[\ud800-\udfff]")
# The whole file is in memory already, so csv's 131,072-character field limit protects nothing; it only turned a
# long text into a misleading "quote never closed" error. (Process-wide, like every csv setting.)
csv.field_size_limit(2**31 - 1)
REJECT_TEXT_CHARS = 200
#: frame columns holding a file's extra (side) columns: carried through cleaning and splitting, never fed to a model
EXTRA_PREFIX = "extra:"
#: extra columns to read: {column name in the file: the recipe key or option naming it, for error messages}
Extras = Mapping[str, str]


def extra_column(name: str) -> str:
    """The frame column that carries the file's column ``name`` (e.g. a fairness group) alongside text and label."""
    return EXTRA_PREFIX + name


@dataclass(frozen=True)
class Keys:
    """The recipe keys (or CLI options) an error message should tell the user to change."""

    file: str = "data.train"
    text: str = "data.text_column"
    label: str = "data.label_column"
    format: str = "data.format"


def keys_for(split: str) -> Keys:
    """Recipe keys for the three recipe splits; CLI options for ``tailor eval`` and ``tailor predict``."""
    if split in ("train", "validation", "test"):
        return Keys(file=f"data.{split}")
    if split == "predict":
        return Keys(file="--input", text="--text-column", label="--label-column", format="the file extension")
    return Keys(file="--data", text="--text-column", label="--label-column", format="the file extension")


@dataclass
class RawTable:
    """One file as read: parsed records (raw strings) plus rejects for the records that did not parse."""

    frame: pd.DataFrame  # columns: row (int), raw_text (str | None), raw_label (str | None), extra:<name> ...
    rejects: list[dict[str, Any]] = field(
        default_factory=list
    )  # reason, row, detail, text; no split/source yet

    @property
    def rows_read(self) -> int:
        return len(self.frame) + len(self.rejects)


# ------------------------------------------------------------------------------------------- helpers


def one_line(message: str, limit: int = 160) -> str:
    """Third-party error text squeezed into one short line, for inclusion in a DataError."""
    flat = " ".join(str(message).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def clip(text: str | None) -> str | None:
    return None if text is None else text[:REJECT_TEXT_CHARS]


def cell(value: Any) -> str | None:
    """Any parsed value as the string a user typed: 1 -> "1", 1.0 -> "1", true -> "true", null/NaN -> None."""
    if value is None:
        return None
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value) if not value.isascii() else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (list, dict)):
        return cell(json.dumps(value, ensure_ascii=False))
    return cell(str(value))


def detect_format(path: Path, fmt: str, keys: Keys) -> str:
    """The configured format, or the one the extension names (``.csv.gz`` counts as csv)."""
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _OPENERS:
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if ext in (".xlsx", ".xls", ".ods"):
        raise DataError(
            f"{path}: spreadsheets are not read directly; save the sheet as CSV (UTF-8) and use that"
        )
    shown = f"extension '{ext}'" if ext else "no extension"
    raise DataError(
        f"{path}: cannot tell the format from {shown}; rename it (.csv .tsv .jsonl .json .parquet .txt) "
        f"or set {keys.format}"
    )


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB" if n >= 1024**2 else f"{n:,} bytes"


def _too_large(path: Path, limit: int, decompressed: bool) -> DataError:
    what = "decompresses to more than" if decompressed else "is larger than"
    return DataError(f"{path}: {what} {_size(limit)} (data.max_file_bytes); raise data.max_file_bytes if the "
                     "machine has the memory, read fewer rows with data.max_rows, or split the file")


class _Bounded(io.RawIOBase):
    """A file's bytes (decompressed when its name ends in .gz/.bz2/.xz), refused past ``limit``: one line, not
    a machine out of memory; corrupt archives are one line too."""

    def __init__(self, path: Path, limit: int | None) -> None:
        super().__init__()
        self.path, self.limit, self.count = path, limit, 0
        self.suffix = path.suffix.lower()
        opener = _OPENERS.get(self.suffix)
        self.decompressing = opener is not None
        self.raw: IO[bytes] = opener(path) if opener is not None else open(path, "rb")  # noqa: SIM115

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            if not self.decompressing:
                raise DataError(f"{self.path}: cannot be read ({one_line(exc)}); check its permissions") from None
            raise DataError(f"{self.path}: not a valid {self.suffix[1:]} archive ({one_line(exc)}); "
                            "re-compress it or decompress it first") from None
        self.count += n or 0
        if self.limit is not None and self.count > self.limit:
            raise _too_large(self.path, self.limit, self.decompressing)
        return n or 0

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_bytes(path: Path, keys: Keys, max_bytes: int | None = DEFAULT_MAX_FILE_BYTES) -> _Bounded:
    """The file as a bounded binary stream (see :class:`_Bounded`), after the checks that it exists and is a file."""
    if not path.exists():
        raise DataError(f"{path}: file not found ({keys.file}); check the path, relative to {Path.cwd()}")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file ({keys.file}); give the data file itself")
    try:
        return _Bounded(path, max_bytes)
    except OSError as exc:
        raise DataError(
            f"{path}: cannot be read ({one_line(exc.strerror or exc)}); check its permissions"
        ) from None


def read_bytes(path: Path, keys: Keys, max_bytes: int | None = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The file's bytes, decompressed when its name ends in .gz/.bz2/.xz; refused past ``max_bytes``."""
    stream = open_bytes(path, keys, max_bytes)
    with stream:
        if max_bytes is not None and not stream.decompressing and path.stat().st_size > max_bytes:
            raise _too_large(path, max_bytes, decompressed=False)  # known before reading a byte
        chunks = []
        while chunk := stream.read(_CHUNK):
            chunks.append(chunk)
    return b"".join(chunks)


def open_text(path: Path, keys: Keys, max_bytes: int | None, newline: str) -> IO[str]:
    """The file as a decoded text stream, for reading only its first rows: UTF-8, or UTF-16 when a BOM says so
    (as :func:`decode`); an undecodable byte surfaces as ``UnicodeDecodeError`` while reading."""
    buffered = io.BufferedReader(open_bytes(path, keys, max_bytes), _CHUNK)
    utf16 = buffered.peek(2)[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    return io.TextIOWrapper(buffered, encoding="utf-16" if utf16 else "utf-8-sig", newline=newline)


def head_lines(path: Path, keys: Keys, max_bytes: int | None, rows: int, count_blank: bool) -> str:
    """The file's text up to its ``rows``-th line (``count_blank=False``: non-blank line), read lazily."""
    lines: list[str] = []
    seen = 0
    with open_text(path, keys, max_bytes, newline="\n") as stream, _decoding(path):
        for line in stream:
            lines.append(line)
            seen += 1 if count_blank or line.strip() else 0
            if seen >= rows:
                break
    return "".join(lines)


@contextlib.contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """``UnicodeDecodeError`` while streaming becomes a one-line error, like :func:`decode`'s for a whole file."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason}) in the rows read; re-save the file as UTF-8") from None


def decode(data: bytes, path: Path) -> str:
    """UTF-8 (a BOM is dropped); UTF-16 only when a BOM says so, as Excel's "Unicode text" export writes it.

    Other encodings are refused rather than guessed: a cp1252 guess silently garbles every non-ASCII text.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise DataError(
                f"{path}: starts like UTF-16 but is not valid UTF-16; re-save the file as UTF-8"
            ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}, line {line}); "
            "re-save the file as UTF-8"
        ) from None


def _column_error(path: Path, wanted: str, present: list[str], key: str) -> DataError:
    shown = ", ".join(present[:20]) + (", ..." if len(present) > 20 else "") if present else "none"
    close = difflib.get_close_matches(wanted, present, n=1, cutoff=0.6)
    if not close:
        close = [p for p in present if p.strip().lower() == wanted.strip().lower()][:1]
    hint = f"did you mean '{close[0]}'? " if close else ""
    return DataError(f"{path}: no column '{wanted}' ({key}); columns present: {shown}; {hint}set {key}")


def check_columns(
    path: Path, present: list[str], text_column: str, label_column: str, require_label: bool, keys: Keys,
    extras: Extras | None = None,
) -> None:
    """The text column must exist, the label column too unless only texts are needed (predict), and every extra."""
    if text_column not in present:
        raise _column_error(path, text_column, present, keys.text)
    if require_label and label_column not in present:
        raise _column_error(path, label_column, present, keys.label)
    for column, key in (extras or {}).items():
        if column not in present:
            raise _column_error(path, column, present, key)


def _table(rows: list[int], texts: list[str | None], labels: list[str | None],
           extras: dict[str, list[str | None]] | None = None) -> pd.DataFrame:
    import pandas as pd

    columns = {
        "row": pd.Series(rows, dtype="int64"),
        "raw_text": pd.Series(texts, dtype=object),
        "raw_label": pd.Series(labels, dtype=object),
    }
    columns |= {extra_column(name): pd.Series(values, dtype=object) for name, values in (extras or {}).items()}
    return pd.DataFrame(columns)


def _malformed(row: int, reason: str, detail: str, text: str | None) -> dict[str, Any]:
    return {"row": row, "reason": reason, "detail": detail, "text": clip(text), "label": None}


# ------------------------------------------------------------------------------------------- csv / tsv


def _csv_records(text: str | IO[str], delimiter: str, path: Path) -> Iterable[tuple[int, list[str] | None, str]]:
    """(first line, fields or None when malformed, detail) per non-blank record, header included.

    ``text`` is the whole file, or a stream (:func:`open_text` with ``newline=""``) read only as far as the
    records taken. A quote opened and never closed swallows the rest of the file; that is a file-level error
    naming the line, since every later row is lost and rejecting one giant "row" would hide it.
    """
    source = io.StringIO(text, newline="") if isinstance(text, str) else text
    reader = csv.reader(source, delimiter=delimiter, strict=True)
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            message = str(exc)
            if "unexpected end of data" in message or "field larger than field limit" in message:
                raise DataError(
                    f"{path}: line {start}: a quoted field opened here is never closed, so the rest of the "
                    'file reads as one value; close the quote or double it ("") inside the text'
                ) from None
            yield start, None, f"line {start}: bad quoting ({one_line(message)})"
            continue
        if len(fields) > 1 or (fields and fields[0].strip()):  # a line of only spaces counts as blank
            yield start, fields, ""


def read_delimited(
    text: str | IO[str],
    path: Path,
    delimiter: str,
    text_column: str,
    label_column: str,
    require_label: bool,
    keys: Keys,
    max_rows: int | None,
    extras: Extras | None = None,
) -> RawTable:
    """CSV/TSV: the header names the columns; a record with the wrong field count is ``malformed_row``."""
    records = iter(_csv_records(text, delimiter, path))
    header_line = next(records, None)
    if header_line is None:
        raise DataError(
            f"{path}: file is empty; it needs a header row ({text_column}{delimiter}{label_column}) "
            "and data rows"
        )
    _, header, detail = header_line
    if header is None:
        raise DataError(f"{path}: the header row cannot be parsed ({detail}); fix the first line")
    header = [name.strip() for name in header]
    check_columns(path, header, text_column, label_column, require_label, keys, extras)
    if header.count(text_column) > 1 or (label_column in header and header.count(label_column) > 1):
        raise DataError(
            f"{path}: a column name appears twice in the header ({', '.join(header)}); rename one"
        )
    text_at = header.index(text_column)
    label_at = header.index(label_column) if label_column in header else None
    extra_at = {name: header.index(name) for name in extras or {}}
    rows: list[int] = []
    texts: list[str | None] = []
    labels: list[str | None] = []
    extra_values: dict[str, list[str | None]] = {name: [] for name in extra_at}
    rejects: list[dict[str, Any]] = []
    for number, fields, bad in _fitted_rows(records, len(header), delimiter, max_rows):
        if fields is None:
            rejects.append(bad)
            continue
        rows.append(number)
        texts.append(fields[text_at])
        labels.append(fields[label_at] if label_at is not None else None)
        for name, at in extra_at.items():
            extra_values[name].append(fields[at])
    if not rows and not rejects:
        raise DataError(f"{path}: has a header but no data rows; add rows below the header")
    return RawTable(_table(rows, texts, labels, extra_values), rejects)


def _fitted_rows(
    records: Iterable[tuple[int, list[str] | None, str]], width: int, delimiter: str, max_rows: int | None
) -> Iterable[tuple[int, list[str] | None, dict[str, Any]]]:
    """(record number, fields, {}) per data record with the header's width, (number, None, reject) otherwise."""
    for number, (line, fields, detail) in enumerate(records, start=1):
        if max_rows is not None and number > max_rows:
            return
        if fields is not None and len(fields) > width and not any(f.strip() for f in fields[width:]):
            fields = fields[:width]  # trailing empty cells, as spreadsheets export them
        if fields is None or len(fields) != width:
            if fields is not None:
                detail = f"line {line}: {len(fields)} fields, the header has {width}"
                detail += "; quote texts that contain the delimiter" if len(fields) > width else ""
            raw = delimiter.join(fields) if fields is not None else None
            yield number, None, _malformed(number, "malformed_row", detail, raw)
            continue
        yield number, fields, {}


# ------------------------------------------------------------------------------------------- json


def _object_columns(objects: list[tuple[int, dict[str, Any]]]) -> list[str]:
    seen: dict[str, None] = {}
    for _, obj in objects:
        for key in obj:
            seen.setdefault(str(key), None)
    return list(seen)


def _from_objects(
    objects: list[tuple[int, dict[str, Any]]],
    rejects: list[dict[str, Any]],
    path: Path,
    text_column: str,
    label_column: str,
    require_label: bool,
    keys: Keys,
    extras: Extras | None = None,
) -> RawTable:
    if not objects:
        first = f" ({rejects[0]['detail']})" if rejects else ""
        raise DataError(
            f"{path}: holds no JSON objects{first}; expected one object per record, "
            f'like {{"{text_column}": "...", "{label_column}": "..."}}'
        )
    check_columns(path, _object_columns(objects), text_column, label_column, require_label, keys, extras)
    rows = [row for row, _ in objects]
    texts = [cell(obj.get(text_column)) for _, obj in objects]
    labels = [cell(obj.get(label_column)) for _, obj in objects]
    extra_values = {name: [cell(obj.get(name)) for _, obj in objects] for name in extras or {}}
    return RawTable(_table(rows, texts, labels, extra_values), rejects)


def _not_object(value: Any) -> str:
    kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
    return f"{kind}, not an object"


def read_jsonl(
    text: str,
    path: Path,
    text_column: str,
    label_column: str,
    require_label: bool,
    keys: Keys,
    max_rows: int | None,
    extras: Extras | None = None,
) -> RawTable:
    """JSON Lines: one object per line; any other line is ``malformed_json`` (row = line number)."""
    objects, rejects = jsonl_objects(text, path, max_rows)
    return _from_objects(objects, rejects, path, text_column, label_column, require_label, keys, extras)


@dataclass(frozen=True)
class JsonLine:
    """One non-blank line of a JSON Lines file: its 1-based number, its text, and its value or why it has none."""

    number: int
    text: str
    value: Any = None
    error: str | None = None  # "line N: invalid JSON (...)" when the line does not parse


def jsonl_lines(text: str, max_rows: int | None = None) -> list[JsonLine]:
    """Every non-blank line of a JSON Lines file (the first ``max_rows`` only), parsed or with its parse error.

    The one JSON Lines parser: classification, QA and token files differ only in what they make of each value.
    """
    lines: list[JsonLine] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if max_rows is not None and len(lines) >= max_rows:
            break
        try:
            lines.append(JsonLine(number, line, json.loads(line)))
        except (ValueError, RecursionError) as exc:
            lines.append(JsonLine(number, line, error=f"line {number}: invalid JSON ({one_line(exc)})"))
    return lines


def jsonl_objects(
    text: str, path: Path, max_rows: int | None
) -> tuple[list[tuple[int, dict[str, Any]]], list[dict[str, Any]]]:
    """(line number, object) of each JSON Lines record, and a ``malformed_json`` reject for any other line."""
    objects: list[tuple[int, dict[str, Any]]] = []
    rejects: list[dict[str, Any]] = []
    lines = jsonl_lines(text, max_rows)
    for line in lines:
        if line.error is not None:
            rejects.append(_malformed(line.number, "malformed_json", line.error, line.text))
        elif not isinstance(line.value, dict):
            detail = f"line {line.number}: {_not_object(line.value)}"
            rejects.append(_malformed(line.number, "malformed_json", detail, line.text))
        else:
            objects.append((line.number, line.value))
    if not lines:
        raise DataError(f"{path}: file is empty; it needs one JSON object per line")
    return objects, rejects


def read_json(
    text: str,
    path: Path,
    text_column: str,
    label_column: str,
    require_label: bool,
    keys: Keys,
    max_rows: int | None,
    extras: Extras | None = None,
) -> RawTable:
    """A JSON array of objects, or ``{"data": [...]}``; row = position in the array (1-based)."""
    objects, rejects = _json_objects(text, path, keys, max_rows)
    return _from_objects(objects, rejects, path, text_column, label_column, require_label, keys, extras)


def _json_objects(
    text: str, path: Path, keys: Keys, max_rows: int | None
) -> tuple[list[tuple[int, dict[str, Any]]], list[dict[str, Any]]]:
    """(position, object) of each item of a JSON array, and a ``malformed_json`` reject for any non-object."""
    if not text.strip():
        raise DataError(f"{path}: file is empty; it needs a JSON array of objects")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "check the quoting and commas"
        if exc.msg == "Extra data":
            hint = f"it looks like JSON Lines (one object per line): rename it to .jsonl or set {keys.format}"
        raise DataError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg}); {hint}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{path}: invalid JSON ({one_line(exc)}); check the file") from None
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
    if not isinstance(value, list):
        raise DataError(
            f'{path}: expected a JSON array of objects or {{"data": [...]}}, found {_not_object(value)}'
        )
    if not value:
        raise DataError(f"{path}: the JSON array is empty; it needs one object per record")
    if max_rows is not None:
        value = value[:max_rows]
    objects: list[tuple[int, dict[str, Any]]] = []
    rejects: list[dict[str, Any]] = []
    for number, item in enumerate(value, start=1):
        if isinstance(item, dict):
            objects.append((number, item))
        else:
            rejects.append(
                _malformed(number, "malformed_json", f"item {number}: {_not_object(item)}", cell(item))
            )
    return objects, rejects


# ------------------------------------------------------------------------------------------- parquet, txt


def read_parquet(
    data: bytes,
    path: Path,
    text_column: str,
    label_column: str,
    require_label: bool,
    keys: Keys,
    max_rows: int | None,
    extras: Extras | None = None,
) -> RawTable:
    """Parquet: any column type is turned into strings (ints 0/1 become "0"/"1"); nulls are missing values."""
    table = _parquet_table(data, path, keys)
    check_columns(path, list(table.column_names), text_column, label_column, require_label, keys, extras)
    if max_rows is not None:
        table = table.slice(0, max_rows)
    if table.num_rows == 0:
        raise DataError(f"{path}: the Parquet file has no rows")
    texts = [cell(v) for v in table.column(text_column).to_pylist()]
    has_label = label_column in table.column_names
    labels = [cell(v) for v in table.column(label_column).to_pylist()] if has_label else [None] * len(texts)
    extra_values = {name: [cell(v) for v in table.column(name).to_pylist()] for name in extras or {}}
    return RawTable(_table(list(range(1, len(texts) + 1)), texts, labels, extra_values))


def _parquet_table(data: bytes, path: Path, keys: Keys) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for files that are not Parquet
        raise DataError(
            f"{path}: not a valid Parquet file ({one_line(exc)}); check the file or set {keys.format}"
        ) from None


def read_txt(text: str, path: Path, max_rows: int | None) -> RawTable:
    """Plain text: one text per line, no header, no labels; row = line number.

    A blank line inside the file is a row with an empty text (rejected as ``empty_text`` by cleaning, so a
    prediction file accounts for every line); only the final newline ends the file without adding a row.
    """
    rows: list[int] = []
    texts: list[str | None] = []
    lines = text.split("\n")
    if lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if max_rows is not None and len(rows) >= max_rows:
            break
        rows.append(number)
        texts.append(line)
    if not any(t.strip() for t in texts if t):
        raise DataError(f"{path}: file is empty; it needs one text per line")
    return RawTable(_table(rows, texts, [None] * len(rows)))


# ------------------------------------------------------------------------------------------- entry point


def read_table(
    path: str | Path,
    *,
    fmt: str = "auto",
    text_column: str = "text",
    label_column: str = "label",
    require_label: bool = True,
    split: str = "train",
    max_rows: int | None = None,
    extra_columns: Extras | None = None,
    max_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
) -> RawTable:
    """Read one file of any supported format into a :class:`RawTable` (no cleaning yet).

    ``extra_columns`` ({column: recipe key}) are read as side columns ``extra:<column>`` (e.g. a fairness group):
    a missing one is a one-line error naming the file, the key and the columns present. With ``max_rows``,
    csv/tsv/jsonl/txt are read only as far as those rows; ``max_bytes`` bounds what is read (module docstring).
    """
    file = Path(path)
    keys = keys_for(split)
    kind = detect_format(file, fmt, keys)
    if kind == "txt" and require_label:
        raise DataError(
            f"{file}: a .txt file holds texts without labels; use csv, tsv, jsonl, json or parquet "
            f"with a '{label_column}' column"
        )
    extras = dict(extra_columns or {})
    if kind == "txt" and extras:
        column, key = next(iter(extras.items()))
        raise _column_error(file, column, [], key)
    if max_rows is not None and kind in ("csv", "tsv"):
        delimiter = "," if kind == "csv" else "\t"
        with open_text(file, keys, max_bytes, newline="") as stream, _decoding(file):
            return read_delimited(stream, file, delimiter, text_column, label_column, require_label, keys,
                                  max_rows, extras)
    if max_rows is not None and kind in ("jsonl", "txt"):
        text = head_lines(file, keys, max_bytes, max_rows, count_blank=kind == "txt")
    elif kind == "parquet":
        data = read_bytes(file, keys, max_bytes)
        return read_parquet(data, file, text_column, label_column, require_label, keys, max_rows, extras)
    else:
        text = decode(read_bytes(file, keys, max_bytes), file)
    if kind in ("csv", "tsv"):
        delimiter = "," if kind == "csv" else "\t"
        return read_delimited(text, file, delimiter, text_column, label_column, require_label, keys, max_rows,
                              extras)
    if kind == "jsonl":
        return read_jsonl(text, file, text_column, label_column, require_label, keys, max_rows, extras)
    if kind == "json":
        return read_json(text, file, text_column, label_column, require_label, keys, max_rows, extras)
    return read_txt(text, file, max_rows)


# ------------------------------------------------------------------------------------------- records


Record = tuple[int, dict[str, Any]]


def read_records(path: str | Path, *, txt_field: str | None = "text", split: str = "predict",
                 max_bytes: int | None = DEFAULT_MAX_FILE_BYTES, max_rows: int | None = None,
                 ) -> tuple[list[Record], list[dict[str, Any]]]:
    """Every record of a file as ``(row, {column: value})``, plus a reject per record that does not parse.

    For inputs made of several fields (a question and its context), where :func:`read_table`'s one text and one
    label do not fit. Values are as parsed: strings from csv/tsv, any JSON value from json/jsonl (a token list
    stays a list). A .txt line becomes ``{txt_field: line}``; ``txt_field=None`` refuses .txt files. With
    ``max_rows`` only the first records are read (csv, tsv, jsonl and txt only as far as they reach).
    """
    file = Path(path)
    keys = keys_for(split)
    kind = detect_format(file, "auto", keys)
    if kind == "txt" and txt_field is None:
        raise DataError(f"{file}: a .txt file holds one text per line, but each record here needs several "
                        "fields; use csv, tsv, jsonl, json or parquet with one column per field")
    if max_rows is not None and kind in ("csv", "tsv"):
        with open_text(file, keys, max_bytes, newline="") as stream, _decoding(file):
            return _delimited_records(stream, file, "," if kind == "csv" else "\t", max_rows)
    if max_rows is not None and kind in ("jsonl", "txt"):
        text = head_lines(file, keys, max_bytes, max_rows, count_blank=kind == "txt")
    else:
        data = read_bytes(file, keys, max_bytes)
        if kind == "parquet":
            table = _parquet_table(data, file, keys)
            table = table.slice(0, max_rows) if max_rows is not None else table
            return list(enumerate(table.to_pylist(), start=1)), []
        text = decode(data, file)
    if kind in ("csv", "tsv"):
        return _delimited_records(text, file, "," if kind == "csv" else "\t")
    if kind == "jsonl":
        return jsonl_objects(text, file, max_rows)
    if kind == "json":
        return _json_objects(text, file, keys, max_rows)
    raw = read_txt(text, file, max_rows).frame
    return [(int(row), {str(txt_field): line}) for row, line in zip(raw["row"], raw["raw_text"], strict=True)], []


def _delimited_records(text: str | IO[str], path: Path, delimiter: str, max_rows: int | None = None,
                       ) -> tuple[list[Record], list[dict[str, Any]]]:
    records = iter(_csv_records(text, delimiter, path))
    header_line = next(records, None)
    if header_line is None:
        raise DataError(f"{path}: file is empty; it needs a header row naming the columns, then data rows")
    _, header, detail = header_line
    if header is None:
        raise DataError(f"{path}: the header row cannot be parsed ({detail}); fix the first line")
    header = [name.strip() for name in header]
    if len(set(header)) < len(header):
        raise DataError(f"{path}: a column name appears twice in the header ({', '.join(header)}); rename one")
    objects: list[Record] = []
    rejects: list[dict[str, Any]] = []
    for number, fields, bad in _fitted_rows(records, len(header), delimiter, max_rows):
        if fields is None:
            rejects.append(bad)
        else:
            objects.append((number, dict(zip(header, fields, strict=True))))
    if not objects and not rejects:
        raise DataError(f"{path}: has a header but no data rows; add rows below the header")
    return objects, rejects
