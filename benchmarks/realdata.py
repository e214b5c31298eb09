"""Real development sets for measuring defaults, cut from ``../shared/data`` (see ``../shared/README.md``).

Each *scenario* is a task at one size: ``small`` is what a localized team typically has (about 300 labelled rows;
400 questions from 3 articles; 600 sentences), ``full`` is the whole shared file. Test splits never share a
source with training (QA: other articles; NER: the CoNLL validation file; sentiment: held-out rows), and every
subsample uses ``random.Random(0)``, like the shared files themselves.

    python -m benchmarks.realdata --out /tmp/realdata     # writes the files and prints the scenarios

The test suite never needs this (a fresh clone has no ``../shared``); benchmarks say so plainly when it is absent.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
#: SQuAD articles: training articles (small uses the first three), and the two held-out test articles.
QA_SMALL_TRAIN = ["Antibiotics", "Montana", "Genocide"]
QA_FULL_TRAIN = ["Beyoncé", "Frédéric_Chopin", "IPod", *QA_SMALL_TRAIN]
QA_TEST = ["Spectre_(2015_film)", "The_Legend_of_Zelda:_Twilight_Princess"]


@dataclass
class Scenario:
    """A recipe that names only data files and columns (plus what makes the CPU measurement affordable)."""

    name: str
    task: str
    data: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def recipe(self, output_dir: Path) -> dict[str, Any]:
        return {"task": self.task, "output_dir": str(output_dir), "data": self.data} | self.extra


def require_shared() -> Path:
    if not SHARED.is_dir():
        sys.exit(f"benchmarks need the real data in {SHARED} (../shared/data beside the project); it is absent")
    return SHARED


def _write_csv(path: Path, rows: list[dict[str, str]], columns: list[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def sentiment(out: Path, source: str = "amazon_books") -> list[Scenario]:
    """Balanced review sentiment: 500 test rows held out; train of 300 (small) or the other 1,500 (full)."""
    rows = _read_csv(require_shared() / f"{source}.csv")
    random.Random(0).shuffle(rows)
    test, rest = rows[:500], rows[500:]
    files = {"test": _write_csv(out / f"{source}_test.csv", test, ["text", "label"])}
    scenarios = []
    for size, n in (("small", 300), ("full", len(rest))):
        train = _write_csv(out / f"{source}_train_{size}.csv", rest[:n], ["text", "label"])
        scenarios.append(Scenario(f"classification-{size}", "classification",
                                  {"train": str(train), "test": str(files["test"])}))
    return scenarios


def _squad_subset(squad: dict[str, Any], titles: list[str]) -> dict[str, Any]:
    missing = set(titles) - {a["title"] for a in squad["data"]}
    if missing:
        sys.exit(f"squad_train_sample.json has no article titled {sorted(missing)}")
    return {"version": squad.get("version", "1.1"), "data": [a for a in squad["data"] if a["title"] in titles]}


def qa(out: Path) -> list[Scenario]:
    """SQuAD v1.1 articles: train on 3 (small, ~456 questions) or 6 articles, test on 2 others (488 questions)."""
    squad = json.loads((require_shared() / "squad_train_sample.json").read_text(encoding="utf-8"))
    test = out / "squad_test.json"
    test.write_text(json.dumps(_squad_subset(squad, QA_TEST)), encoding="utf-8")
    scenarios = []
    for size, titles in (("small", QA_SMALL_TRAIN), ("full", QA_FULL_TRAIN)):
        train = out / f"squad_train_{size}.json"
        train.write_text(json.dumps(_squad_subset(squad, titles)), encoding="utf-8")
        scenarios.append(Scenario(f"qa-{size}", "qa", {"train": str(train), "test": str(test), "format": "squad"}))
    return scenarios


def _conll_sentences(path: Path) -> list[str]:
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    return [b.strip() for b in blocks if b.strip() and not b.strip().startswith("-DOCSTART-")]


def ner(out: Path) -> list[Scenario]:
    """CoNLL-2003: the first 600 (small) or all 2,000 training sentences; test = the 500 validation sentences."""
    shared = require_shared()
    train_sentences = _conll_sentences(shared / "conll2003_train_2000.txt")
    test = out / "conll_test.txt"
    test.write_text("\n\n".join(_conll_sentences(shared / "conll2003_valid_500.txt")) + "\n", encoding="utf-8")
    scenarios = []
    for size, n in (("small", 600), ("full", len(train_sentences))):
        train = out / f"conll_train_{size}.txt"
        train.write_text("\n\n".join(train_sentences[:n]) + "\n", encoding="utf-8")
        scenarios.append(Scenario(f"ner-{size}", "token-classification",
                                  {"train": str(train), "test": str(test), "format": "conll"}))
    return scenarios


def translation(out: Path) -> list[Scenario]:
    """IWSLT en->de: 300 (small) or 3,000 training pairs; the 500 test pairs come from other talks."""
    shared = require_shared()
    rows = _read_csv(shared / "translation_en_de_train.csv")
    test = shared / "translation_en_de_test.csv"
    scenarios = []
    for size, n in (("small", 300), ("full", len(rows))):
        train = _write_csv(out / f"translation_train_{size}.csv", rows[:n], ["source", "target"])
        scenarios.append(Scenario(f"translation-{size}", "translation",
                                  {"train": str(train), "test": str(test), "source_lang": "en",
                                   "target_lang": "de"}))
    return scenarios


def generation(out: Path) -> list[Scenario]:
    """Federalist Papers plain text: 300 (small) or 812 records; held-out perplexity on 89 records of 6 other papers."""
    shared = require_shared()
    lines = (shared / "domain_text_train.jsonl").read_text(encoding="utf-8").splitlines()
    scenarios = []
    for size, n in (("small", 300), ("full", len(lines))):
        train = out / f"domain_text_train_{size}.jsonl"
        train.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
        scenarios.append(Scenario(f"generation-{size}", "generation",
                                  {"train": str(train), "test": str(shared / "domain_text_validation.jsonl")},
                                  {"model": {"name": "smollm2", "peft": {"method": "lora"}}}))
    return scenarios


BUILDERS = {"classification": sentiment, "qa": qa, "token-classification": ner, "translation": translation,
            "generation": generation}


def build(out: Path, tasks: list[str] | None = None) -> dict[str, Scenario]:
    out.mkdir(parents=True, exist_ok=True)
    scenarios: dict[str, Scenario] = {}
    for task, builder in BUILDERS.items():
        if tasks is None or task in tasks:
            scenarios.update({s.name: s for s in builder(out)})
    return scenarios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/tailorlm-realdata"))
    args = parser.parse_args()
    for name, scenario in build(args.out).items():
        print(name, json.dumps(scenario.data))


if __name__ == "__main__":
    main()
