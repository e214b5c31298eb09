"""A real source -> target pair for `tailor adapt-study`, cut from ../shared/data (Blitzer-style sentiment sets).

    python -m benchmarks.adapt_pair --source imdb --target airline [--out examples/data/adapt-imdb-airline]

writes source.csv (the labelled source), target_unlabeled.txt (target texts, labels dropped), target_labeled.csv
(a few target labels: the ceiling), target_test.csv (what every method is scored on) and, with --validation-rows,
target_validation.csv (adapt.target_validation: every method's checkpoint chosen on the target), disjoint,
shuffled with seed 0; then `tailor adapt-study examples/adapt-study-imdb-airline.yaml` runs the study on them
(blog -> books, the measured pair: `--source blog --target amazon_books --source-rows 2000 --validation-rows 100
--out examples/data/adapt-blog-books` and examples/adapt-study.yaml; docs/adaptation.md). The files stay outside
git: ../shared's data is not redistributed with the project.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = ("amazon_books", "amazon_dvd", "airline", "imdb", "blog")


def cut(source: str, target: str, out: Path, n_source: int, n_unlabeled: int, n_labeled: int, n_test: int,
        n_validation: int = 0) -> None:
    if not SHARED.is_dir():
        sys.exit(f"{SHARED}: not found; this benchmark needs ../shared/data beside the project")
    src = pd.read_csv(SHARED / f"{source}.csv").sample(frac=1.0, random_state=0).reset_index(drop=True)
    tgt = pd.read_csv(SHARED / f"{target}.csv").sample(frac=1.0, random_state=0).reset_index(drop=True)
    needed = n_unlabeled + n_labeled + n_test
    if len(tgt) < needed + n_validation:  # validation rows come after the others: the other files stay as they were
        sys.exit(f"not enough rows: {target} has {len(tgt)} (need {needed + n_validation})")
    if len(tgt) < needed or len(src) < n_source:
        sys.exit(f"not enough rows: {target} has {len(tgt)} (need {needed}), {source} {len(src)} (need {n_source})")
    out.mkdir(parents=True, exist_ok=True)
    src.head(n_source)[["text", "label"]].to_csv(out / "source.csv", index=False)
    test = tgt.iloc[:n_test]
    labeled = tgt.iloc[n_test:n_test + n_labeled]
    unlabeled = tgt.iloc[n_test + n_labeled:needed]
    test[["text", "label"]].to_csv(out / "target_test.csv", index=False)
    labeled[["text", "label"]].to_csv(out / "target_labeled.csv", index=False)
    lines = [" ".join(str(t).split()) for t in unlabeled["text"]]
    (out / "target_unlabeled.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if n_validation:
        tgt.iloc[needed:needed + n_validation][["text", "label"]].to_csv(out / "target_validation.csv", index=False)
    print(f"{source} -> {target}: source {n_source}, target unlabeled {n_unlabeled}, labeled {n_labeled}, "
          f"test {n_test}, validation {n_validation} rows in {out}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.adapt_pair")
    parser.add_argument("--source", choices=SETS, default="imdb")
    parser.add_argument("--target", choices=SETS, default="airline")
    parser.add_argument("--out", type=Path, default=Path("examples/data/adapt-imdb-airline"))
    parser.add_argument("--source-rows", type=int, default=600)
    parser.add_argument("--unlabeled-rows", type=int, default=600)
    parser.add_argument("--labeled-rows", type=int, default=300)
    parser.add_argument("--test-rows", type=int, default=500)
    parser.add_argument("--validation-rows", type=int, default=0,
                        help="also target_validation.csv: labelled target rows for adapt.target_validation")
    args = parser.parse_args(argv)
    cut(args.source, args.target, args.out, args.source_rows, args.unlabeled_rows, args.labeled_rows, args.test_rows,
        args.validation_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
