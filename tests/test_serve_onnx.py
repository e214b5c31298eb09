"""`tailor export --format onnx|onnx-int8`: a classifier as ONNX, with its parity check against torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_cli
from tests.test_serve import cls_run  # noqa: F401  (module fixture reused)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_onnx_export_matches_torch_and_int8_keeps_the_labels(cls_run: Path, tmp_path: Path) -> None:  # noqa: F811
    import onnxruntime as ort

    from tailorlm.models.saved import load_saved_model
    from tailorlm.serve.predict import predict_inputs

    out = tmp_path / "onnx"
    code, stdout, stderr = run_cli(["export", str(cls_run), "--format", "onnx", "--out", str(out)])
    assert code == 0, stderr
    report = json.loads((out / "export.json").read_text())
    assert report["max_abs_logit_diff"] <= 1e-4 and report["label_agreement"] == 1.0 and report["texts"] >= 5
    assert "max |logit diff|" in stdout and report["speed_ratio"] > 0
    if "accuracy_onnx" in report:
        assert report["accuracy_onnx"] == report["accuracy_torch"]
    # the file alone (ONNX Runtime and the tokenizer, no torch model) gives tailor's probabilities
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    text = "the app was lovely and quick"
    feed = {k: v.astype(np.int64) for k, v in tokenizer([text], return_tensors="np").items()
            if k in report["inputs"]}
    logits = session.run(["logits"], feed)[0][0]
    meta = json.loads((out / "tailor_model.json").read_text())
    scaled = logits / (meta.get("temperature") or 1.0)
    probabilities = np.exp(scaled - scaled.max()) / np.exp(scaled - scaled.max()).sum()
    (want,) = predict_inputs(load_saved_model(cls_run), [{"text": text}])
    labels = json.loads((out / "config.json").read_text())["id2label"]
    for i, p in enumerate(probabilities):
        assert abs(want["probabilities"][labels[str(i)]] - p) < 1e-4

    int8 = tmp_path / "int8"
    code, _, stderr = run_cli(["export", str(cls_run), "--format", "onnx-int8", "--out", str(int8)])
    assert code == 0, stderr
    report = json.loads((int8 / "export.json").read_text())
    assert report["format"] == "onnx-int8" and report["label_agreement"] >= 0.98
    assert (int8 / "model.onnx").stat().st_size < (out / "model.onnx").stat().st_size


def test_onnx_export_refuses_past_its_tolerance_and_other_tasks(cls_run: Path, tmp_path: Path) -> None:  # noqa: F811
    code, _, stderr = run_cli(["export", str(cls_run), "--format", "onnx", "--tolerance", "0", "--out",
                               str(tmp_path / "strict")])
    if code != 0:  # bit-identical logits are possible; a difference over 0 must be refused in one line
        assert code == 2 and "--tolerance" in stderr and "nothing was written" in stderr
        assert not (tmp_path / "strict").exists()
    code, _, stderr = run_cli(["export", str(cls_run), "--format", "tflite", "--out", str(tmp_path / "x")])
    assert code == 2 and "--format tflite" in stderr and "onnx-int8" in stderr


def test_tailor_serve_backend_onnx_answers_like_torch(cls_run: Path, tmp_path: Path) -> None:  # noqa: F811
    import threading

    from tailorlm.serve.server import make_server
    from tests.test_serve import _call

    out = tmp_path / "onnx"
    code, _, stderr = run_cli(["export", str(cls_run), "--format", "onnx", "--out", str(out)])
    assert code == 0, stderr
    body = json.dumps({"inputs": [{"text": "the app was lovely and quick"}, {"text": "rude"}]}).encode()
    replies = []
    for folder, backend in ((cls_run, "torch"), (out, "onnx")):
        srv = make_server(folder, "127.0.0.1", 0, backend=backend)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            replies.append(_call(f"http://127.0.0.1:{srv.server_address[1]}/predict", body))
            if backend == "onnx":
                assert _call(f"http://127.0.0.1:{srv.server_address[1]}/info")[1]["task"] == "classification"
        finally:
            srv.shutdown()
            srv.server_close()
    (status_t, torch_reply, _), (status_o, onnx_reply, _) = replies
    assert status_t == status_o == 200
    for a, b in zip(torch_reply["predictions"], onnx_reply["predictions"], strict=True):
        assert a["label"] == b["label"]
        for label, p in a["probabilities"].items():
            assert abs(b["probabilities"][label] - p) < 1e-5
    code, _, stderr = run_cli(["serve", str(cls_run), "--backend", "onnx", "--port", "0"])
    assert code == 2 and "not an ONNX export" in stderr
