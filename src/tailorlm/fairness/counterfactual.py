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

from tailorlm.fairness.families import resolve_family

#: English gendered pairs, [masculine, feminine] (``terms/gender.yaml``); her/his follow the rule in ``Swapper``
GENDER_PAIRS: list[tuple[str, str]] = resolve_family("gender")["pairs"]
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


def swap_map(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Lower-cased term -> its partners in list order, both ways ("dad" -> ["mom", "mum"])."""
    mapping: dict[str, list[str]] = {}
    for a, b in pairs:
        for term, partner in ((a, b), (b, a)):
            partners = mapping.setdefault(term.lower(), [])
            if partner.lower() not in partners:
                partners.append(partner.lower())
    return mapping


def match_case(original: str, replacement: str) -> str:
    """``replacement`` written the way ``original`` was: HE -> SHE, He -> She, he -> she."""
    if len(original) > 1 and original.isupper():
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


#: words after which "her" is an object ("made her feel", "saw her in", "told her everything"), not a possessive
#: ("her bike"): function words, pronouns, common bare verbs; an -ly adverb counts too. A cheap rule, not a tagger.
OBJECT_CONTEXT = frozenset((
    "a", "an", "the", "this", "that", "these", "those", "some", "any", "all", "every", "each", "no", "my", "your",
    "our", "their", "his", "her", "its", "me", "you", "him", "us", "them", "it", "to", "and", "or", "but", "nor",
    "so", "yet", "for", "with", "without", "at", "in", "on", "of", "from", "by", "into", "onto", "about", "over",
    "under", "after", "before", "since", "until", "up", "down", "out", "off", "back", "away", "again", "too",
    "very", "really", "just", "now", "then", "here", "there", "today", "tonight", "tomorrow", "yesterday", "once",
    "as", "if", "when", "while", "because", "though", "although", "than", "like", "what", "who", "whom", "how",
    "why", "where", "which", "whether", "is", "was", "are", "were", "be", "been", "am", "will", "would", "can",
    "could", "should", "shall", "may", "might", "must", "feel", "feels", "go", "come", "do", "know", "think", "see",
    "be", "laugh", "cry", "smile", "leave", "stay", "want", "say", "tell", "win", "lose", "sleep", "eat", "work",
    "try", "wait", "look", "get", "take", "make", "have", "help", "understand", "believe", "like", "love", "hate",
    "speak", "talk", "listen", "sing", "dance", "play", "read", "write", "run", "walk", "sit", "stand", "die",
    "live", "change", "keep", "let", "find", "give", "call", "ask", "thank", "miss", "meet", "visit", "marry",
    "kiss", "hug", "join", "follow", "everything", "something", "nothing", "anything", "everyone", "someone",
    "anyone", "nobody", "everybody", "somebody", "anybody",
))
NEXT_WORD = re.compile(r"\s*([A-Za-z']+)?")


def _next_word(text: str, end: int) -> str | None:
    """The word right after position ``end`` (only spaces between), lower-cased; None at punctuation or the end."""
    match = NEXT_WORD.match(text, end)
    word = match.group(1) if match else None
    return word.lower() if word else None


def _possessive_follows(text: str, end: int) -> bool:
    """Whether the word after ``end`` reads as the noun of a possessive ("her bike"), by ``OBJECT_CONTEXT``."""
    word = _next_word(text, end)
    return word is not None and word not in OBJECT_CONTEXT and not word.endswith("ly")


class Swapper:
    """Swaps the terms of some pairs in a text, whole words only, keeping each occurrence's case.

    Grammar the word list alone cannot get right:

    - ``her`` becomes ``his`` before a noun-like word ("her bike" -> "his bike") and ``him`` otherwise ("made her
      feel", "saw her.", see ``OBJECT_CONTEXT``); ``his`` becomes ``her`` before a word and ``hers`` at the end of
      a clause ("the bike is his.");
    - a term with several partners ("dad": mom or mum) becomes the partner the text already uses, else the first
      listed, so a British text stays British;
    - a term written with a capital in the pairs (names, "Christian") only matches capitalised occurrences.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.mapping = swap_map(pairs)
        self.capitalised = {t.lower() for pair in pairs for t in pair if t[:1].isupper()}
        terms = sorted(self.mapping, key=len, reverse=True)  # "hers" before "her"
        alternatives = "|".join(re.escape(term) for term in terms)
        # lookarounds instead of \b: a term may begin or end with a non-word character ("mr.")
        self.pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE) if terms else None
        self.pronouns = {"his", "him"} <= set(self.mapping.get("her", []))

    def occurs(self, text: str) -> bool:
        return self.pattern is not None and any(self._applies(m) for m in self.pattern.finditer(text))

    def _applies(self, match: re.Match[str]) -> bool:
        word = match.group(0)
        return word.lower() not in self.capitalised or word[:1].isupper()

    def _partner(self, text: str, match: re.Match[str], present: set[str]) -> str:
        word = match.group(0).lower()
        partners = self.mapping[word]
        if self.pronouns and word == "her":
            return "his" if _possessive_follows(text, match.end()) else "him"
        if self.pronouns and word == "his" and "hers" in partners:
            return "her" if _next_word(text, match.end()) is not None else "hers"
        return next((p for p in partners if p in present), partners[0])

    def __call__(self, text: str) -> str:
        if self.pattern is None:
            return text
        present = {m.group(0).lower() for m in self.pattern.finditer(text)}

        def swap(match: re.Match[str]) -> str:
            if not self._applies(match):
                return match.group(0)
            return match_case(match.group(0), self._partner(text, match, present))

        return self.pattern.sub(swap, text)


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
