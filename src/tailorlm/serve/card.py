"""The model card: ``model/README.md``, a Hugging Face model card written from a finished run directory.

The front matter is what the Hub indexes (library, base model, tags, pipeline tag); the body tells a reader what
the model does, what it was trained on, how it compares with the baselines on the test split (the same table as
the run report, built by ``tailorlm.report``, so the two can never disagree), the main training settings, how to
call it, and what was not tested. It only reads the run directory, so ``tailor card RUN_DIR`` can write it again
for an old run; the pipeline writes it at the end of ``tailor run``, once ``metrics.json`` exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tailorlm.errors import UserError
from tailorlm.metric_names import metric_name
from tailorlm.report.format import count, duration, looks_like_path, model_label
from tailorlm.report.markdown import md_escape, table
from tailorlm.report.model import RunReport, load_run
from tailorlm.report.results import comparison_table, floor_note
from tailorlm.rundir import atomic_write_text
from tailorlm.tasks import TASK_SPECS, get_spec, get_task
from tailorlm.tasks.spec import CUT_NOTE, TaskSpec

#: Hub ids of the shipped aliases (they load from a local package, but came from these repositories)
ALIAS_HUB_IDS: dict[str, str] = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "minilm-seq2seq": "sentence-transformers/all-MiniLM-L6-v2",
    "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
#: licences of the shipped aliases' source repositories (report.license overrides)
ALIAS_LICENSES: dict[str, str] = {"minilm": "apache-2.0", "minilm-seq2seq": "apache-2.0", "smollm2": "apache-2.0"}
EXAMPLE_TEXT = "your text here"


def write_model_card(run_dir: str | Path) -> Path:
    """Render the card of ``run_dir`` into its ``model/README.md`` (atomically) and return that path."""
    run_dir = _run_dir(Path(run_dir))
    path = run_dir / "model" / "README.md"
    atomic_write_text(path, render_model_card(run_dir))
    return path


def render_model_card(run_dir: str | Path) -> str:
    """The whole card as Markdown with YAML front matter."""
    run_dir = _run_dir(Path(run_dir))
    report = load_run(run_dir)
    meta = _model_meta(run_dir / "model")
    recipe = yaml.safe_load(report.recipe_text or "") or {}
    card = _Card(run_dir, report, meta, recipe if isinstance(recipe, dict) else {})
    blocks = [card.front_matter(), card.title(), card.what_it_does(), card.data(), card.results(), card.settings(),
              card.usage(), card.limitations()]
    return "\n\n".join(b for b in blocks if b) + "\n"


def _run_dir(path: Path) -> Path:
    """The run directory, also when given its model/ folder; one line when it is not a finished single run."""
    if path.name == "model" and (path.parent / "metrics.json").exists():
        path = path.parent
    if not (path / "metrics.json").is_file():
        raise UserError(f"{path}: no metrics.json; pass the output_dir of a finished `tailor run`")
    if not (path / "model").is_dir():
        raise UserError(f"{path}: no model/ folder; pass a single run's directory (a --seeds or k-fold run keeps "
                        "each model in seed-<s>/ or folds/fold-<k>/)")
    if _model_meta(path / "model").get("task") == "multi-task":
        raise UserError(f"{path}: a multi-task model has no model card yet; its report.md holds every task's "
                        f"metrics, and `tailor predict {path} --task NAME` uses one task")
    return path


def _model_meta(folder: Path) -> dict[str, Any]:
    from tailorlm.models.registry import read_model_meta

    return read_model_meta(folder) or {}


def base_model_hub_id(meta: dict[str, Any]) -> str | None:
    """The base model as a Hub id (an alias's source repository, or the hub id the recipe named); None for a
    local folder, which the Hub cannot link to."""
    name = str(meta.get("base_model_name") or "")
    if name.lower() in ALIAS_HUB_IDS:
        return ALIAS_HUB_IDS[name.lower()]
    source = str(meta.get("base_model") or name)
    if source and not Path(source).expanduser().exists() and not source.startswith(("/", ".", "~")) \
            and source.count("/") == 1:
        return source
    return None


class _Card:
    """The card's sections, each a Markdown block built from the run's files."""

    def __init__(self, run_dir: Path, report: RunReport, meta: dict[str, Any], recipe: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.report = report
        self.meta = meta
        self.recipe = recipe
        self.task = report.task
        #: the task's facts (tasks/<name>/spec.py): pipeline tag, card texts, capabilities; None for an unknown task
        self.spec = TASK_SPECS.get(self.task)
        self.is_adapter = (run_dir / "model" / "adapter_config.json").exists()
        self.hub_id = base_model_hub_id(meta)

    # ------------------------------------------------------------------ header
    def front_matter(self) -> str:
        """The Hub's metadata: licence, base model, datasets, pipeline tag and the test metrics (model-index)."""
        front: dict[str, Any] = {"library_name": "peft" if self.is_adapter else "transformers",
                                 "license": self._license()}
        if self.hub_id:
            front["base_model"] = self.hub_id
        front["tags"] = ["tailorlm", self.task, *(["lora"] if self.is_adapter else [])]
        datasets = self._dataset_names()
        if datasets:
            front["datasets"] = datasets
        if self.spec is not None:  # the Hub's pipeline tag: what its inference widget and search filter use
            front["pipeline_tag"] = self.spec.pipeline_tag
        index = self._model_index()
        if index:
            front["model-index"] = index
        return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---"

    def _license(self) -> str:
        chosen = (self.recipe.get("report") or {}).get("license")
        name = str(self.meta.get("base_model_name") or "").lower()
        return str(chosen or ALIAS_LICENSES.get(name) or "unknown")

    def _dataset_names(self) -> list[str]:
        """The data files by name (a machine's folders are no use to a reader), train first."""
        data = self.recipe.get("data") or {}
        names = [Path(str(data[key])).name for key in ("train", "validation", "test") if data.get(key)]
        return list(dict.fromkeys(names))

    def _model_index(self) -> list[dict[str, Any]]:
        """The tuned model's test scores as the Hub's model-index (one result: this task on the test split)."""
        tuned = self.report.metrics.get("tuned")
        if not isinstance(tuned, dict) or self.spec is None:
            return []
        keys = [key for key, _ in self.report.metric_columns if isinstance(tuned.get(key), (int, float))]
        if not keys:
            return []
        data = self.recipe.get("data") or {}
        test = data.get("test") or data.get("train")
        dataset = Path(str(test)).name if test else "test split"
        held_out = "" if data.get("test") else " (held out)"
        tag = self.spec.pipeline_tag
        metrics = [{"type": key, "value": round(float(tuned[key]), 4), "name": metric_name(key)}
                   for key in keys]
        return [{"name": self._name(), "results": [{
            "task": {"type": tag, "name": tag.replace("-", " ")},
            "dataset": {"type": dataset, "name": f"{dataset}{held_out}", "split": "test"},
            "metrics": metrics}]}]

    def _name(self) -> str:
        return self.run_dir.resolve().name

    def title(self) -> str:
        return (f"# {md_escape(self._name())}: a fine-tuned {self.task} model\n\n"
                f"Fine-tuned with [tailorlm](https://pypi.org/project/tailorlm/) from "
                f"{self._base_name()}{' as a LoRA adapter' if self.is_adapter else ''}. "
                f"{md_escape(self.report.headline())}")

    def _base_name(self) -> str:
        """The base model by alias, hub id or folder name: never this machine's path."""
        name = str(self.meta.get("base_model_name") or self.report.model.get("name") or "an unknown base model")
        shown = _code(model_label(name))
        return f"{shown} ([{self.hub_id}](https://huggingface.co/{self.hub_id}))" if self.hub_id and \
            self.hub_id != name else shown

    # ------------------------------------------------------------------ what and on what
    def what_it_does(self) -> str:
        labels = [str(label) for label in self.meta.get("labels") or self.report.metrics.get("labels") or []]
        what = self.spec.card.describe(self.meta, labels, _code) if self.spec else f"A {self.task} model."
        base = str(self.meta.get("base_model") or self.report.model.get("base") or "")
        shown_base = base and base != self.hub_id and not looks_like_path(base)  # a hub id, not a local folder
        lines = [f"- Base model: {self._base_name()}" + (f", loaded from {_code(base)}" if shown_base else ""),
                 "- Weights: " + ("a LoRA adapter on the base model (`tailor export` merges it into one model)"
                                  if self.is_adapter else "the full fine-tuned model (safetensors)")]
        return _section("What it does", what, "\n".join(lines))

    def data(self) -> str:
        sizes = self.report.data_sizes
        rows = [("Train", sizes.get("train")), ("Validation", sizes.get("validation")), ("Test", sizes.get("test")),
                ("Rejected while cleaning", sizes.get("rejected"))]
        body = "| Split | Rows |\n|---|---:|\n" + "\n".join(f"| {name} | {count(n)} |" for name, n in rows)
        return _section("Training data", body,
                        "Rejected rows (empty, malformed, duplicated, leaking between splits, ...) are listed with "
                        "their reason in the run's `rejects.jsonl`; the test split was held out from training and "
                        "from checkpoint selection.")

    def results(self) -> str:
        n = count(self.report.data_sizes.get("test"))
        return _section(f"Results on the test split ({n} rows)",
                        "Each baseline and the fine-tuned model, measured on the same test rows (best value per "
                        "column in bold; none for the calibration error, whose lowest value is no better model):",
                        table(comparison_table(self.report)), md_escape(floor_note(self.report)),
                        md_escape(self._kept_note()))

    def _kept_note(self) -> str:
        """Which of those rows this folder holds, when training.keep_best_of saved another than the fine-tune."""
        from tailorlm.evaluate.verdict import kept_note

        note = kept_note(self.report.metrics)
        return f"**This folder holds the linear probe, not the fine-tuned model.** {note}" if note else ""

    def settings(self) -> str:
        training = self.recipe.get("training") or {}
        peft = (self.recipe.get("model") or {}).get("peft") or {}
        train = self.report.train
        setting = training.get("max_length")
        max_length = f"{count(self.report.model.get('max_length'))} tokens" + (
            " (auto: the 99th percentile of training lengths)" if setting == "auto" else "")
        if peft.get("method") == "lora":
            tuning = f"LoRA, r={peft.get('r')}, alpha={peft.get('alpha')}"
        else:
            tuning = "full fine-tuning (every weight)"
        if train.get("trainable_params") and train.get("total_params"):
            tuning += f"; {count(train['trainable_params'])} of {count(train['total_params'])} parameters trained"
        rows = [("Epochs", f"{_plain(training.get('epochs'))} (ran {_plain(train.get('epochs_run'))})"),
                ("Learning rate", _plain(training.get("learning_rate"))),
                ("Batch size", _plain(training.get("batch_size"))),
                ("max_length", max_length),
                ("Fine-tuning", tuning),
                ("Seed", _plain(training.get("seed"))),
                ("Training time", duration(train.get("runtime_s")))]
        body = "| Setting | Value |\n|---|---|\n" + "\n".join(f"| {k} | {md_escape(v)} |" for k, v in rows)
        return _section("Training settings", body, "Every setting is in the run's `recipe.resolved.yaml`; "
                                                   "`tailor run --reproduce RUN_DIR` trains it again.")

    # ------------------------------------------------------------------ use
    def usage(self) -> str:
        task = get_task(self.task)
        text = task.spec.card
        run = self._shown_run()
        if len(task.input_fields) > 1:  # one option per field (qa: --question, --context)
            cli = f"tailor predict {run} " + " ".join(f'--{field} "..."' for field in task.input_fields)
        else:
            cli = f'tailor predict {run} --text "{text.example}"' + (f"   # {text.example_note}"
                                                                      if text.example_note else "")
        shell = "\n".join([
            cli,
            f"tailor predict {run} --input inputs.jsonl --out predictions.jsonl   # one object per line",
            f"tailor serve {run} --port 8000",
            "curl -s localhost:8000/predict -H 'Content-Type: application/json' \\",
            f"     -d '{{\"inputs\": [{task.input_example()}]}}'",
        ])
        return _section(
            "How to use",
            f"Each input needs {', '.join(f'`{f}`' for f in task.input_fields)}. With tailorlm:",
            f"```bash\n{shell}\n```",
            "With transformers alone (run it in this folder, or set `MODEL` to where the model is):",
            f"```python\n{self._python()}\n```",
            self._python_note(),
        )

    def _shown_run(self) -> str:
        """The run directory as the recipe named it when that is relative, else by its name: no machine path."""
        written = str(self.recipe.get("output_dir") or "")
        return written if written and not Path(written).expanduser().is_absolute() else self._name()

    def _python_note(self) -> str:
        if self.spec is not None and self.spec.has("proba"):
            return ("This computes what `tailor predict` computes: the text cleaned as the training texts were, cut "
                    "at the same length, and the softmax of the logits divided by the temperature fitted on the "
                    "validation split (`temperature` in `tailor_model.json`; 1 when none was fitted), so its "
                    "probabilities match `tailor predict`'s.")
        return ""

    def _python(self) -> str:
        from tailorlm.tasks.classification.probe import PROBE_HEAD

        if self.meta.get("head") == PROBE_HEAD:
            return self._probe_python()
        if self.task == "regression" and not self.is_adapter:
            return self._score_python()
        spec = get_spec(self.task)
        auto = spec.auto_model_class
        proba = spec.has("proba")
        names = [*(["AutoConfig"] if self.is_adapter else []), auto, "AutoTokenizer",
                 *(["pipeline"] if spec.card.pipeline_call is not None and not proba else [])]
        lines = [*(["import unicodedata", "", "import torch"] if proba else []),
                 *(["from peft import PeftModel"] if self.is_adapter else []),
                 f"from transformers import {', '.join(names)}",
                 "", 'MODEL = "."  # this folder (the run\'s model/), or the Hub repository you push it to',
                 "tokenizer = AutoTokenizer.from_pretrained(MODEL)"]
        if self.is_adapter:
            base = self.hub_id or "BASE_MODEL"
            note = "" if self.hub_id else f"  # the base model: {model_label(str(self.meta.get('base_model_name')))}"
            lines += [f'base = {auto}.from_pretrained("{base}", config=AutoConfig.from_pretrained(MODEL)){note}',
                      "model = PeftModel.from_pretrained(base, MODEL).merge_and_unload().eval()"]
        else:
            lines.append(f"model = {auto}.from_pretrained(MODEL).eval()")
        return "\n".join(lines + (self._proba_call() if proba else self._python_call(spec)))

    def _inputs_lines(self) -> list[str]:
        """The constants, the cleaning and the tokenised inputs, as ``tailor predict`` prepares a text."""
        temperature = float(self.meta.get("temperature") or 1.0)
        return [f"TEMPERATURE = {temperature!r}  # fitted on the validation split (tailor_model.json)",
                *self._cleaning_lines(),
                "inputs = tokenizer([clean(t) for t in texts], truncation=True, max_length=MAX_LENGTH, padding=True,",
                '                   return_tensors="pt")']

    def _cleaning_lines(self) -> list[str]:
        """The length, the cleaning as the training texts were cleaned, and an example input."""
        from tailorlm.data.clean import saved_cleaning

        clean = saved_cleaning(self.meta)
        max_length = int(self.meta.get("max_length") or 512)
        steps = ([' text = unicodedata.normalize("NFKC", text)'] if clean.normalize_unicode else []) + \
            ([' text = " ".join(text.split())'] if clean.normalize_whitespace else []) + \
            ([" text = text.lower()"] if clean.lowercase else [])
        return [f"MAX_LENGTH = {max_length}  # tokens, as in training", "", "",
                "def clean(text):  # as the training texts were cleaned (data.clean)",
                *("   " + step for step in steps), "    return text", "", "",
                f'texts = ["{EXAMPLE_TEXT}"]']

    def _proba_call(self) -> list[str]:
        """Classification as ``tailor predict`` does it: cleaning, truncation, the fitted temperature."""
        return [*self._inputs_lines(),
                "with torch.no_grad():",
                "    logits = model(**inputs).logits.double()",
                "probabilities = torch.softmax(logits / TEMPERATURE, dim=-1)",
                "for text, p in zip(texts, probabilities):",
                "    print(text, {model.config.id2label[i]: round(float(v), 6) for i, v in enumerate(p)})"]

    def _probe_python(self) -> str:
        """A kept linear probe (training.keep_best_of): the pretrained encoder's L2-normalised mean-pooled
        embedding through the probe's linear layer (tasks/classification/probe.py), as ``tailor predict`` runs it."""
        from tailorlm.tasks.classification.probe import PROBE_FILE

        labels = [str(label) for label in self.meta.get("labels") or []]
        return "\n".join([
            "import unicodedata", "", "import torch", "from safetensors.torch import load_file",
            "from transformers import AutoModel, AutoTokenizer", "",
            'MODEL = "."  # this folder (the run\'s model/), or the Hub repository you push it to',
            "tokenizer = AutoTokenizer.from_pretrained(MODEL)",
            "model = AutoModel.from_pretrained(MODEL).eval()  # the pretrained encoder, unchanged",
            f'head = load_file(f"{{MODEL}}/{PROBE_FILE}")  # logistic regression on its embeddings, as one layer',
            f"LABELS = {labels!r}",
            *self._inputs_lines(),
            "with torch.no_grad():",
            "    hidden = model(**inputs).last_hidden_state",
            '    mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)',
            "    pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)",
            '    logits = (pooled @ head["weight"].T + head["bias"]).double()',
            "probabilities = torch.softmax(logits / TEMPERATURE, dim=-1)",
            "for text, p in zip(texts, probabilities):",
            "    print(text, {LABELS[i]: round(float(v), 6) for i, v in enumerate(p)})"])

    def _score_python(self) -> str:
        """Regression as ``tailor predict`` scores it: one output of the cross-encoder, or the bi-encoder's line
        of the cosine of each text's mean-pooled embedding (tasks/regression/bi_encoder.py)."""
        from tailorlm.tasks.regression.bi_encoder import COSINE_FILE, COSINE_HEAD

        pair = bool(self.meta.get("pair"))
        bi = self.meta.get("head") == COSINE_HEAD
        inputs = ('def encode(texts):\n    return tokenizer([clean(t) for t in texts], truncation=True, '
                  'max_length=MAX_LENGTH, padding=True, return_tensors="pt")')
        lines = ["import unicodedata", "", "import torch",
                 *(["from safetensors.torch import load_file"] if bi else []),
                 f"from transformers import {'AutoModel' if bi else 'AutoModelForSequenceClassification'}, "
                 "AutoTokenizer", "",
                 'MODEL = "."  # this folder (the run\'s model/), or the Hub repository you push it to',
                 "tokenizer = AutoTokenizer.from_pretrained(MODEL)",
                 f"model = {'AutoModel' if bi else 'AutoModelForSequenceClassification'}.from_pretrained(MODEL).eval()",
                 *([f'line = load_file(f"{{MODEL}}/{COSINE_FILE}")  # score = scale * cosine + shift'] if bi else []),
                 *self._cleaning_lines(),
                 *(['pairs = ["a second text for each"]'] if pair else [])]
        if bi:
            return "\n".join([*lines, "", "", inputs, "", "",
                               "def embed(texts):", "    batch = encode(texts)", "    with torch.no_grad():",
                               "        hidden = model(**batch).last_hidden_state",
                               '    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)',
                               "    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)",
                               "    return torch.nn.functional.normalize(pooled, dim=-1)", "", "",
                               "cosine = (embed(texts) * embed(pairs)).sum(-1)",
                               'scores = (line["scale"] * cosine + line["shift"]).tolist()', "print(scores)"])
        call = ("tokenizer([clean(t) for t in texts], [clean(p) for p in pairs], truncation=True, "
                'max_length=MAX_LENGTH, padding=True, return_tensors="pt")' if pair else "encode(texts)")
        return "\n".join([*lines, "", "", inputs, "", "", "with torch.no_grad():",
                           f"    scores = model(**{call}).logits[:, 0].tolist()", "print(scores)"])

    def _python_call(self, spec: TaskSpec) -> list[str]:
        if spec.card.pipeline_call is not None:  # transformers' pipeline of the task's Hub pipeline tag
            return [f'predict = pipeline("{spec.pipeline_tag}", model=model, tokenizer=tokenizer)',
                    f"print(predict({spec.card.pipeline_call}))"]
        max_new = int((self.meta.get("generation") or {}).get("max_new_tokens") or 64)
        if spec.auto_model_class == "AutoModelForSeq2SeqLM":  # an encoder-decoder: the source in, the target out
            prefix = str(self.meta.get("prefix") or "")
            return [f'inputs = tokenizer({json.dumps(prefix + EXAMPLE_TEXT)}, return_tensors="pt")',
                    f"output = model.generate(**inputs, max_new_tokens={max_new})",
                    "print(tokenizer.decode(output[0], skip_special_tokens=True))"]
        if self.meta.get("prompt_format") == "chat":
            prompt = ['messages = [{"role": "user", "content": "your question here"}]',
                      "prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)",
                      'inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)']
        else:
            prompt = ['prompt = "### Instruction:\\nyour question here\\n\\n### Response:\\n"',
                      'inputs = tokenizer(prompt, return_tensors="pt")']
        return [*prompt, f"output = model.generate(**inputs, max_new_tokens={max_new})",
                'print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))']

    def limitations(self) -> str:
        n = count(self.report.data_sizes.get("test"))
        points = [
            f"Evaluated only on this team's own test split: {n} rows held out from the same data as training. "
            "How it does on other data (other sources, periods, phrasing) is unknown; score a sample of that data "
            "with `tailor eval RUN_DIR --data FILE` before relying on it.",
            self._length_note(),
        ]
        if self.spec is not None and self.spec.has("labels"):
            points.append("It can only answer with the labels it was trained on, and its confidence is a model "
                          "score, not a guarantee (see the calibration error in the run report).")
        if self.spec is not None and self.spec.has("generates"):
            points.append("Generated text can be fluent and wrong; the scores measure closeness to the reference "
                          "texts, not factual accuracy. Review outputs before they reach users.")
        return _section("Limitations", "\n".join(f"- {p}" for p in points))

    def _length_note(self) -> str:
        n = count(self.report.model.get("max_length"))
        return (self.spec.card.length_note if self.spec else CUT_NOTE).format(n=n)


def _code(text: Any) -> str:
    """Inline code: Markdown escapes do not work inside backticks, so a backtick in the text becomes a quote."""
    return "`" + " ".join(str(text).split()).replace("`", "'") + "`"


def _plain(value: Any) -> str:
    """A setting as written in a recipe: 3.0 -> 3, a missing one -> —."""
    if value is None:
        return "—"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _section(title: str, *parts: str) -> str:
    return "\n\n".join([f"## {title}", *(p for p in parts if p)])
