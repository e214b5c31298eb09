"""Counterfactual swaps: does the predicted label change when only "he" becomes "she"?

For each pair of terms (he/she, mr/mrs, or the recipe's own), every test text holding either term is copied with
the terms swapped both ways at once (whole words only, the case of each occurrence kept: "He" -> "She", "other"
untouched), and the tuned model predicts again. A fair model's label should not move: the flip rate is the share
of swapped texts whose label changed, and the mean absolute change is how far the probability of the originally
predicted class moved. Texts holding no term of the list are counted, never dropped, so the reader sees how much
of the test split the probe covered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: English gendered pairs. Where a term has two partners ("her" is both "him" and "his"), the first pair naming it
#: decides its swap: "her" -> "his" (the possessive is the more frequent use), "him" -> "her", "hers" -> "his".
GENDER_PAIRS: list[tuple[str, str]] = [
    ("he", "she"), ("his", "her"), ("him", "her"), ("his", "hers"), ("himself", "herself"),
    ("man", "woman"), ("men", "women"), ("mr", "mrs"), ("sir", "madam"), ("gentleman", "lady"),
    ("gentlemen", "ladies"), ("father", "mother"), ("fathers", "mothers"), ("dad", "mum"), ("daddy", "mummy"),
    ("son", "daughter"), ("sons", "daughters"), ("brother", "sister"), ("brothers", "sisters"),
    ("husband", "wife"), ("husbands", "wives"), ("boy", "girl"), ("boys", "girls"), ("male", "female"),
    ("males", "females"), ("boyfriend", "girlfriend"), ("uncle", "aunt"), ("nephew", "niece"),
    ("grandfather", "grandmother"), ("grandson", "granddaughter"), ("king", "queen"), ("prince", "princess"),
    ("actor", "actress"), ("waiter", "waitress"), ("masculine", "feminine"),
]
#: flipped examples kept for the report
MAX_EXAMPLES = 10

PredictProba = Callable[[list[str]], np.ndarray]


def resolve_pairs(setting: list[list[str]] | str) -> list[tuple[str, str]]:
    """The recipe's ``fairness.counterfactual`` as term pairs: ``gender`` -> the built-in list, ``none`` -> []."""
    if setting == "gender":
        return list(GENDER_PAIRS)
    if isinstance(setting, str):
        return []
    return [(str(a), str(b)) for a, b in setting]


def swap_map(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased term -> its partner, both ways; the first pair that names a term decides its partner."""
    mapping: dict[str, str] = {}
    for a, b in pairs:
        mapping.setdefault(a.lower(), b.lower())
        mapping.setdefault(b.lower(), a.lower())
    return mapping


def match_case(original: str, replacement: str) -> str:
    """``replacement`` written the way ``original`` was: HE -> SHE, He -> She, he -> she."""
    if len(original) > 1 and original.isupper():
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


class Swapper:
    """Swaps the terms of some pairs in a text, whole words only, keeping each occurrence's case."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.mapping = swap_map(pairs)
        terms = sorted(self.mapping, key=len, reverse=True)  # "hers" before "her"
        alternatives = "|".join(re.escape(term) for term in terms)
        # lookarounds instead of \b: a term may begin or end with a non-word character ("mr.")
        self.pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE) if terms else None

    def occurs(self, text: str) -> bool:
        return self.pattern is not None and self.pattern.search(text) is not None

    def __call__(self, text: str) -> str:
        if self.pattern is None:
            return text
        return self.pattern.sub(lambda m: match_case(m.group(0), self.mapping[m.group(0).lower()]), text)


def swap_terms(text: str, pairs: Sequence[tuple[str, str]]) -> str:
    """``text`` with every term of ``pairs`` swapped for its partner (see :class:`Swapper`)."""
    return Swapper(pairs)(text)


# ------------------------------------------------------------------------------------------------ the probe


def _effect(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per text: did the label flip, and how far did the originally predicted class's probability move."""
    predicted = before.argmax(axis=1)
    rows = np.arange(len(predicted))
    return after.argmax(axis=1) != predicted, np.abs(after[rows, predicted] - before[rows, predicted])


def _summary(flips: np.ndarray, change: np.ndarray) -> dict[str, Any]:
    n = len(flips)
    return {"rows": n, "flips": int(flips.sum()), "flip_rate": float(flips.mean()) if n else None,
            "mean_abs_change": float(change.mean()) if n else None}


def _examples(texts: list[str], swapped: list[str], before: np.ndarray, after: np.ndarray, flips: np.ndarray,
              change: np.ndarray, labels: Sequence[str]) -> list[dict[str, Any]]:
    """Up to MAX_EXAMPLES flipped texts, the largest probability change first."""
    flipped = np.flatnonzero(flips)
    order = flipped[np.argsort(-change[flipped], kind="stable")][:MAX_EXAMPLES]
    return [{"text": texts[i], "swapped": swapped[i], "label": labels[int(before[i].argmax())],
             "swapped_label": labels[int(after[i].argmax())], "change": round(float(change[i]), 6)}
            for i in order]


def counterfactual_audit(texts: Sequence[str], predict_proba: PredictProba, labels: Sequence[str],
                         pairs: Sequence[tuple[str, str]], name: str = "custom") -> dict[str, Any]:
    """Swap each pair (and all pairs at once) in the texts that hold them, predict again, report the flips.

    One forward pass over the originals and every swapped variant together. ``by_pair`` lists only the pairs that
    occur in the texts; the headline numbers swap all pairs at once.
    """
    texts = list(texts)
    everything = Swapper(pairs)
    touched = [i for i, text in enumerate(texts) if everything.occurs(text)]
    per_pair = [(pair, Swapper([pair])) for pair in pairs]
    per_pair = [(pair, s, [i for i in touched if s.occurs(texts[i])]) for pair, s in per_pair]
    per_pair = [(pair, s, rows) for pair, s, rows in per_pair if rows]
    batch = [texts[i] for i in touched] + [everything(texts[i]) for i in touched]
    for _, swapper, rows in per_pair:
        batch += [swapper(texts[i]) for i in rows]
    probs = np.asarray(predict_proba(batch)) if batch else np.zeros((0, len(labels)))
    k = len(touched)
    position = {row: j for j, row in enumerate(touched)}
    before, after_all = probs[:k], probs[k:2 * k]
    flips, change = _effect(before, after_all)
    originals = [texts[i] for i in touched]
    result: dict[str, Any] = {
        "pairs": name, "n": len(texts), "rows_swapped": k, "rows_without_terms": len(texts) - k,
        **{key: value for key, value in _summary(flips, change).items() if key != "rows"},
        "examples": _examples(originals, batch[k:2 * k], before, after_all, flips, change, labels),
        "by_pair": [],
    }
    start = 2 * k
    for (a, b), _, rows in per_pair:
        after = probs[start:start + len(rows)]
        start += len(rows)
        pair_flips, pair_change = _effect(before[[position[i] for i in rows]], after)
        result["by_pair"].append({"pair": f"{a}/{b}"} | _summary(pair_flips, pair_change))
    return result
