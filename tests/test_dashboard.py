"""`tailor runs` (the index of a folder of runs) and `tailor dashboard`, the latter driven in a real headless
Chromium (Playwright pointed at Debian's chromium; never a downloaded browser)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tailorlm.rundir import RunDir
from tests.helpers import assert_skips_here_and_fails_under_ci, missing_component, run_cli

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


# ------------------------------------------------------------------------------------------ a folder of runs


def _finished(path: Path, metrics: dict[str, Any], wall: float) -> None:
    run = RunDir.create(path)
    run.write_json("run_info.json", {"command": "tailor run"})
    run.write_json("metrics.json", metrics | {"timings_s": {"total": wall}})
    run.set_status("finished")


def _classification(tuned: float, baselines: dict[str, float], model: str, verdict: bool = True) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "task": "classification", "labels": ["negative", "positive"], "model": {"name": model},
        "baseline": {name: {"f1_macro": value, "accuracy": value, "floor": name == "random_head"}
                     for name, value in baselines.items()},
        "tuned": {"n": 40, "f1_macro": tuned, "accuracy": tuned},
    }
    references = {k: v for k, v in baselines.items() if k != "random_head"}
    if verdict:
        best = max(references, key=references.__getitem__)
        metrics["verdict"] = {"beats_best_reference": tuned > references[best], "sentence": "Verdict: ...",
                              "metric": "f1_macro", "tuned": tuned, "best_reference": best,
                              "best_reference_value": references[best], "gain": tuned - references[best]}
    return metrics


def make_runs(root: Path, live_pid: int, dead_pid: int) -> None:
    """3 finished runs, one failed, one tune study (with a trial), one running job, one killed and one stopped
    job, a comparison, and decoys the index must not list (a model folder, a hidden folder)."""
    _finished(root / "alpha", _classification(0.91, {"zero_shot": 0.50, "linear_probe": 0.80}, "minilm"), 95.0)
    # no verdict: the gain is computed, and the floor (random head, 0.95) is never the bar
    _finished(root / "beta", _classification(0.70, {"linear_probe": 0.75, "random_head": 0.95}, "tiny",
                                             verdict=False), 3725.0)
    _finished(root / "group" / "gamma", {"task": "regression", "model": {"name": "minilm"},
                                         "baseline": {"mean": {"rmse": 2.0, "floor": False}},
                                         "tuned": {"n": 30, "rmse": 1.5}}, 12.0)
    failed = RunDir.create(root / "broken")
    failed.write_text("recipe.resolved.yaml", "task: classification\nmodel:\n  name: minilm\n")
    failed.set_status("failed", reason="DataError: data/missing.csv: data file not found")
    study = RunDir.create(root / "study")
    study.write_json("tune.json", {"method": "bayes", "trials_target": 4, "metric": "f1_macro",
                                   "direction": "maximize", "counts": {"complete": 3, "pruned": 1},
                                   "best": {"number": 2, "value": 0.8125, "params": {}}})
    study.write_text("recipe.resolved.yaml", "task: classification\nmodel:\n  name: minilm\n")
    study.write_text("trials.csv", "number,state,value,duration_s,training.learning_rate,dir,weights,note\n"
                     "0,complete,0.75,4.1,1e-4,x,,\n1,pruned,0.5,1.2,1e-2,y,,\n2,complete,0.8125,4.0,3e-4,z,kept,\n")
    study.set_status("finished")
    _finished(root / "study" / "trials" / "trial-0002", _classification(0.8, {"linear_probe": 0.7}, "minilm"), 5.0)
    live = RunDir.create(root / "live")
    live.write_text("recipe.resolved.yaml", "task: classification\nmodel:\n  name: minilm\ntraining:\n  epochs: 4\n")
    live.write_json("log_history.json", [{"loss": 0.69, "epoch": 0.5, "step": 5}, {"loss": 0.61, "epoch": 1.5,
                                                                                   "step": 15}])
    live.set_status("running", pid=live_pid)
    RunDir.create(root / "killed").set_status("running", pid=dead_pid)
    RunDir.create(root / "stopped").set_status("interrupted", reason="KeyboardInterrupt: signal SIGTERM",
                                               resumable=True, hint="run the same recipe with --resume")
    (root / "cmp").mkdir()
    (root / "cmp" / "compare.md").write_text("# tailorlm: comparison of runs\n\n| | alpha | beta |\n|---|---:|---:|\n"
                                             "\n## Is the difference real?\n\n- beta vs alpha: -0.21 (significant "
                                             "at 5%)\n")
    (root / "cmp" / "compare.csv").write_text("run,path\nalpha,x\nbeta,y\n")
    RunDir.create(root / "alpha" / "model").set_status("finished")  # never a run of its own
    RunDir.create(root / ".dashboard" / "x").set_status("finished")


@pytest.fixture()
def sleeper() -> Iterator[subprocess.Popen]:
    """A live process standing in for a running `tailor run` (its pid goes into status.json)."""
    process = subprocess.Popen(["sleep", "120"])
    yield process
    process.kill()
    process.wait()


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_runs_lists_every_run_with_its_status_and_metrics(tmp_path: Path, sleeper: subprocess.Popen) -> None:
    make_runs(tmp_path, sleeper.pid, dead_pid())
    code, stdout, stderr = run_cli(["runs", str(tmp_path), "--json"])
    assert code == 0, stderr
    rows = {row["path"]: row for row in json.loads(stdout)}
    assert set(rows) == {"alpha", "beta", "group/gamma", "broken", "study", "study/trials/trial-0002", "live",
                         "killed", "stopped", "cmp"}
    status = {path: row["status"] for path, row in rows.items()}
    assert status == {"alpha": "finished", "beta": "finished", "group/gamma": "finished", "broken": "failed",
                      "study": "finished", "study/trials/trial-0002": "finished", "live": "running",
                      "killed": "interrupted", "stopped": "interrupted", "cmp": "finished"}
    alpha, beta, gamma = rows["alpha"], rows["beta"], rows["group/gamma"]
    assert (alpha["metric"], alpha["value"], alpha["baseline"]) == ("f1_macro", 0.91, "linear_probe")
    assert alpha["gain"] == pytest.approx(0.11) and alpha["wall_s"] == 95.0 and alpha["model"] == "minilm"
    assert (beta["baseline"], beta["baseline_value"]) == ("linear_probe", 0.75)  # the floor's 0.95 is no bar
    assert beta["gain"] == pytest.approx(-0.05)
    assert (gamma["task"], gamma["metric"], gamma["baseline"]) == ("regression", "rmse", "mean")
    assert gamma["gain"] == pytest.approx(-0.5)  # lower is better: rmse 1.5 against the mean's 2.0
    broken = rows["broken"]
    assert "data/missing.csv: data file not found" in broken["detail"]
    assert (broken["task"], broken["model"], broken["value"]) == ("classification", "minilm", None)
    study = rows["study"]
    assert (study["kind"], study["metric"], study["value"]) == ("tune", "validation f1_macro", 0.8125)
    assert "3 complete, 1 pruned of 4" in study["detail"]
    live = rows["live"]
    assert live["pid"] == sleeper.pid and "epoch 1.50 of 4" in live["detail"] and "loss 0.6100" in live["detail"]
    assert "is gone" in rows["killed"]["detail"] and "--resume" in rows["killed"]["detail"]
    assert rows["stopped"]["resumable"] is True and "--resume" in rows["stopped"]["detail"]
    assert rows["cmp"]["kind"] == "comparison" and "2 runs; beta vs alpha" in rows["cmp"]["detail"]

    sleeper.kill()
    sleeper.wait()  # the same job once its process is gone: interrupted, not running
    code, stdout, _ = run_cli(["runs", str(tmp_path), "--json", "--sort", "gain"])
    rows_after = json.loads(stdout)
    assert {r["path"]: r["status"] for r in rows_after}["live"] == "interrupted"
    # by improvement: the rmse that fell by 0.5 first, the F1 that fell last
    assert [r["path"] for r in rows_after][:4] == ["group/gamma", "alpha", "study/trials/trial-0002", "beta"]


def test_runs_table_and_bad_folder(tmp_path: Path) -> None:
    make_runs(tmp_path, dead_pid(), dead_pid())
    code, stdout, _ = run_cli(["runs", str(tmp_path)])
    assert code == 0
    alpha = next(line for line in stdout.splitlines() if line.startswith("alpha "))
    assert alpha.split() == ["alpha", "finished", "minilm", "f1_macro", "0.910", "+0.110", *alpha.split()[6:8],
                             "1m35s"]
    assert "study (tune)" in stdout and "1h02m" in stdout
    assert "broken: failed: DataError: data/missing.csv: data file not found" in stdout.splitlines()
    code, _, stderr = run_cli(["runs", str(tmp_path / "nope")])
    assert code == 2 and "nope: not a folder" in stderr and len(stderr.strip().splitlines()) == 1
    code, stdout, stderr = run_cli(["dashboard", str(tmp_path / "nope")])
    assert code == 2 and "nope: not a folder" in stderr and not stdout
    code, _, stderr = run_cli(["runs", str(tmp_path), "--sort", "speed"])
    assert code == 2 and "--sort speed: choose one of date, path" in stderr


def test_runs_imports_neither_torch_nor_transformers(tmp_path: Path) -> None:
    make_runs(tmp_path, dead_pid(), dead_pid())
    code = ("import sys\nfrom tailorlm.cli import app\n"
            f"app(['runs', {str(tmp_path)!r}, '--json'], standalone_mode=False)\n"
            "heavy = [m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    env = os.environ | {"PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert '"path": "alpha"' in done.stdout


# ------------------------------------------------------------------------------------------ the dashboard's API


def test_dashboard_refuses_paths_outside_its_folder_and_posts_without_its_header(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tailorlm.dashboard.app import create_app

    make_runs(tmp_path / "runs", dead_pid(), dead_pid())
    (tmp_path / "secret.json").write_text("{}")
    client = TestClient(create_app(tmp_path / "runs"), base_url="http://127.0.0.1")
    assert client.get("/api/runs").status_code == 200
    assert client.get("/files/../secret.json").status_code in (400, 404)
    reply = client.get("/run", params={"path": "../"})
    assert reply.status_code == 400 and "not inside" in reply.text
    reply = client.post("/api/validate", json={"yaml": "task: classification\n"})
    assert reply.status_code == 400 and "X-Tailor-Dashboard" in reply.json()["error"]
    assert TestClient(create_app(tmp_path / "runs"), base_url="http://evil.example").get("/").status_code == 400
    headers = {"X-Tailor-Dashboard": "1"}
    typo = {"yaml": f"task: classification\noutput_dir: {tmp_path / 'new'}\ntraining:\n  lr: 0.1\n", "name": "t.yaml"}
    reply = client.post("/api/jobs", json=typo, headers=headers)
    assert reply.status_code == 400
    assert reply.json()["error"] == "t.yaml: unknown recipe key 'training.lr'; did you mean 'training.learning_rate'?"
    assert client.get("/api/jobs").json() == [] and not (tmp_path / "new").exists()
    reply = client.post("/api/validate", json={"yaml": "task: classification\n", "sets": "--set training.epochs=x"},
                        headers=headers)
    assert reply.status_code == 400 and "training.epochs" in reply.json()["error"]
    assert client.post("/api/jobs/nope/stop", headers=headers).status_code == 400
    study = client.get("/run", params={"path": "study"}).text  # a tune study's page lists its trials
    assert "<th>training.learning_rate</th>" in study and "<td>pruned</td>" in study and "<td>0.8125</td>" in study


# ------------------------------------------------------------------------------------------ real browser


def _artifacts() -> Path:
    folder = Path(os.environ.get("TAILOR_TEST_ARTIFACTS") or REPO / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def require_playwright() -> str:
    """Debian's chromium and Playwright for Python, or a skip on a developer machine without them; under CI
    (``CI=true``) their absence fails, so the browser test cannot quietly stop running there."""
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None)
    try:
        import playwright.sync_api  # noqa: F401

        missing = None if browser else "no chromium on PATH (Debian's chromium package)"
    except ImportError:
        missing = "Playwright for Python is not installed (pip install -e '.[dev]')"
    if missing is None:
        return str(browser)
    missing_component(f"{missing}: the dashboard's browser test needs it")


def test_missing_playwright_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert_skips_here_and_fails_under_ci(require_playwright, monkeypatch)


@contextlib.contextmanager
def served(root: Path) -> Iterator[tuple[str, Any]]:
    """The dashboard of ``root`` on a free loopback port, in a thread of this process."""
    import uvicorn

    from tailorlm.dashboard.app import create_app

    app = create_app(root)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        app.state.jobs.stop_all()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _tiny_recipe(work: Path, model: Path, data: Path, out: Path, **training: Any) -> dict[str, Any]:
    return {"task": "classification", "output_dir": str(out), "model": {"name": str(model)},
            "data": {"train": str(data), "split": {"validation": 0.15, "test": 0.3}},
            "training": {"epochs": 1, "batch_size": 8, "learning_rate": 2e-3, "max_length": 16,
                         "early_stopping_patience": None, "seed": 3} | training,
            "baseline": {"zero_shot": False, "linear_probe": False}}


@pytest.fixture()
def dashboard_folder(tmp_path: Path, tiny_model_dir: Path) -> dict[str, Path]:
    """The synthetic rows of make_runs and a data file; the real run is the one the test starts from the page."""
    from tests.conftest import sentiment_rows

    (tmp_path / "data").mkdir()
    data = tmp_path / "data" / "reviews.csv"
    pd.DataFrame(sentiment_rows(120)).to_csv(data, index=False)
    make_runs(tmp_path / "runs", dead_pid(), dead_pid())
    return {"work": tmp_path, "runs": tmp_path / "runs", "data": data, "model": tiny_model_dir}


def _complete_checkpoints(folder: Path) -> list[Path]:
    from tailorlm.train.resume import is_complete

    return [p for p in folder.glob("checkpoint-*") if is_complete(p)] if folder.is_dir() else []


def test_dashboard_in_a_real_browser(dashboard_folder: dict[str, Path]) -> None:
    browser_path = require_playwright()
    from playwright.sync_api import expect, sync_playwright

    shots = _artifacts()
    with served(dashboard_folder["runs"]) as (url, app), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        page.set_default_timeout(20_000)
        try:  # the job started, stopped and resumed from the launcher is the real run the other pages show
            _unknown_key_starts_nothing(page, url, dashboard_folder, shots, expect, app)
            _start_stop_resume(page, url, dashboard_folder, shots, expect)
            _index_and_run_page(page, url, shots, expect)
            _review_two_labels(page, url, dashboard_folder, shots, expect)
        finally:
            page.screenshot(path=str(shots / "dashboard-last.png"), full_page=True)
            browser.close()


def _index_and_run_page(page: Any, url: str, shots: Path, expect: Any) -> None:
    page.goto(url + "/")
    rows = page.locator("#runs tbody tr")
    expect(rows).to_have_count(11)  # make_runs' ten and the job
    expect(page.locator("#runs tbody tr[data-status=failed]")).to_have_count(1)
    expect(page.locator("#runs tbody tr", has_text="broken")).to_contain_text("data/missing.csv")
    page.screenshot(path=str(shots / "dashboard-index.png"), full_page=True)
    page.fill("#filter", "regression")
    expect(page.locator("#runs tbody tr:visible")).to_have_count(1)
    page.fill("#filter", "")
    page.select_option("#status-filter", "interrupted")
    expect(page.locator("#runs tbody tr:visible")).to_have_count(3)  # killed, stopped, and live (its pid is dead)
    page.select_option("#status-filter", "")
    page.check("input.pick[value=alpha]")
    page.check("input.pick[value=job]")
    page.click("#compare")
    expect(page.locator("#comparison thead")).to_contain_text("alpha")
    expect(page.locator("#comparison")).to_contain_text("test f1_macro")
    expect(page.locator("#comparison tbody tr", has_text="test f1_macro").first).to_contain_text("0.9100")
    expect(page.locator("#verdicts")).to_contain_text("cannot be tested: alpha has no predictions.jsonl")
    page.screenshot(path=str(shots / "dashboard-compare.png"), full_page=True)
    page.go_back()
    page.click("#runs a:text-is('job')")
    expect(page.locator("#run-title")).to_have_text("job")
    expect(page.locator("#status")).to_have_text("finished")
    expect(page.locator("#metrics")).to_contain_text("fine-tuned")
    expect(page.locator("#verdict")).to_contain_text("Verdict")
    page.screenshot(path=str(shots / "dashboard-run.png"), full_page=True)
    with page.expect_navigation():
        page.click("#report-link")
    assert page.url.endswith("/files/job/report.html")
    expect(page.locator("body")).to_contain_text("Verdict")
    page.go_back()


def _review_two_labels(page: Any, url: str, folder: dict[str, Path], shots: Path, expect: Any) -> None:
    page.click("#review-link")
    rows = page.locator("#review tbody tr")
    assert rows.count() >= 2
    chosen = {}
    for i in (0, 1):
        row = rows.nth(i)
        gold = row.locator("td").nth(2).inner_text()
        new = "negative" if gold == "positive" else "positive"
        row.locator("select").select_option(new)
        row.locator("input.note").fill(f"checked by test {i}")
        chosen[row.locator("td.text").inner_text()] = new
    expect(page.locator("#test-warning")).to_contain_text("test split")
    page.click("#save")
    expect(page.locator("#review-result")).to_contain_text("2 labels changed")
    page.screenshot(path=str(shots / "dashboard-review.png"), full_page=True)
    original = pd.read_csv(folder["data"])
    version = folder["data"].with_name("reviews.v2.csv")
    assert version.is_file() and folder["data"].with_name("reviews.v2.changes.csv").is_file()
    corrected = pd.read_csv(version)
    assert corrected["text"].tolist() == original["text"].tolist()
    changed = corrected.index[corrected["label"] != original["label"]].tolist()
    assert sorted(corrected.loc[changed, "text"]) == sorted(chosen)  # exactly those two rows, nothing else
    assert all(corrected.loc[i, "label"] == chosen[corrected.loc[i, "text"]] for i in changed)


def _unknown_key_starts_nothing(page: Any, url: str, folder: dict[str, Path], shots: Path, expect: Any,
                                app: Any) -> None:
    recipe = _tiny_recipe(folder["work"], folder["model"], folder["data"], folder["runs"] / "typo")
    recipe["training"]["lr"] = recipe["training"].pop("learning_rate")
    page.goto(url + "/launch")
    page.fill("#recipe", yaml.safe_dump(recipe))
    page.fill("#recipe-name", "typo.yaml")
    page.click("#start")
    expect(page.locator("#launch-result.error")).to_contain_text("did you mean 'training.learning_rate'")
    expect(page.locator("#launch-result")).to_contain_text("typo.yaml")
    page.screenshot(path=str(shots / "dashboard-unknown-key.png"), full_page=True)
    assert app.state.jobs.jobs == {} and not (folder["runs"] / "typo").exists()
    expect(page.locator("#job-count")).to_have_text("0")


def _start_stop_resume(page: Any, url: str, folder: dict[str, Path], shots: Path, expect: Any) -> None:
    out = folder["runs"] / "job"
    recipe = _tiny_recipe(folder["work"], folder["model"], folder["data"], out, epochs=3, save_steps=3)
    page.fill("#recipe", yaml.safe_dump(recipe))
    page.fill("#recipe-name", "job.yaml")
    page.fill("#sets", "training.seed=4")
    page.click("#start")
    expect(page.locator("#launch-result.ok")).to_contain_text("started job")
    deadline = time.monotonic() + 60
    while not (out / "status.json").is_file():
        assert time.monotonic() < deadline, "no status.json: " + page.locator("pre.log").first.inner_text()
        time.sleep(0.05)
    live = page.context.new_page()  # the run page of the running job, polling /api/progress
    live.goto(url + "/run?path=job")
    expect(live.locator("#status")).to_contain_text("running")
    while not _complete_checkpoints(out / "checkpoints"):
        assert time.monotonic() < deadline, "no checkpoint appeared: " + page.locator("pre.log").first.inner_text()
        assert not (out / "metrics.json").exists(), "the job finished before it could be stopped"
        time.sleep(0.05)
    page.bring_to_front()
    page.click("button.stop")
    expect(page.locator("td.job-state").first).to_have_text("stopped", timeout=30_000)
    expect(live.locator("#status")).to_contain_text("interrupted: KeyboardInterrupt")  # the open page saw it
    live.screenshot(path=str(shots / "dashboard-live-stopped.png"), full_page=True)
    live.close()
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "interrupted" and status["resumable"] is True, status
    expect(page.locator("td.run-status").first).to_contain_text("interrupted")
    page.screenshot(path=str(shots / "dashboard-stopped.png"), full_page=True)
    page.click("button.resume")
    expect(page.locator("td.job-state").first).to_have_text("finished", timeout=90_000)
    logs = list((folder["runs"] / ".dashboard" / "jobs").glob("*/resume.log"))
    assert len(logs) == 1 and "resume: resuming from checkpoint-" in logs[0].read_text(), logs
    final = json.loads((out / "status.json").read_text())
    assert final["status"] == "finished" and final["resumed_from"], final
