"""The slow end-to-end test: the real shipped MiniLM, the real demo generator, the real `tailor` command.

Small (a few hundred rows, one epoch) so it fits the suite's budget; it checks that a pretrained model really
learns the localized data: the tuned model beats the zero-shot baseline of the same model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_cli


@pytest.mark.slow
def test_shipped_minilm_fine_tunes_on_the_demo_data(tmp_path: Path) -> None:
    from tailorlm.data.demo import DEMO_LABEL_DESCRIPTIONS, generate_demo_dataset

    paths = generate_demo_dataset(tmp_path / "data", seed=3, n_rows=450)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "\n".join(
            [
                "task: classification",
                f"output_dir: {tmp_path / 'run'}",
                "model: {name: minilm}",
                "data:",
                f"  train: {paths['train']}",
                f"  validation: {paths['validation']}",
                f"  test: {paths['test']}",
                "  label_descriptions:",
                *[f"    {label}: {json.dumps(text)}" for label, text in DEMO_LABEL_DESCRIPTIONS.items()],
                "training: {epochs: 2, learning_rate: 1.0e-4, batch_size: 16}",
            ]
        )
    )
    code, _, stderr = run_cli(["run", str(recipe)])
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    tuned, zero_shot = metrics["tuned"], metrics["baseline"]["zero_shot"]
    assert metrics["model"]["name"] == "minilm"
    assert metrics["train"]["total_params"] > 22_000_000
    chance = 1 / len(metrics["labels"])
    assert tuned["accuracy"] > 2 * chance, tuned["accuracy"]
    assert tuned["f1_macro"] > zero_shot["f1_macro"], (tuned["f1_macro"], zero_shot["f1_macro"])
    html = (tmp_path / "run" / "report.html").read_text()
    assert 'id="comparison"' in html and "minilm" in html.lower()
