"""A localized NER demo: messages to Glenmor Water & Power with PLACE, TARIFF, ACCOUNT, DATE and METER tagged (BIO).

Why synthetic, like the classification demo (``tailorlm.demos.classification``): offline, redistributable, and localized
(made-up places, tariff names and reference formats) so that a general model has not seen these entities.

Why a word list is not enough but a tuned model can learn it:

* account numbers and meter serials are fresh random strings in every message, so only their shape and their
  context ("ref", "meter number") mark them; bare five-digit meter *readings* are not entities at all;
* some places, tariffs and dates appear only in the test split, so the model must read the context ("flitting
  to ...", "switch to ... tariff");
* "may" is a date ("3 May") or a verb ("may I switch"), and multi-word names ("Peat & Breeze", "Bridge of
  Tullich") need their boundaries right to count.

The same seed always gives byte-identical files.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

SPLIT_FRACTIONS = {"train": 0.7, "validation": 0.1}  # the rest is test
HELD_OUT_SHARE = 0.5  # chance that a test message draws a value seen only in test

VALUES: dict[str, list[str]] = {
    "PLACE": ["Kinlochbrae", "Strathglen", "Auchterbeg", "Portmorran", "Dunmhor", "Glenbuie", "Balnacraig",
              "Inverluss", "Mill Brae", "Harbour Road", "Kirk Wynd", "Tulloch Crescent", "the Braeside estate"],
    "TARIFF": ["Heather Saver", "Cairn Fixed", "Nightglow", "Peat & Breeze", "Standard Glen"],
    "DATE": ["Friday", "next Monday", "14 March", "3 May", "May 12", "Hogmanay", "the 1st", "Tuesday", "31/10",
             "end of June"],
}
HELD_OUT_VALUES: dict[str, list[str]] = {
    "PLACE": ["Ardnacross", "Lochcarran", "Bridge of Tullich", "Sraid na h-Eaglais"],
    "TARIFF": ["Thistle Flex", "Glen Green 24"],
    "DATE": ["2 February", "Saturday", "next Thursday"],
}


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


GENERATED: dict[str, Callable[[random.Random], str]] = {
    "ACCOUNT": lambda rng: rng.choice(["GW-{}", "GWP{}", "{}", "GW {}"]).format(_digits(rng, 6)),
    "METER": lambda rng: rng.choice(["GLM-{}", "GLM{}", "G{}-07", "GLM {}"]).format(_digits(rng, 5)),
}
# Slots that are not entities (tagged O): numbers that look like references but are not.
PLAIN: dict[str, Callable[[random.Random], str]] = {
    "reading": lambda rng: _digits(rng, 5),
    "amount": lambda rng: f"£{rng.randrange(40, 900)}",
}

TEMPLATES: list[str] = [
    "the power's off in {PLACE} since {DATE}",
    "nae water at {PLACE} since {DATE} , can someone come out",
    "please switch account {ACCOUNT} to {TARIFF} from {DATE}",
    "meter {METER} at {PLACE} reads {reading}",
    "my reading for meter {METER} is {reading} , account {ACCOUNT}",
    "reading today is {reading} for acc {ACCOUNT}",
    "we're flitting to {PLACE} on {DATE} , close account {ACCOUNT}",
    "is {TARIFF} cheaper than {TARIFF} for a house in {PLACE} ?",
    "bill for {ACCOUNT} is {amount} on {TARIFF} , that can't be right",
    "your engineer never came to {PLACE} on {DATE}",
    "may I move from {TARIFF} to {TARIFF} ?",
    "the Glimmer {METER} stopped on {DATE} , last reading {reading}",
    "blackie in {PLACE} again , ref {ACCOUNT}",
    "can you read the meter at {PLACE} before {DATE} ?",
    "new tenant at {PLACE} , meter number {METER}",
    "got a text saying my {TARIFF} deal ends {DATE} , is it a scam ?",
    "can I pay the {amount} in instalments ? account {ACCOUNT}",
    "we may be away on {DATE} so leave the card at {PLACE}",
    "thanks for sorting the Glimmer so quick",
    "cheers , the lights are back on",
    "is there a fault near {PLACE} ? {METER} is blank",
    "sign me up for {TARIFF} please , ref {ACCOUNT} , moving in {DATE}",
]


def _tokens(text: str) -> list[str]:
    return text.split()


def _slot(name: str, rng: random.Random, held_out: bool) -> tuple[list[str], list[str]]:
    """Words and BIO tags of one filled slot."""
    if name in PLAIN:
        words = _tokens(PLAIN[name](rng))
        return words, ["O"] * len(words)
    if name in GENERATED:
        value = GENERATED[name](rng)
    else:
        pool = HELD_OUT_VALUES[name] if held_out and rng.random() < HELD_OUT_SHARE else VALUES[name]
        value = rng.choice(pool)
    words = _tokens(value)
    return words, [f"B-{name}"] + [f"I-{name}"] * (len(words) - 1)


def sentence(rng: random.Random, held_out: bool) -> tuple[list[str], list[str]]:
    """One tagged message; about a third are typed all in lower case, as on a phone."""
    words: list[str] = []
    tags: list[str] = []
    for piece in rng.choice(TEMPLATES).split():
        if piece.startswith("{") and piece.endswith("}"):
            slot_words, slot_tags = _slot(piece[1:-1], rng, held_out)
        else:
            slot_words, slot_tags = [piece], ["O"]
        words += slot_words
        tags += slot_tags
    if rng.random() < 0.3:
        words = [w.lower() for w in words]
    return words, tags


def generate_ner_splits(seed: int = 13, n_sentences: int = 1500) -> dict[str, list[dict[str, list[str]]]]:
    """Unique sentences per split (no sentence in two splits); test alone draws the held-out values."""
    if n_sentences < 30:
        raise ValueError("n_sentences must be at least 30")
    rng = random.Random(seed)
    n_train = round(n_sentences * SPLIT_FRACTIONS["train"])
    n_val = round(n_sentences * SPLIT_FRACTIONS["validation"])
    sizes = {"train": n_train, "validation": n_val, "test": n_sentences - n_train - n_val}
    seen: set[tuple[str, ...]] = set()
    splits: dict[str, list[dict[str, list[str]]]] = {}
    for split, size in sizes.items():
        rows: list[dict[str, list[str]]] = []
        attempts = 0
        while len(rows) < size:
            attempts += 1
            if attempts > size * 50:
                raise RuntimeError(f"could not generate {size} unique {split} sentences")
            words, tags = sentence(rng, held_out=split == "test")
            if tuple(words) in seen:
                continue
            seen.add(tuple(words))
            rows.append({"tokens": words, "tags": tags})
        splits[split] = rows
    return splits


def to_conll(rows: list[dict[str, list[str]]]) -> str:
    """CoNLL text: "word tag" per line, a blank line after each sentence."""
    return "".join("".join(f"{w} {t}\n" for w, t in zip(r["tokens"], r["tags"], strict=True)) + "\n" for r in rows)


def generate_ner_dataset(out_dir: Path, seed: int = 13, n_sentences: int = 1500) -> dict[str, Path]:
    """Write {train,validation,test}.jsonl and .conll (the same sentences in both formats); return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for split, rows in generate_ner_splits(seed, n_sentences).items():
        jsonl = out_dir / f"{split}.jsonl"
        jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        conll = out_dir / f"{split}.conll"
        conll.write_text(to_conll(rows), encoding="utf-8")
        paths[f"{split}.jsonl"], paths[f"{split}.conll"] = jsonl, conll
    return paths
