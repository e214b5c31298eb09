"""Predictions from a saved model: the label and every class's probability, for texts or a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tailorlm.errors import UserError
from tailorlm.models.saved import LoadedModel, load_saved_model


def predict_texts(loaded: LoadedModel, texts: list[str], batch_size: int = 64) -> list[dict[str, Any]]:
    from tailorlm.tasks.classification import ClassificationTask

    labels = loaded.labels
    probs = ClassificationTask().predict_proba(loaded.model, loaded.tokenizer, texts, loaded.max_length, batch_size)
    rows = []
    for text, p in zip(texts, probs, strict=True):
        best = int(p.argmax())
        rows.append(
            {
                "text": text,
                "label": labels[best],
                "confidence": round(float(p[best]), 6),
                "probabilities": {label: round(float(v), 6) for label, v in zip(labels, p, strict=True)},
            }
        )
    return rows


def predict_rows(
    model_dir: Path, texts: list[str] | None = None, input_file: Path | None = None, text_column: str = "text"
) -> list[dict[str, Any]]:
    """Predict for ``--text`` values and/or the rows of ``--input``; file rows keep their row number."""
    from tailorlm.data import load_labelled_file
    from tailorlm.recipe import DataConfig

    loaded = load_saved_model(model_dir)
    results: list[dict[str, Any]] = []
    if texts:
        cleaned = [t for t in texts if t.strip()]
        if len(cleaned) < len(texts):
            raise UserError("--text: an empty text cannot be classified; pass some words")
        results.extend(predict_texts(loaded, cleaned))
    if input_file is not None:
        cfg = DataConfig(train=str(input_file), text_column=text_column)
        frame, rejects = load_labelled_file(input_file, cfg, split="predict", require_label=False)
        if len(frame) == 0:
            raise UserError(f"{input_file}: no usable texts ({len(rejects)} rows rejected: empty or malformed)")
        rows = predict_texts(loaded, list(frame["text"]))
        for row, line in zip(rows, frame["row"], strict=True):
            row["row"] = int(line)
        results.extend(rows)
        for reject in rejects:
            results.append({"row": reject.get("row"), "error": reject.get("reason"), "detail": reject.get("detail")})
    return results
