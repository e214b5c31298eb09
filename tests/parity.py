"""Behaviour parity across a refactor: each task's example recipe on its demo data, tiny random models, one epoch.

``metrics.json`` of such a run, with the readings that vary between runs removed (timings, paths, throughput,
free memory, the stage list), is stored in ``tests/golden/parity-<case>.json`` by the code before a structural
change; ``tests/test_parity.py`` runs the same cases on today's code and compares. Run by hand::

    python -m tests.parity capture [--src DIR] [--out DIR] [CASE ...]   # write goldens with the code in DIR
    python -m tests.parity compare [CASE ...]                           # today's code against the goldens

The runs go through the real CLI in a subprocess (``python -m tailorlm``), so ``--src`` can point at another
checkout's ``src/`` and the comparison does not depend on any internal name of either version.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[1]
#: readings, not results: they differ between two runs of the same code
VOLATILE_TOP = frozenset({"timings_s", "memory", "stages"})
VOLATILE_TRAIN = frozenset({"runtime_s", "samples_per_s", "tokens_per_s"})


@dataclass
class Case:
    """One parity run: a task's example recipe, its demo data, a tiny model and the ``--set`` overrides."""

    task: str
    recipe: str
    demo_out: str
    model: str  # "bert", "llama" or "t5": built by build_model below
    sets: list[str] = field(default_factory=list)
    prepare: Callable[[Path], list[str]] | None = None  # extra data files -> more --set lines


def _classification_extras(work: Path) -> list[str]:
    """A region column for reweighing and an unlabelled pool for self-training (the demo has neither)."""
    folder = work / "examples/data/utility"
    for name in ("train", "validation", "test"):
        frame = pd.read_csv(folder / f"{name}.csv")
        frame["region"] = [("north", "south", "islands")[len(text) % 3] for text in frame["text"]]
        frame.to_csv(folder / f"{name}.csv", index=False)
    _cli(["demo-data", "--out", str(work / "pool"), "--seed", "99"], work, None)
    pool = pd.read_csv(work / "pool/train.csv").head(120)[["text"]]
    pool.to_csv(work / "pool.csv", index=False)
    return [f"adapt.unlabelled={work / 'pool.csv'}"]


CASES: dict[str, Case] = {
    "classification": Case(
        "classification", "examples/utility.yaml", "examples/data/utility", "bert",
        ["data.max_rows=240", "data.max_eval_rows=240", "training.batch_size=16", "training.learning_rate=1e-3",
         "training.calibrate=true",
         "adapt.self_train=true", "adapt.threshold=0.2", "adapt.max_pseudo=40", "baseline.linear_probe=true"],
        _classification_extras,
    ),
    "classification-fair": Case(
        "classification", "examples/utility.yaml", "examples/data/utility", "bert",
        ["data.max_rows=240", "data.max_eval_rows=240", "training.batch_size=16", "training.learning_rate=1e-3",
         "training.calibrate=true",
         "fairness.group_column=region", "fairness.mitigation=reweight", "fairness.counterfactual=gender"],
        _classification_extras,
    ),
    "token-classification": Case(
        "token-classification", "examples/token-classification.yaml", "examples/data/utility-ner", "bert",
        ["data.max_rows=120", "data.max_eval_rows=120", "training.batch_size=16"],
    ),
    "qa": Case("qa", "examples/qa.yaml", "examples/data/utility-qa", "bert",
               ["data.max_rows=80", "data.max_eval_rows=80", "training.max_length=128", "qa.doc_stride=32"]),
    "generation": Case(
        "generation", "examples/generation.yaml", "examples/data/generation", "llama",
        ["data.max_rows=60", "data.max_eval_rows=60", "generation.max_new_tokens=8", "generation.samples=2"],
    ),
    "translation": Case(
        "translation", "examples/translation.yaml", "examples/data/scots_mt", "t5",
        ["data.max_rows=80", "data.max_eval_rows=80", "generation.num_beams=1", "generation.max_new_tokens=8",
         "generation.max_eval_rows=20",
         "generation.samples=2"],
    ),
}


def _env(src: Path | None, work: Path) -> dict[str, str]:
    """Offline, one thread, no GPU, a tokenised-splits cache of this case's own (never an earlier run's)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="", TAILORLM_TOKENIZED_CACHE=str(work / "token-cache"))
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def _cli(args: list[str], cwd: Path, src: Path | None) -> str:
    done = subprocess.run([sys.executable, "-m", "tailorlm", *args], cwd=cwd, env=_env(src, cwd), capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"tailor {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def build_model(kind: str, work: Path, demo: Path) -> Path:
    """A tiny random model of the kind a case needs, saved as a model folder (deterministic: seed 0)."""
    import torch

    folder = work / f"tiny-{kind}"
    if folder.exists():
        return folder
    torch.manual_seed(0)
    if kind == "bert":
        from transformers import AutoTokenizer, BertConfig, BertModel

        from tailorlm.models.registry import resolve_model

        tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm").source)
        tokenizer.model_max_length = 128
        model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128))
    elif kind == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        tokenizer = _bpe_tokenizer(demo)
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id))
    else:
        from transformers import T5Config, T5ForConditionalGeneration

        tokenizer = _word_tokenizer(demo)
        model = T5ForConditionalGeneration(T5Config(
            vocab_size=len(tokenizer), d_model=64, d_ff=128, num_layers=2, num_heads=4, d_kv=16, pad_token_id=0,
            eos_token_id=1, decoder_start_token_id=0, dropout_rate=0.0))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def _bpe_tokenizer(demo: Path) -> Any:
    """Byte-level BPE over the demo's text, with ChatML tokens and a chat template (as SmolLM2 has)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [line for f in sorted(demo.glob("*.jsonl")) for line in f.read_text().splitlines()]
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<|im_start|>",
                                        eos_token="<|im_end|>", pad_token="<pad>", model_max_length=256)
    tokenizer.chat_template = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return tokenizer


def _word_tokenizer(demo: Path) -> Any:
    """Word-level over the demo's pairs, appending </s> as T5's tokenizer does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    frames = [pd.read_csv(f) for f in sorted(demo.glob("*.csv"))]
    words = [str(v) for frame in frames for col in ("source", "target") for v in frame[col]]
    words.append("translate Scots to English:")
    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    core.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=128)


def run_case(name: str, work: Path, src: Path | None = None) -> dict[str, Any]:
    """Run one case in ``work`` with the code in ``src`` (None: the installed tailorlm); its normalised metrics."""
    case = CASES[name]
    work.mkdir(parents=True, exist_ok=True)
    demo = work / case.demo_out
    _cli(["demo-data", "--task", case.task, "--out", str(demo)], work, src)
    sets = [*case.sets, *(case.prepare(work) if case.prepare else [])]
    model = build_model(case.model, work, demo)
    recipe = REPO / case.recipe
    out = work / "run"
    args = ["run", str(recipe), "--set", f"output_dir={out}", "--set", f"model.name={model}",
            "--set", "training.epochs=1"]
    for line in sets:
        args += ["--set", line]
    _cli(args, work, src)
    return normalise(json.loads((out / "metrics.json").read_text()), work)


def normalise(metrics: dict[str, Any], work: Path) -> dict[str, Any]:
    """Drop what varies between two runs of the same code: timings, throughput, memory readings, paths."""
    kept = {k: v for k, v in metrics.items() if k not in VOLATILE_TOP}
    if "train" in kept:
        kept["train"] = {k: v for k, v in kept["train"].items() if k not in VOLATILE_TRAIN}
    if "data" in kept:
        kept["data"] = {k: v for k, v in kept["data"].items() if k != "tokenize_cache"}
    text = json.dumps(kept, sort_keys=True).replace(str(work), "<work>")
    return json.loads(text)


def differences(expected: Any, actual: Any, path: str = "", rel: float = 1e-4, abs_: float = 1e-6) -> list[str]:
    """Where two normalised metrics differ: keys missing either side, values unequal (floats within tolerance)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = [f"{path}.{k}: missing now" for k in expected.keys() - actual.keys()]
        out += [f"{path}.{k}: new now" for k in actual.keys() - expected.keys()]
        for key in expected.keys() & actual.keys():
            out += differences(expected[key], actual[key], f"{path}.{key}", rel, abs_)
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} items before, {len(actual)} now"]
        return [d for i, (e, a) in enumerate(zip(expected, actual, strict=True))
                for d in differences(e, a, f"{path}[{i}]", rel, abs_)]
    both_numbers = isinstance(expected, int | float) and isinstance(actual, int | float)
    if both_numbers and not isinstance(expected, bool) and not isinstance(actual, bool):
        if math.isclose(expected, actual, rel_tol=rel, abs_tol=abs_) or (expected != expected and actual != actual):
            return []
        return [f"{path}: {expected} before, {actual} now"]
    return [] if expected == actual else [f"{path}: {expected!r} before, {actual!r} now"]


def main(argv: list[str]) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m tests.parity")
    parser.add_argument("mode", choices=["capture", "compare"])
    parser.add_argument("cases", nargs="*", default=list(CASES))
    parser.add_argument("--src", type=Path, default=None, help="the src/ folder whose code runs (default: installed)")
    parser.add_argument("--out", type=Path, default=GOLDEN)
    args = parser.parse_intermixed_args(argv)
    failed = 0
    for name in args.cases:
        with tempfile.TemporaryDirectory(prefix=f"parity-{name}-") as tmp:
            metrics = run_case(name, Path(tmp), args.src)
        golden = args.out / f"parity-{name}.json"
        if args.mode == "capture":
            args.out.mkdir(parents=True, exist_ok=True)
            golden.write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
            print(f"{name}: wrote {golden}")
            continue
        diffs = differences(json.loads(golden.read_text()), metrics)
        failed += bool(diffs)
        print(f"{name}: {'same' if not diffs else f'{len(diffs)} differences'}")
        for line in diffs[:40]:
            print("   ", line)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
