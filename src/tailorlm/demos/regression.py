"""The regression demo: how urgent a customer message to the fictional Glenmor Water & Power is, 0 to 5.

Each message joins a situation (its base urgency) with modifiers that raise or lower it (someone vulnerable in
the house, "no rush", a time already waited); the score is their sum plus a little rater noise, clipped to
[0, 5]. Some situations are phrased only in the test split, so the test measures new wordings. Deterministic
from the seed; offline.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

#: (phrasings seen in training, phrasings kept for test, base urgency)
SITUATIONS: list[tuple[list[str], list[str], float]] = [
    (["the power is off in the whole street", "we have no electricity at all"], ["the house has gone dark"], 3.5),
    (["there is water pouring through the ceiling", "a pipe burst under the sink"], ["the kitchen is flooding"],
     4.0),
    (["I can smell gas by the meter", "there is a gas smell in the hall"], ["something smells of gas"], 4.5),
    (["my bill looks too high this month", "I was charged twice"], ["the invoice is wrong"], 1.5),
    (["I want to send a meter reading", "here is my reading for the Glimmer"], ["reading attached"], 0.5),
    (["I am moving house next month", "we move out in spring"], ["new tenants arrive soon"], 0.8),
    (["can I switch to the Bothy tariff", "I would like a cheaper plan"], ["tell me about other tariffs"], 0.6),
    (["the engineer was rude to my mother", "nobody turned up for the visit"], ["your staff were unhelpful"], 2.0),
]
UP = [("there is a newborn baby here", 0.8), ("my dad relies on oxygen at home", 1.2),
      ("it has been like this for two days", 0.7), ("it is freezing tonight", 0.5)]
DOWN = [("no rush at all", -0.6), ("whenever suits you", -0.5), ("just for your records", -0.4)]


def _message(rng: random.Random, held_out: bool) -> dict[str, object]:
    train_phrases, test_phrases, base = rng.choice(SITUATIONS)
    phrase = rng.choice(test_phrases if held_out else train_phrases)
    parts, score = [phrase], base
    if rng.random() < 0.4:
        text, delta = rng.choice(UP)
        parts.append(text)
        score += delta
    if rng.random() < 0.3:
        text, delta = rng.choice(DOWN)
        parts.append(text)
        score += delta
    rng.shuffle(parts)
    greeting = rng.choice(["", "Hi, ", "Hello there. ", "Morning, "])
    score = min(5.0, max(0.0, score + rng.gauss(0.0, 0.15)))
    return {"text": greeting + ", ".join(parts) + rng.choice([".", "!", " please."]), "score": round(score, 2)}


def generate_regression_dataset(out_dir: Path, seed: int = 13, n_rows: int = 600) -> dict[str, Path]:
    """train.csv, validation.csv, test.csv (``text``, ``score``) under ``out_dir``; test phrasings held out."""
    rng = random.Random(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes = {"train": int(n_rows * 0.7), "validation": int(n_rows * 0.1), "test": n_rows - int(n_rows * 0.8)}
    paths: dict[str, Path] = {}
    seen: set[str] = set()
    for split, n in sizes.items():
        rows: list[dict[str, object]] = []
        while len(rows) < n:
            row = _message(rng, held_out=split == "test" and rng.random() < 0.5)
            if row["text"] not in seen:
                seen.add(str(row["text"]))
                rows.append(row)
        paths[split] = out / f"{split}.csv"
        pd.DataFrame(rows).to_csv(paths[split], index=False)
    return paths
