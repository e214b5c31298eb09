"""The demo dataset: reproducible, every label everywhere, and a test split of unseen phrasings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tailorlm.demos.classification import (
    DEMO_LABEL_DESCRIPTIONS,
    DEMO_LABELS,
    FAMILIES,
    _generate_splits,
    _split_sizes,
    generate_demo_dataset,
)

N_ROWS = 600


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict[str, str]]]:
    """One small generation with template ids, shared by the structural checks."""
    return _generate_splits(seed=13, n_rows=N_ROWS)


def _read_all(paths: dict[str, Path]) -> dict[str, bytes]:
    return {split: path.read_bytes() for split, path in paths.items()}


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    first = generate_demo_dataset(tmp_path / "a", seed=5, n_rows=N_ROWS)
    second = generate_demo_dataset(tmp_path / "b", seed=5, n_rows=N_ROWS)
    assert set(first) == {"train", "validation", "test"}
    assert _read_all(first) == _read_all(second)


def test_different_seed_gives_different_files(tmp_path: Path) -> None:
    first = generate_demo_dataset(tmp_path / "a", seed=5, n_rows=N_ROWS)
    second = generate_demo_dataset(tmp_path / "b", seed=6, n_rows=N_ROWS)
    assert _read_all(first)["train"] != _read_all(second)["train"]


def test_files_have_text_and_label_columns_and_split_sizes(tmp_path: Path) -> None:
    paths = generate_demo_dataset(tmp_path, seed=13, n_rows=N_ROWS)
    sizes = _split_sizes(N_ROWS)
    for split, path in paths.items():
        frame = pd.read_csv(path)
        assert list(frame.columns) == ["text", "label"]
        assert len(frame) == sizes[split]
        assert frame["text"].str.len().min() > 0
    assert sum(sizes.values()) == N_ROWS


def test_every_label_in_every_split(splits: dict[str, list[dict[str, str]]]) -> None:
    for rows in splits.values():
        assert {row["label"] for row in rows} == set(DEMO_LABELS)


def test_labels_are_snake_case_and_described() -> None:
    assert list(DEMO_LABEL_DESCRIPTIONS) == DEMO_LABELS
    assert 7 <= len(DEMO_LABELS) <= 10
    for label, description in DEMO_LABEL_DESCRIPTIONS.items():
        assert label == label.lower() and " " not in label
        assert description.strip()


def test_no_text_in_two_splits(splits: dict[str, list[dict[str, str]]]) -> None:
    texts = {split: {row["text"] for row in rows} for split, rows in splits.items()}
    assert not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]
    assert not texts["train"] & texts["validation"]


def test_test_families_are_disjoint_from_training_families(splits: dict[str, list[dict[str, str]]]) -> None:
    families = {split: {row["template"] for row in rows} for split, rows in splits.items()}
    assert not families["test"] & (families["train"] | families["validation"])
    held_out = {f"{f.intent}/{f.name}" for f in FAMILIES if f.held_out}
    assert families["test"] <= held_out
    assert not families["train"] & held_out


def test_every_intent_has_held_out_families() -> None:
    for label in DEMO_LABELS:
        own = [f for f in FAMILIES if f.intent == label]
        assert any(f.held_out for f in own) and any(not f.held_out for f in own)


def test_template_ids_match_labels(splits: dict[str, list[dict[str, str]]]) -> None:
    for rows in splits.values():
        assert all(row["template"].split("/")[0] == row["label"] for row in rows)


def test_too_few_rows_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_rows"):
        generate_demo_dataset(tmp_path, n_rows=20)
