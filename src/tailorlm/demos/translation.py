"""A small parallel demo set: Highland and Scots customer phrases to standard English (deterministic from a seed).

Why this pair: a team's own data is full of local words (``nae``, ``oot``, ``flitting``, ``the Glimmer`` for the
smart meter) that a general model leaves alone or mangles, while the mapping is regular enough that a small
seq2seq model learns it in minutes. Sentences are built from aligned slot pairs, so every row has exactly one
reference and no translation noise.

Run ``python -m tailorlm.demos.translation --out examples/data/scots_mt`` to write train/validation/test CSVs.
"""

from __future__ import annotations

import argparse
import itertools
import random
from pathlib import Path

import pandas as pd

#: (Scots / Highland English, standard English) per slot; an empty pair means the slot is left out.
GREETINGS: list[tuple[str, str]] = [
    ("", ""), ("aye,", "yes,"), ("hullo,", "hello,"), ("awright,", "hi,"), ("och,", "oh,"), ("see,", "look,"),
]
PROBLEMS: list[tuple[str, str]] = [
    ("the lights are oot", "the lights are out"),
    ("we've nae power", "we have no power"),
    ("there's nae water in the taps", "there is no water in the taps"),
    ("the Glimmer's gone dark", "the smart meter has gone dark"),
    ("I cannae pay the bill", "I cannot pay the bill"),
    ("I'm flitting", "I am moving house"),
    ("the bill's awfy dear", "the bill is very expensive"),
    ("the engineer wis awfy rude", "the engineer was very rude"),
    ("I dinnae ken my reading", "I do not know my reading"),
    ("the meter's no working", "the meter is not working"),
    ("the heating's went off", "the heating has gone off"),
    ("ye've charged me twice", "you have charged me twice"),
    ("naebody came oot", "nobody came out"),
    ("the boiler's making a racket", "the boiler is making a noise"),
    ("I've had a dodgy text", "I have had a suspicious text"),
    ("ma direct debit's wrang", "my direct debit is wrong"),
]
WHEN: list[tuple[str, str]] = [
    ("", ""), ("the noo", "right now"), ("since yesterday", "since yesterday"),
    ("fae this morning", "from this morning"), ("the morra", "tomorrow"), ("last nicht", "last night"),
    ("aw week", "all week"), ("again", "again"),
]
PLACES: list[tuple[str, str]] = [
    ("", ""), ("in Inverness", "in Inverness"), ("doon in Dingwall", "down in Dingwall"),
    ("up the glen", "up the valley"), ("at ma hoose", "at my house"), ("oot at Nairn", "out at Nairn"),
]
SIGN_OFFS: list[tuple[str, str]] = [
    ("", ""), ("cheers", "thanks"), ("ta", "thank you"), ("ta very much", "thank you very much"),
]

TRAIN_FRACTION = 0.8
VALIDATION_FRACTION = 0.1


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def demo_pairs(n_rows: int = 600, seed: int = 7) -> pd.DataFrame:
    """``n_rows`` distinct (source, target) pairs, the same for the same seed; every problem phrase appears."""
    rng = random.Random(seed)
    combos = list(itertools.product(GREETINGS, PROBLEMS, WHEN, PLACES, SIGN_OFFS))
    rng.shuffle(combos)
    # round-robin over problems so that a small n still covers every phrase the model must learn
    by_problem: dict[str, list[tuple]] = {}
    for combo in combos:
        by_problem.setdefault(combo[1][0], []).append(combo)
    chosen: list[tuple] = []
    for batch in itertools.zip_longest(*by_problem.values()):
        chosen.extend(c for c in batch if c is not None)
        if len(chosen) >= n_rows:
            break
    rows = [
        {"source": _join(*(pair[0] for pair in combo)), "target": _join(*(pair[1] for pair in combo))}
        for combo in chosen[:n_rows]
    ]
    return pd.DataFrame(rows)


def generate_demo_mt(out_dir: str | Path, n_rows: int = 600, seed: int = 7) -> dict[str, Path]:
    """Write train.csv, validation.csv and test.csv (columns ``source``, ``target``) into ``out_dir``."""
    frame = demo_pairs(n_rows, seed).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    n_train = int(len(frame) * TRAIN_FRACTION)
    n_val = int(len(frame) * VALIDATION_FRACTION)
    parts = {
        "train": frame.iloc[:n_train],
        "validation": frame.iloc[n_train:n_train + n_val],
        "test": frame.iloc[n_train + n_val:],
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, part in parts.items():
        paths[name] = out / f"{name}.csv"
        part.to_csv(paths[name], index=False)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/data/scots_mt")
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    paths = generate_demo_mt(args.out, args.rows, args.seed)
    print("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
