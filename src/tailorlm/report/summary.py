"""The summary section's facts: the run at a glance (model, data, training effort), the uncertainty lines and
the confidence calibration."""

from __future__ import annotations

from typing import Any

from tailorlm.report.format import count, duration, finite, fmt, model_label, percent
from tailorlm.report.model import RunReport
from tailorlm.report.significance import significance_facts


def facts(report: RunReport) -> list[tuple[str, str]]:
    """The run at a glance: model, task, data sizes, training time and effort."""
    model, train, sizes = report.model, report.train, report.data_sizes
    peft = str(model.get("peft") or "none")
    method = "full fine-tuning (all weights)" if peft == "none" else f"{peft} adapters"
    name = model_label(str(model.get("name") or "—"), str(model.get("base") or "") or None)  # no machine paths
    data = " · ".join(f"{count(sizes.get(s))} {s}" for s in ("train", "validation", "test") if s in sizes)
    if finite(sizes.get("rejected")):
        data += f" · {count(sizes['rejected'])} rows rejected"
    trainable, total = train.get("trainable_params"), train.get("total_params")
    best_step = train.get("best_step")
    share = f" ({percent(trainable / total)})" if finite(trainable) and finite(total) and total else ""
    epochs = train.get("epochs_run")
    task = str(report.metrics.get("task", "—"))
    rows = [
        ("Task", f"{task}, {len(report.labels)} labels" if report.is_classification or report.labels else task),
        ("Model", name),
        ("Method", method),
        ("Texts", data or "—"),
        ("Training time", duration(train.get("runtime_s"))
         + (f", {round(epochs, 2):g} epochs" if finite(epochs) else "")
         + (" (stopped early)" if train.get("stopped_early") else "")),
        ("Parameters tuned", f"{count(trainable)} of {count(total)}{share}"),
        ("Kept checkpoint", f"step {count(best_step)}" if finite(best_step) else "the last one"),
    ]
    validation = report.metrics.get("validation") or {}
    if finite(validation.get(report.main_metric)):
        rows.append((f"Validation {report.main_title}", fmt(validation[report.main_metric])))
    elif not report.is_classification and finite(validation.get("loss")):
        rows.append(("Validation loss", fmt(validation["loss"], 4)))
    rows.extend(significance_facts(report.metrics))  # bootstrap CI, paired test, seeds' mean ± std
    rows.extend(calibration_facts(report.metrics))
    return rows


def calibration_facts(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The fitted softmax temperature and what it did to the test ECE (evaluate/calibration.py)."""
    calibration = metrics.get("calibration") or {}
    if calibration.get("skipped"):
        return [("Confidence calibration", str(calibration["skipped"]))]
    temperature = calibration.get("temperature")
    if not finite(temperature):
        return []
    tuned = metrics.get("tuned") or {}
    text = (f"temperature {temperature:.3g} fitted on {count(calibration.get('validation_rows'))} validation rows "
            "(labels unchanged)")
    if finite(tuned.get("ece_uncalibrated")) and finite(tuned.get("ece")):
        text += f"; test ECE {tuned['ece_uncalibrated']:.3f} before, {tuned['ece']:.3f} after"
    return [("Confidence calibration", text)]
