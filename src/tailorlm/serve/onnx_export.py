"""``tailor export RUN --format onnx|onnx-int8``: a classifier as an ONNX file that runs without PyTorch, with a
parity check against the torch model it came from.

The model is traced by ``torch.onnx.export`` (the TorchScript exporter: ``optimum[onnxruntime]`` 2.1 pins
transformers 4.x, pip would downgrade 5.x to 4.57 to install it; the dynamo exporter needs onnxscript) with
dynamic batch and sequence axes, inputs ``input_ids`` and
``attention_mask`` (plus ``token_type_ids`` when the tokenizer makes them), output ``logits`` (before the fitted
temperature, which ``tailor_model.json`` keeps). ``onnx-int8`` quantises the weights of the exported file to int8
with ONNX Runtime's dynamic quantisation.

Parity, on the run's test texts (its ``predictions.jsonl``; a fixed set of sentences when the folder has none): the
largest absolute logit difference between ONNX Runtime and torch, label agreement, and accuracy before and after
when the gold labels are known; fp32 is refused past ``tolerance`` (1e-4), int8 when its test accuracy is more than
1 point under torch's (without gold labels: when the labels agree with torch's on fewer than 98% of the texts).
Also the speed ratio (torch seconds / ONNX Runtime seconds on the same texts, one at a time). All of it goes to
``export.json`` and is printed.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from tailorlm.errors import UserError

FORMATS = ("merged", "onnx", "onnx-int8")
#: the most a fp32 ONNX logit may differ from torch's
TOLERANCE = 1e-4
#: the least label agreement an int8 export must keep with torch
INT8_AGREEMENT = 0.98
#: parity texts when the run has no predictions.jsonl
SAMPLE_TEXTS = ["the app was lovely and quick", "the call was rude and late", "my bill is wrong again",
                "thanks for fixing the meter so fast", "nobody answered the phone for an hour", "ok",
                "the engineer arrived on time and explained everything clearly, which I appreciated a lot"]
ONNX_FILE = "model.onnx"


def parity_texts(model_dir: Path) -> tuple[list[str], list[str] | None]:
    """The run's test texts and gold labels (predictions.jsonl next to model/), else the sample sentences."""
    folder = model_dir if model_dir.name != "model" else model_dir.parent
    path = folder / "predictions.jsonl"
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows = [r for r in rows if isinstance(r.get("text"), str) and r["text"].strip()]
        if rows:
            gold = [str(r["label"]) for r in rows] if all("label" in r for r in rows) else None
            return [r["text"] for r in rows], gold
    return list(SAMPLE_TEXTS), None


class _Logits:
    """The traced function: a model's logits from its tokenizer's tensors (no dict output to export)."""

    @staticmethod
    def wrap(model: Any, names: list[str]) -> Any:
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *tensors: Any) -> Any:
                return self.model(**dict(zip(names, tensors, strict=True))).logits

        return Wrapped().eval()


def write_onnx(loaded: Any, path: Path) -> list[str]:
    """Trace ``loaded.model`` to ``path``; returns the input names."""
    import torch

    tokenizer = loaded.tokenizer
    example = tokenizer(["a padded example text for tracing", "short"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in example]
    wrapped = _Logits.wrap(loaded.model.eval(), names)
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(wrapped, tuple(example[n] for n in names), str(path), input_names=names,
                          output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False)
    loaded.model.eval()  # the exporter restores the training flag it found on the wrapper
    return names


def _logits(run: Any, tokenizer: Any, texts: list[str], max_length: int, names: list[str]) -> np.ndarray:
    """Logits of each text alone (one at a time, as a server answers), from ``run(feed)``."""
    rows = []
    for text in texts:
        encoded = tokenizer([text], truncation=True, max_length=max_length, return_tensors="np")
        rows.append(run({n: encoded[n].astype(np.int64) for n in names})[0])
    return np.asarray(rows, dtype=np.float64)


def parity(loaded: Any, onnx_path: Path, names: list[str], texts: list[str], gold: list[str] | None
           ) -> dict[str, Any]:
    """ONNX Runtime against torch on ``texts``: max abs logit difference, label agreement, accuracies, speed."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model = loaded.model.eval()

    def torch_run(feed: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()

    def onnx_run(feed: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(["logits"], feed)[0]

    for warm in (torch_run, onnx_run):  # first calls allocate and pick kernels: not what is timed
        _logits(warm, loaded.tokenizer, texts[:1], loaded.max_length, names)
    started = time.perf_counter()
    reference = _logits(torch_run, loaded.tokenizer, texts, loaded.max_length, names)
    torch_s = time.perf_counter() - started
    started = time.perf_counter()
    exported = _logits(onnx_run, loaded.tokenizer, texts, loaded.max_length, names)
    onnx_s = time.perf_counter() - started
    labels = loaded.labels
    want, got = [labels[i] for i in reference.argmax(1)], [labels[i] for i in exported.argmax(1)]
    report: dict[str, Any] = {
        "texts": len(texts), "max_abs_logit_diff": float(np.abs(reference - exported).max()),
        "label_agreement": float(np.mean([a == b for a, b in zip(want, got, strict=True)])),
        "torch_s": round(torch_s, 4), "onnx_s": round(onnx_s, 4), "speed_ratio": round(torch_s / max(onnx_s, 1e-9), 2),
    }
    if gold is not None:
        report["accuracy_torch"] = float(np.mean([a == b for a, b in zip(want, gold, strict=True)]))
        report["accuracy_onnx"] = float(np.mean([a == b for a, b in zip(got, gold, strict=True)]))
    return report


def _refusal(report: dict[str, Any], int8: bool, tolerance: float) -> str | None:
    if not int8 and report["max_abs_logit_diff"] > tolerance:
        return (f"the ONNX logits differ from torch's by up to {report['max_abs_logit_diff']:.2e}, over the "
                f"tolerance {tolerance:g} (--tolerance)")
    if int8 and "accuracy_onnx" not in report and report["label_agreement"] < INT8_AGREEMENT:
        return (f"int8 labels agree with torch on {report['label_agreement']:.1%} of the texts, under "
                f"{INT8_AGREEMENT:.0%}; export --format onnx (fp32) instead")
    if int8 and "accuracy_onnx" in report and report["accuracy_torch"] - report["accuracy_onnx"] > 0.01:
        return (f"int8 accuracy {report['accuracy_onnx']:.3f} is more than 1 point under torch's "
                f"{report['accuracy_torch']:.3f}; export --format onnx (fp32) instead")
    return None


def export_onnx(model_dir: Path, out: Path, *, int8: bool = False, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Write ``out`` (model.onnx, tokenizer, config, tailor_model.json, export.json); returns the parity report.
    A failed parity check is a UserError and nothing is written."""
    from tailorlm.models.registry import TAILOR_META, write_model_meta
    from tailorlm.models.saved import load_saved_model, model_folder
    from tailorlm.rundir import replace_dir
    from tailorlm.safety import check_export_dir

    folder = model_folder(Path(model_dir))
    check_export_dir(out, folder)
    loaded = load_saved_model(model_dir)
    if loaded.task != "classification":
        raise UserError(f"{model_dir}: a {loaded.task} model; ONNX export covers classification models so far",
                        fix="use --format merged for other tasks")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = write_onnx(loaded, tmp / ONNX_FILE)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32 = tmp / "model.fp32.onnx"
        (tmp / ONNX_FILE).rename(fp32)
        quantize_dynamic(str(fp32), str(tmp / ONNX_FILE), weight_type=QuantType.QInt8)
        fp32.unlink()
    texts, gold = parity_texts(Path(model_dir))
    report = parity(loaded, tmp / ONNX_FILE, names, texts, gold)
    report |= {"format": "onnx-int8" if int8 else "onnx", "tolerance": None if int8 else tolerance,
               "inputs": names, "source": str(model_dir)}
    refused = _refusal(report, int8, tolerance)
    if refused:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"{model_dir}: {refused}; nothing was written")
    loaded.tokenizer.save_pretrained(tmp)
    loaded.model.config.save_pretrained(tmp)
    write_model_meta(tmp, dict(loaded.meta) | {"runtime": "onnx", "onnx_file": ONNX_FILE, "onnx_inputs": names,
                                               "int8": int8})
    (tmp / "export.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    replace_dir(tmp, out, TAILOR_META)
    return report


# ---------------------------------------------------------------------------------------------- serving an export


def is_onnx_export(folder: Path) -> bool:
    from tailorlm.models.registry import read_model_meta

    return folder.is_dir() and read_model_meta(folder).get("runtime") == "onnx"


def load_onnx_model(path: Path) -> Any:
    """An exported folder as a LoadedModel whose ``model`` runs ONNX Runtime (``tailor serve --backend onnx``):
    the classification task's predict code runs unchanged on it (same tokenizer, padding, temperature)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from tailorlm.evaluate.calibration import set_temperature
    from tailorlm.models.registry import read_model_meta
    from tailorlm.models.saved import LoadedModel, model_folder

    folder = model_folder(Path(path))
    if not is_onnx_export(folder):
        raise UserError(f"{path}: not an ONNX export (no runtime: onnx in tailor_model.json)",
                        fix="export it first: tailor export RUN --format onnx --out DIR, then serve DIR")
    import onnxruntime as ort

    meta = read_model_meta(folder)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the server's --threads, as for a torch model
    session = ort.InferenceSession(str(folder / meta.get("onnx_file", ONNX_FILE)), options,
                                   providers=["CPUExecutionProvider"])
    names = list(meta.get("onnx_inputs") or ["input_ids", "attention_mask"])

    class OnnxClassifier(torch.nn.Module):
        """What forward_sorted calls: tensors in, an object with ``.logits`` out (no torch weights)."""

        def __init__(self) -> None:
            super().__init__()
            self.config = AutoConfig.from_pretrained(folder)

        def forward(self, **batch: Any) -> Any:
            from types import SimpleNamespace

            feed = {n: batch[n].cpu().numpy().astype(np.int64) for n in names}
            return SimpleNamespace(logits=torch.from_numpy(session.run(["logits"], feed)[0]))

    model = OnnxClassifier().eval()
    if meta.get("temperature"):
        set_temperature(model, meta["temperature"])
    return LoadedModel(model=model, tokenizer=AutoTokenizer.from_pretrained(folder), meta=meta, path=folder)
