"""Carving validation and test sets out of the cleaned training data when no files are given for them."""

from __future__ import annotations

import math

import pandas as pd

from tailorlm.errors import DataError


def _share(
    frame: pd.DataFrame, count: int, seed: int, stratify: bool, name: str, warnings: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``count`` rows off ``frame``: stratified by label when possible, else random with a warning.

    Stratifying needs at least two rows per class and room for every class on both sides; tiny classes make
    that impossible, and a slightly unbalanced split beats refusing to run.
    """
    from sklearn.model_selection import train_test_split  # slow to import; only carving needs it

    if stratify:
        try:
            rest, held = train_test_split(frame, test_size=count, random_state=seed, stratify=frame["label"])
            return rest, held
        except ValueError:
            counts = frame["label"].value_counts()
            smallest, size = counts.index[-1], int(counts.iloc[-1])
            warnings.append(
                f"{name} split is not stratified: too few rows per class (class '{smallest}' has {size} of "
                f"{len(frame)}); label proportions may differ between splits"
            )
    rest, held = train_test_split(frame, test_size=count, random_state=seed, shuffle=True)
    return rest, held


def carve_splits(
    train: pd.DataFrame,
    *,
    validation_share: float,
    test_share: float,
    seed: int,
    stratify: bool,
    source: str,
    warnings: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, validation, test): shares are of the cleaned training rows; a zero share gives an empty split.

    Test is taken first, then validation from the rest, so the two are disjoint and a seed reproduces both.
    Each frame keeps file order (sorted by row), which makes the splits easy to read and diff.
    """
    n = len(train)
    n_test = math.ceil(test_share * n) if test_share > 0 else 0
    n_val = math.ceil(validation_share * n) if validation_share > 0 else 0
    if n - n_test - n_val < 1:
        raise DataError(
            f"{source}: only {n} usable training rows, too few to hold out {n_val} validation and {n_test} "
            "test rows; add rows or give data.validation / data.test files"
        )
    empty = train.iloc[0:0]
    test = validation = empty
    rest = train
    if n_test:
        rest, test = _share(rest, n_test, seed, stratify, "test", warnings)
    if n_val:
        rest, validation = _share(rest, n_val, seed, stratify, "validation", warnings)
    return tuple(part.sort_index() for part in (rest, validation, test))  # type: ignore[return-value]
