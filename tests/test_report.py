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
from tailorlm.report import load_run, render_report
from tailorlm.report.markdown import md_escape

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


def test_best_value_per_column_is_highlighted_and_ece_prefers_lower(rendered: tuple[Path, str, str]) -> None:
    metrics = _metrics(FIXTURE)
    comparison = _section_html(rendered[1], "comparison")
    best_cells = re.findall(r'<td class="num best">([^<]+)</td>', comparison)
    tuned = metrics["tuned"]
    assert f"{tuned['f1_macro']:.3f}" in best_cells
    lowest_ece = min(s["ece"] for s in (tuned, *metrics["baseline"].values()))
    assert f"{lowest_ece:.3f}" in best_cells
    assert len(best_cells) == 6


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


def _headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


def test_report_renders_in_a_real_browser(run_dir: Path, tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium on PATH: install Debian's chromium to run the rendered-report test")
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
