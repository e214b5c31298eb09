"""Measures of domain shift shared by the adaptation methods and the shift report.

``proxy_a_distance`` (Ben-David et al. 2007; Ganin et al. 2016): train a domain classifier to tell source from
target features; with held-out error ``e`` the proxy A-distance is ``2 (1 - 2e)``: 0 when the domains cannot be
told apart, 2 when they always can. The classifier is scikit-learn's logistic regression, scored by stratified
5-fold cross-validation so every row is held out once.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tailorlm.errors import DataError, UserError


def domain_accuracy(source: np.ndarray, target: np.ndarray, seed: int = 0) -> float:
    """Held-out accuracy of a logistic-regression domain classifier on the two feature sets (5-fold CV)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    features = np.concatenate([source, target])
    domain = np.concatenate([np.zeros(len(source), dtype=int), np.ones(len(target), dtype=int)])
    folds = StratifiedKFold(n_splits=min(5, len(source), len(target)), shuffle=True, random_state=seed)
    scores = cross_val_score(LogisticRegression(max_iter=2000), features, domain, cv=folds, scoring="accuracy")
    return float(scores.mean())


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """``{"domain_accuracy", "proxy_a_distance"}`` of two feature sets (rows: examples)."""
    accuracy = domain_accuracy(source, target, seed)
    error = 1.0 - accuracy
    return {"domain_accuracy": round(accuracy, 6), "proxy_a_distance": round(2.0 * (1.0 - 2.0 * error), 6)}


# ------------------------------------------------------------------------------------------- tailor shift
#: the words of a text for the vocabulary measures: lower-cased runs of letters, digits and inner apostrophes
WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
#: rows per side embedded for the proxy A-distance (a random sample beyond it: the estimate needs hundreds, not all)
EMBED_ROWS = 2000
#: words listed per side as the ones that tell the domains apart, and the fewest uses a listed word needs
TOP_WORDS = 15
MIN_WORD_COUNT = 3
#: marks shift.json as tailor's, so --out replaces only what it wrote before
WRITTEN_BY = "tailor shift"


@dataclass
class DomainFile:
    """One side of ``tailor shift``: its texts and, when the file has the label column, their labels."""

    path: str
    texts: list[str]
    labels: list[str] | None


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def read_domain_texts(path: Path, text_column: str, label_column: str, option: str) -> DomainFile:
    """A csv/tsv/jsonl/json/parquet/txt file's non-empty texts (and labels, when every kept row has one)."""
    from tailorlm.data.load import read_records

    if not path.is_file():
        what = "is a folder" if path.is_dir() else "file not found"
        raise DataError(f"{path}: {what} ({option}); give a file of texts (csv, tsv, jsonl, json, parquet or txt)")
    records, _ = read_records(path, txt_field=text_column, split="predict")
    if records and not any(text_column in values for _, values in records):
        present = sorted({column for _, values in records[:50] for column in values})
        raise DataError(f"{path}: no column '{text_column}' ({option}); the file has "
                        f"{', '.join(present[:20]) or 'no columns'}; pass --text-column")
    rows = [values for _, values in records if str(values.get(text_column) or "").strip()]
    if len(rows) < 2:
        raise DataError(f"{path}: {len(rows)} non-empty texts in column '{text_column}' ({option}); the domain "
                        "classifier needs at least 2 per side")
    texts = [str(values[text_column]).strip() for values in rows]
    labelled = all(str(values.get(label_column) or "").strip() for values in rows)
    labels = [str(values[label_column]).strip() for values in rows] if labelled else None
    return DomainFile(str(path), texts, labels)


def length_stats(texts: list[str]) -> dict[str, float]:
    lengths = np.array([len(words(text)) for text in texts], dtype=np.float64)
    return {"mean": round(float(lengths.mean()), 3), "median": float(np.median(lengths)),
            "p90": float(np.percentile(lengths, 90))}


def vocabulary_shift(source: list[str], target: list[str]) -> dict[str, Any]:
    """Jaccard overlap of the word types, and the share of target word tokens the source never uses."""
    source_counts = Counter(w for text in source for w in words(text))
    target_counts = Counter(w for text in target for w in words(text))
    union = set(source_counts) | set(target_counts)
    shared = set(source_counts) & set(target_counts)
    target_tokens = sum(target_counts.values())
    unseen = sum(n for word, n in target_counts.items() if word not in source_counts)
    return {"source_types": len(source_counts), "target_types": len(target_counts), "shared_types": len(shared),
            "jaccard": round(len(shared) / len(union), 6) if union else 0.0,
            "target_oov_rate": round(unseen / target_tokens, 6) if target_tokens else 0.0,
            "target_oov_types": len(set(target_counts) - set(source_counts))}


def distinguishing_words(source: list[str], target: list[str], top: int = TOP_WORDS,
                         alpha: float = 0.5) -> dict[str, list[dict[str, Any]]]:
    """The words most typical of each side by the smoothed log-odds ratio, as a z-score (Monroe et al. 2008).

    ``delta = log((t+a)/(T-t+a)) - log((s+a)/(S-s+a))`` with its variance ``1/(t+a) + 1/(s+a)``; words used fewer
    than MIN_WORD_COUNT times in all are left out (a word seen once says nothing about a domain).
    """
    s_counts = Counter(w for text in source for w in words(text))
    t_counts = Counter(w for text in target for w in words(text))
    s_total, t_total = sum(s_counts.values()), sum(t_counts.values())
    scored = []
    for word in set(s_counts) | set(t_counts):
        s, t = s_counts[word], t_counts[word]
        if s + t < MIN_WORD_COUNT:
            continue
        delta = math.log((t + alpha) / (t_total - t + alpha)) - math.log((s + alpha) / (s_total - s + alpha))
        z = delta / math.sqrt(1.0 / (t + alpha) + 1.0 / (s + alpha))
        scored.append({"word": word, "z": round(z, 3), "source_count": s, "target_count": t})
    scored.sort(key=lambda row: (-row["z"], row["word"]))
    return {"target": [row for row in scored[:top] if row["z"] > 0],
            "source": [row for row in scored[::-1][:top] if row["z"] < 0]}


def label_shift(source: list[str], target: list[str]) -> dict[str, Any]:
    """Each label's share per side and the total variation distance between the two label distributions."""
    s_counts, t_counts = Counter(source), Counter(target)
    labels = sorted(set(s_counts) | set(t_counts))
    shares = {label: {"source": round(s_counts[label] / len(source), 6),
                      "target": round(t_counts[label] / len(target), 6)} for label in labels}
    tvd = 0.5 * sum(abs(share["source"] - share["target"]) for share in shares.values())
    return {"labels": shares, "total_variation": round(tvd, 6),
            "only_in_source": [label for label in labels if not t_counts[label]],
            "only_in_target": [label for label in labels if not s_counts[label]]}


def _sample(texts: list[str], seed: int) -> list[str]:
    if len(texts) <= EMBED_ROWS:
        return texts
    picked = np.random.default_rng(seed).choice(len(texts), size=EMBED_ROWS, replace=False)
    return [texts[i] for i in sorted(picked)]


def embedding_shift(model_name: str, source: list[str], target: list[str], seed: int = 0) -> dict[str, Any]:
    """Proxy A-distance of the model's frozen mean-pooled features of (at most EMBED_ROWS) texts per side."""
    from transformers import AutoModel

    from tailorlm.evaluate.inference import forward_sorted, mean_pooled
    from tailorlm.models.loading import load_pretrained, load_tokenizer
    from tailorlm.models.registry import resolve_model
    from tailorlm.recipe import ModelConfig
    from tailorlm.tasks.common import model_token_limit

    cfg = ModelConfig(name=model_name)
    resolved = resolve_model(model_name, allow_pickle=False)
    tokenizer = load_tokenizer(resolved, cfg)
    encoder = load_pretrained(AutoModel, resolved, cfg)
    max_length = min(256, model_token_limit(tokenizer))
    sides = [_sample(texts, seed) for texts in (source, target)]
    features = [forward_sorted(encoder, tokenizer, texts, max_length, 32, mean_pooled).astype(np.float64)
                for texts in sides]
    return {"model": resolved.name, "embedded_rows": {"source": len(sides[0]), "target": len(sides[1])},
            **proxy_a_distance(features[0], features[1], seed)}


def shift_report(source: DomainFile, target: DomainFile, model_name: str) -> dict[str, Any]:
    """Everything ``tailor shift`` measures about two files, as shift.json holds it."""
    return {"written_by": WRITTEN_BY, **texts_shift(source, target, model_name)}


def texts_shift(source: DomainFile, target: DomainFile, model_name: str) -> dict[str, Any]:
    """The shift measures of two sets of texts: ``tailor shift``'s, and a run's with a target domain
    (``adapt.shift`` in metrics.json, the report's "Domain shift")."""
    report: dict[str, Any] = {
        "source": {"path": source.path, "rows": len(source.texts)},
        "target": {"path": target.path, "rows": len(target.texts)},
        "vocabulary": vocabulary_shift(source.texts, target.texts),
        "length_words": {"source": length_stats(source.texts), "target": length_stats(target.texts)},
        "embeddings": embedding_shift(model_name, source.texts, target.texts),
        "distinguishing_words": distinguishing_words(source.texts, target.texts),
    }
    if source.labels is not None and target.labels is not None:
        report["label_shift"] = label_shift(source.labels, target.labels)
    return report


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(measure, source, target) rows of the printed table and of shift.md."""
    vocab, lengths, emb = report["vocabulary"], report["length_words"], report["embeddings"]
    rows = [
        ("rows", f"{report['source']['rows']:,}", f"{report['target']['rows']:,}"),
        ("word types", f"{vocab['source_types']:,}", f"{vocab['target_types']:,}"),
        ("vocabulary overlap (Jaccard)", f"{vocab['jaccard']:.3f}", ""),
        ("target OOV rate (tokens)", "", f"{vocab['target_oov_rate']:.3f}"),
    ]
    rows += [(f"words per text, {stat}", f"{lengths['source'][stat]:g}", f"{lengths['target'][stat]:g}")
             for stat in ("mean", "median", "p90")]
    rows.append((f"proxy A-distance ({emb['model']})", f"{emb['proxy_a_distance']:.3f}",
                 f"domain accuracy {emb['domain_accuracy']:.3f}"))
    if "label_shift" in report:
        rows.append(("label distribution, total variation", f"{report['label_shift']['total_variation']:.3f}", ""))
    return rows


def _word_list(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{row['word']} ({row['z']:+.1f})" for row in rows) or "none"


def shift_markdown(report: dict[str, Any]) -> str:
    """shift.md: the one page a user reads before choosing an adaptation method."""
    lines = [f"# Domain shift: {report['source']['path']} -> {report['target']['path']}", "",
             "| measure | source | target |", "|---|---|---|"]
    lines += [f"| {name} | {source} | {target} |" for name, source, target in summary_rows(report)]
    words_ = report["distinguishing_words"]
    lines += ["", "Proxy A-distance: 0 when a classifier cannot tell the domains apart, 2 when it always can.", "",
              "## Words that tell the domains apart (smoothed log-odds z-score)", "",
              f"- typical of the target: {_word_list(words_['target'])}",
              f"- typical of the source: {_word_list(words_['source'])}"]
    if "label_shift" in report:
        lines += ["", "## Labels", "", "| label | source share | target share |", "|---|---|---|"]
        lines += [f"| {label} | {share['source']:.3f} | {share['target']:.3f} |"
                  for label, share in report["label_shift"]["labels"].items()]
    return "\n".join(lines) + "\n"


def write_shift(out_dir: Path, report: dict[str, Any]) -> list[Path]:
    """shift.json and shift.md in ``out_dir``; an existing shift.json (or a shift.md beside none) that tailor did
    not write is refused, never overwritten."""
    import json

    from tailorlm.rundir import atomic_write_json, atomic_write_text

    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: is a file, not a folder (--out); give a folder for shift.json and shift.md")
    json_path, md_path = out_dir / "shift.json", out_dir / "shift.md"
    ours = False
    if json_path.is_file():
        try:
            ours = json.loads(json_path.read_text(encoding="utf-8")).get("written_by") == WRITTEN_BY
        except (ValueError, UnicodeDecodeError, AttributeError):
            ours = False
    for path in (json_path, md_path):
        if path.exists() and not ours:
            raise UserError(f"{path}: exists and was not written by tailor shift; refusing to overwrite it "
                            "(--out); give another --out folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(json_path, report)
    atomic_write_text(md_path, shift_markdown(report))
    return [json_path, md_path]
