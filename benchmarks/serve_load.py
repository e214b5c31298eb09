"""Load test of `tailor serve`: N concurrent clients x M requests of one text each; batching off vs on vs ONNX vs
ONNX int8 (both batching), in one run.

    python -m benchmarks.serve_load [--model RUN_OR_MODEL_DIR] [--clients 50] [--requests 4] [--threads 2]
                                  [--modes off,on,onnx,onnx-int8] [--out figures.json]

Each mode starts its own `tailor serve` process (the ONNX modes first export the model, whose parity report is
printed) (same model, same limits), waits for /health, then N client
threads each send M `POST /predict` requests (a short or a long text, alternating) one after another; the figures
are requests answered per second of wall time, latency p50/p95/p99, errors by status, and the server's peak RSS.
Without ``--model`` the model is the shipped all-MiniLM-L6-v2 with a fresh two-label classification head (the
demo model's architecture and cost; its predictions are meaningless, its speed is the demo model's).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SHORT = "the Glimmer stopped showing my usage"
LONG = ("I have been trying for three weeks to get someone to look at the meter in the hall, it shows numbers that "
        "make no sense, the bill doubled, and every time I call I am told that an engineer will come, but nobody "
        "ever does, so please tell me what is going on and when this will be fixed")


def minilm_classifier(folder: Path) -> Path:
    """The shipped MiniLM encoder with an untrained 2-label head, saved as a tailorlm model folder."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tailorlm.models.registry import resolve_model, write_model_meta

    source = resolve_model("minilm").source
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    write_model_meta(folder, {"task": "classification", "labels": ["negative", "positive"], "max_length": 128,
                              "base_model_name": "minilm"})
    return folder


def _start(model: Path, mode: str, threads: int | None) -> tuple[subprocess.Popen[str], int]:
    """`tailor serve` in ``mode``: off / on (batching, torch), onnx / onnx-int8 (batching, an export of model)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"TOKENIZERS_PARALLELISM": "false"}
    threaded = ["--threads", str(threads)] if threads else []
    backend = ["--backend", "onnx"] if mode.startswith("onnx") else []
    batching = "off" if mode == "off" else "on"
    process = subprocess.Popen([sys.executable, "-m", "tailorlm", "serve", str(model), "--port", "0", *backend,
                                *threaded, "--batching", batching, "--max-queue", "512", "--max-connections", "512"],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    assert process.stderr is not None
    for line in process.stderr:
        if "serving" in line:
            port = int(re.search(r"http://127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()  # type: ignore
            return process, port
    raise RuntimeError(f"tailor serve did not start: exit {process.wait()}")


def _post(port: int, text: str) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/predict", json.dumps({"text": text}), {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    except OSError:
        return 0, time.perf_counter() - started
    finally:
        conn.close()


def _text(texts: str, turn: int) -> str:
    """The request's text: always the short one, always the long one, or alternating (mixed)."""
    return {"short": SHORT, "long": LONG}.get(texts) or (LONG if turn % 2 else SHORT)


def _rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def _summary(results: list[tuple[int, float]], wall: float) -> dict[str, Any]:
    latencies = sorted(seconds for _, seconds in results)
    cut = statistics.quantiles(latencies, n=100, method="inclusive")
    errors: dict[str, int] = {}
    for status, _ in results:
        if status != 200:
            errors[str(status)] = errors.get(str(status), 0) + 1
    return {"requests": len(results), "ok": len(results) - sum(errors.values()), "errors": errors,
            "requests_per_s": round(len(results) / wall, 1), "p50_s": round(cut[49], 3), "p95_s": round(cut[94], 3),
            "p99_s": round(cut[98], 3), "wall_s": round(wall, 2)}


def load(port: int, clients: int, requests: int, texts: str = "mixed") -> dict[str, Any]:
    """Client threads, each opening a new connection per request (http.client, as a simple script does)."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(number: int) -> None:
        barrier.wait()
        for i in range(requests):
            answer = _post(port, _text(texts, number + i))
            with lock:
                results.append(answer)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return _summary(results, time.perf_counter() - started)


async def _keep_alive_client(port: int, number: int, requests: int, texts: str) -> list[tuple[int, float]]:
    """One keep-alive HTTP/1.1 connection sending ``requests`` POSTs one after another (as a pooled client does)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    try:
        for i in range(requests):
            body = json.dumps({"text": _text(texts, number + i)}).encode()
            started = time.perf_counter()
            writer.write(b"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            answers.append((status, time.perf_counter() - started))
    except (OSError, asyncio.IncompleteReadError):
        answers.append((0, 0.0))
    finally:
        writer.close()
    return answers


def load_keep_alive(port: int, clients: int, requests: int, texts: str = "mixed") -> dict[str, Any]:
    """The same load from one asyncio loop with a keep-alive connection per client: far less client CPU than 50
    threads opening a connection per request, which matters when client and server share 2 cores."""

    async def everyone() -> tuple[list[tuple[int, float]], float]:
        started = time.perf_counter()
        parts = await asyncio.gather(*(_keep_alive_client(port, n, requests, texts) for n in range(clients)))
        return [answer for part in parts for answer in part], time.perf_counter() - started

    results, wall = asyncio.run(everyone())
    return _summary(results, wall)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a run or model folder (default: MiniLM + a fresh head)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=4, help="requests per client, one after another")
    parser.add_argument("--threads", type=int, help="the server's --threads (default: torch's own)")
    parser.add_argument("--client", choices=["threads", "keep-alive"], default="threads",
                        help="threads: a thread per client, a new connection per request; keep-alive: one asyncio "
                        "loop, a kept-alive connection per client (less client CPU on a shared machine)")
    parser.add_argument("--modes", default="off,on,onnx,onnx-int8",
                        help="off (one request per pass), on (dynamic batching), onnx, onnx-int8 (batching, exports)")
    parser.add_argument("--texts", choices=["short", "long", "mixed"], default="mixed",
                        help="each request's one text: the short one, the long one, or alternating")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or minilm_classifier(Path(tmp) / "minilm-classifier")
        figures: dict[str, Any] = {"clients": args.clients, "requests_per_client": args.requests,
                                   "server_threads": args.threads or "auto", "client": args.client,
                                   "texts": args.texts, "cpus": os.cpu_count(),
                                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                   "model": str(args.model or "minilm + fresh 2-label head"), "modes": {}}
        for mode in args.modes.split(","):
            served = model
            if mode.startswith("onnx"):
                from tailorlm.serve.onnx_export import export_onnx

                served = Path(tmp) / mode
                figures[f"export {mode}"] = export_onnx(model, served, int8=mode == "onnx-int8")
                print(f"export {mode}: {json.dumps(figures[f'export {mode}'])}", flush=True)
            process, port = _start(served, mode, args.threads)
            try:
                _post(port, SHORT)  # warm-up
                loader = load_keep_alive if args.client == "keep-alive" else load
                figures["modes"][mode] = loader(port, args.clients, args.requests, args.texts) | {
                    "peak_rss_mb": round(_rss_mb(process.pid), 1)}
            finally:
                process.terminate()
                process.wait(timeout=60)
            print(f"{mode}: {json.dumps(figures['modes'][mode])}", flush=True)
    modes = figures["modes"]
    if "off" in modes:
        for mode in (m for m in modes if m != "off"):
            ratio = modes[mode]["requests_per_s"] / max(modes["off"]["requests_per_s"], 1e-9)
            figures[f"speedup {mode}"] = round(ratio, 2)
            print(f"{mode} / off: x{ratio:.2f} requests/s; p99 {mode} {modes[mode]['p99_s']} s vs p50 off "
                  f"{modes['off']['p50_s']} s")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
