"""Easy Data Augmentation (Wei & Zou 2019): four token edits of a text, as small pure functions.

Our own few lines rather than nlpaug: nlpaug's synonym augmenter pulls in NLTK and WordNet downloads, and these
edits need nothing but a word list. Every function takes its ``random.Random``, so a seed gives the same copies
on every machine. Words are whitespace tokens; a synonym list maps a lower-cased word to its replacements.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from pathlib import Path

from tailorlm.augment.base import Augmenter
from tailorlm.errors import DataError

Synonyms = dict[str, list[str]]

#: the four edits, in the order Wei & Zou name them
OPERATIONS = ("synonym_replacement", "random_insertion", "random_swap", "random_deletion")


def edit_count(n_words: int, alpha: float) -> int:
    """How many words one edit changes: ``alpha`` of them, at least one."""
    return max(1, round(alpha * n_words))


def synonym_replacement(words: list[str], n: int, synonyms: Synonyms, rng: random.Random) -> list[str]:
    """Replace up to ``n`` distinct words that have a synonym by one of their synonyms."""
    out = list(words)
    candidates = [i for i, word in enumerate(words) if synonyms.get(word.lower())]
    rng.shuffle(candidates)
    for i in candidates[:n]:
        out[i] = rng.choice(synonyms[words[i].lower()])
    return out


def random_insertion(words: list[str], n: int, synonyms: Synonyms, rng: random.Random) -> list[str]:
    """Insert, ``n`` times, a synonym of a random word that has one at a random position."""
    out = list(words)
    for _ in range(n):
        candidates = [word for word in out if synonyms.get(word.lower())]
        if not candidates:
            break
        synonym = rng.choice(synonyms[rng.choice(candidates).lower()])
        out.insert(rng.randint(0, len(out)), synonym)
    return out


def random_swap(words: list[str], n: int, rng: random.Random) -> list[str]:
    """Swap two random positions ``n`` times (a text of one word stays as it is)."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: list[str], p: float, rng: random.Random) -> list[str]:
    """Delete each word with probability ``p``, keeping one random word when all would go."""
    if len(words) <= 1:
        return list(words)
    kept = [word for word in words if rng.random() >= p]
    return kept or [rng.choice(words)]


def available(synonyms: Synonyms) -> tuple[str, ...]:
    """The edits a word list allows: replacement and insertion need synonyms."""
    return OPERATIONS if synonyms else ("random_swap", "random_deletion")


def edit(text: str, operation: str, alpha: float, synonyms: Synonyms, rng: random.Random) -> str:
    """``text`` after one edit named ``operation``, changing about ``alpha`` of its words."""
    words = text.split()
    n = edit_count(len(words), alpha)
    edits: dict[str, Callable[[], list[str]]] = {
        "synonym_replacement": lambda: synonym_replacement(words, n, synonyms, rng),
        "random_insertion": lambda: random_insertion(words, n, synonyms, rng),
        "random_swap": lambda: random_swap(words, n, rng),
        "random_deletion": lambda: random_deletion(words, alpha, rng),
    }
    return " ".join(edits[operation]())


def eda_copy(text: str, alpha: float, synonyms: Synonyms, rng: random.Random) -> tuple[str, str]:
    """One augmented copy of ``text``: a random available edit (as Wei & Zou, one per copy); (text, edit)."""
    operation = rng.choice(available(synonyms))
    return edit(text, operation, alpha, synonyms, rng), operation


def read_synonyms(name: str) -> Synonyms:
    """``augment.synonyms``: csv/tsv of word,synonym pairs, used both ways; one-line errors naming the key."""
    path = Path(name).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "file not found"
        raise DataError(f"{path}: {what} (augment.synonyms); give a csv/tsv of word,synonym pairs (relative to "
                        f"{Path.cwd()}) or remove augment.synonyms to use only swap and deletion")
    delimiter = "\t" if path.suffix.lower() in {".tsv", ".tab"} else ","
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            pairs = [[cell.strip() for cell in cells[:2]] for cells in csv.reader(handle, delimiter=delimiter)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable UTF-8 csv/tsv (augment.synonyms): {exc}") from None
    synonyms: dict[str, set[str]] = {}
    for pair in pairs:
        if len(pair) < 2 or not all(pair) or [p.lower() for p in pair] == ["word", "synonym"]:
            continue
        synonyms.setdefault(pair[0].lower(), set()).add(pair[1])
        synonyms.setdefault(pair[1].lower(), set()).add(pair[0])
    if not synonyms:
        raise DataError(f"{path}: no word,synonym pairs (augment.synonyms); give two columns, one pair a line")
    return {word: sorted(found) for word, found in synonyms.items()}


class EdaAugmenter(Augmenter):
    """``augment.method: eda``: one random available edit per copy (``eda_copy``)."""

    name = "eda"

    def __init__(self, alpha: float, synonyms: Synonyms) -> None:
        super().__init__()
        self.alpha, self.synonyms = alpha, synonyms

    def candidates(self, texts: list[str], rng: random.Random) -> list[str | None]:
        out: list[str | None] = []
        for text in texts:
            copy, operation = eda_copy(text, self.alpha, self.synonyms, rng)
            self.operations[operation] += 1
            out.append(copy)
        return out

    def record(self) -> dict[str, object]:
        return {"synonym_words": len(self.synonyms)}
