"""The recipe: one YAML file, validated by pydantic, the single source of truth of a run.

Every CLI flag maps to a recipe key (``--set training.epochs=2``). Nothing else in tailorlm reads YAML, and a run
directory stores the resolved recipe so that the run can be reproduced from it alone.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from tailorlm.errors import RecipeError
from tailorlm.keys import allowed_values, suggest_key
from tailorlm.tasks import TASK_NAMES, get_spec

#: The batch size commands without data assume while ``training.batch_size`` is still ``auto`` (train/auto.py).
AUTO_BATCH_STAND_IN = 32


class _Section(BaseModel):
    """Base of every recipe section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class PeftConfig(_Section):
    """Parameter-efficient fine-tuning. ``method: none`` trains every weight."""

    method: Literal["none", "lora"] = "none"
    r: int = Field(8, ge=1, description="LoRA rank")
    alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: list[str] | None = Field(
        None, description="module names to adapt; chosen per architecture family when empty"
    )
    merge_on_save: bool = Field(False, description="also export a merged model to model_merged/")


class ModelConfig(_Section):
    name: str | None = Field(
        None, description="shipped alias (minilm, smollm2), a local folder, or a hub id; None: the task's default"
    )
    revision: str | None = None
    peft: PeftConfig = Field(default_factory=PeftConfig)
    trust_remote_code: bool = Field(False, description="run code shipped with a hub model (off: safe)")
    allow_pickle: bool = Field(False, description="allow .bin/.pt (pickle) weights; safetensors only by default")


class CleanConfig(_Section):
    normalize_unicode: bool = True
    normalize_whitespace: bool = True
    lowercase: bool = False
    min_chars: int = Field(2, ge=0, description="texts shorter than this (after cleaning) are rejected")
    max_chars: int | None = Field(None, ge=1, description="longer texts are rejected (None: no limit)")
    drop_duplicates: bool = True
    drop_near_duplicates: bool = Field(True, description="same text after case, punctuation and digit folding")
    drop_conflicting_labels: bool = Field(True, description="the same text with different labels in train")
    remove_leakage: bool = Field(True, description="drop train rows whose text appears in validation/test")


class SplitConfig(_Section):
    validation: float = Field(0.1, ge=0.0, lt=1.0, description="share of train held out when no file given")
    test: float = Field(0.15, ge=0.0, lt=1.0, description="share of train held out when no file given")
    stratify: bool = True


class DataConfig(_Section):
    train: str | None = Field(None, description="training file: csv, tsv, jsonl, json, parquet, txt")
    validation: str | None = None
    test: str | None = None
    format: Literal["auto", "csv", "tsv", "jsonl", "json", "parquet", "txt", "squad", "conll"] = "auto"
    text_column: str = "text"
    label_column: str = "label"
    labels: list[str] | None = Field(None, description="the label set; inferred from train when empty")
    label_descriptions: dict[str, str] = Field(
        default_factory=dict, description="label -> description used by the zero-shot baseline"
    )
    # columns of the other tasks (each task reads only its own)
    prompt_column: str = Field("prompt", description="generation: the instruction or prompt")
    response_column: str = Field("response", description="generation: the answer the model should give")
    messages_column: str = Field("messages", description="generation: chat turns [{role, content}, ...]")
    question_column: str = Field("question", description="qa: the question")
    context_column: str = Field("context", description="qa: the passage holding the answer")
    answers_column: str = Field("answers", description="qa: {text: [...], answer_start: [...]}")
    source_column: str = Field("source", description="translation: text in the source language")
    target_column: str = Field("target", description="translation: its translation")
    source_lang: str | None = Field(None, description="translation: source language code, e.g. en")
    target_lang: str | None = Field(None, description="translation: target language code, e.g. de")
    tokens_column: str = Field("tokens", description="token-classification: list of words")
    tags_column: str = Field("tags", description="token-classification: one tag per word (BIO)")
    text_pair_column: str | None = Field(
        None, description="regression: a second text per row (sentence pairs, e.g. STS-B's sentence2)"
    )
    clean: CleanConfig = Field(default_factory=CleanConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    seed: int = 42
    max_rows: int | None = Field(None, ge=1, description="use only the first N training rows (debugging); the "
                                 "validation and test splits stay whole, so runs with different caps compare")
    max_eval_rows: int | None = Field(None, ge=1, description="use only the first N rows of the validation and "
                                      "test splits (None: all)")
    max_file_bytes: int | None = Field(
        2 * 1024**3, ge=1, description="refuse a data file (or its decompressed stream) over this size; None: no limit"
    )
    cache_tokenized: bool = Field(
        True, description="keep tokenised splits in the cache ($TAILORLM_CACHE/tokenized): a rerun skips tokenising"
    )


class TrainingConfig(_Section):
    epochs: PositiveFloat | Literal["auto"] = Field(
        "auto", description="auto: enough passes for a minimum number of optimizer steps on small sets, fewer on "
        "large ones (train/auto.py, docs/defaults.md); a number: exactly that"
    )
    learning_rate: PositiveFloat | Literal["auto", "find"] = Field(
        "auto", description="auto: from the model's size, the task and LoRA (train/auto.py); find: a learning-rate "
        "range test on training batches picks it (tailor lr-find)"
    )
    batch_size: PositiveInt | Literal["auto"] = Field(
        "auto", description="auto: 16 below 2,000 training rows, else 32; micro-batches that fit memory for "
        "causal LMs (gradient accumulation keeps the effective batch)"
    )
    eval_batch_size: int | None = Field(None, ge=1, description="defaults to 2 x batch_size")
    max_length: int | Literal["auto"] = Field(
        "auto", description="token limit; auto = the 99th percentile of train lengths, within the model's limit"
    )
    weight_decay: float = Field(0.01, ge=0)
    dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="hidden and attention dropout; None keeps the model's"
    )
    warmup: NonNegativeFloat | Literal["auto"] = Field(
        "auto", description="warm-up: a ratio of all steps when < 1, else a step count; auto: 0.1 of the steps"
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    gradient_accumulation: int = Field(1, ge=1)
    max_grad_norm: float = Field(1.0, ge=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    early_stopping_patience: int | None = Field(2, ge=1, description="evaluations without improvement; None: off")
    early_stopping_min_delta: float = Field(0.0, ge=0)
    metric: str | None = Field(
        None, description="validation metric that picks the best checkpoint; None: the task's (f1_macro, loss, ...)"
    )
    calibrate: bool = Field(
        True, description="classification: fit a softmax temperature on the validation split so confidences match "
        "accuracy (Guo et al. 2017); labels never change"
    )
    group_by_length: bool = Field(True, description="batch texts of similar length together: less padding")
    evals_per_epoch: int = Field(1, ge=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs that support it, fp32 on CPU"
    )
    num_workers: int = Field(0, ge=0)
    # --- speed and scale (docs/architecture.md "Speed"; train/distributed.py)
    torch_compile: Literal["off", "auto", "on"] = Field(
        "auto", description="torch.compile the model; auto: on CUDA GPUs only (compile time outweighs it on CPU)"
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations: less memory, ~30% slower steps")
    auto_batch_size: bool = Field(
        False, description="on out-of-memory, retry at 0.9x the per-device batch until one fits (accelerate's "
        "find_executable_batch_size through Trainer's auto_find_batch_size); the batch used is in metrics.json"
    )
    optimizer: Literal["auto", "adamw", "adamw_fused"] = Field(
        "auto", description="auto: torch's fused AdamW where the installed torch has it, else plain AdamW"
    )
    num_processes: int = Field(
        1, ge=1, description="data-parallel processes; >1 relaunches through accelerate (GPU) or torchrun (CPU, gloo)"
    )
    accelerate_config: str | None = Field(
        None, description="accelerate config file (multi-GPU or multi-node data parallel) for `accelerate launch`; "
        "sharded engines (FSDP, DeepSpeed) are refused: rank 0 evaluates and saves alone"
    )
    # --- end speed and scale
    # --- reliability (train/resume.py, docs/architecture.md "Reliability")
    resume: Literal["auto", "never", "always"] = Field(
        "auto", description="auto: continue an interrupted run of the same recipe from its last checkpoint; "
        "always: fail when there is none (tailor run --resume); never: start afresh"
    )
    save_steps: int | None = Field(
        None, ge=1, description="checkpoint every N optimizer steps; None: at each evaluation (every epoch/N)"
    )
    # --- end reliability
    save_total_limit: int = Field(1, ge=1)
    keep_best_of: list[Literal["tuned", "linear_probe"]] = Field(
        ["tuned"], min_length=1, description="candidates for the saved model; the best on the validation split is "
        "kept (classification: [tuned, linear_probe] saves the linear probe when the fine-tune loses to it)"
    )
    seed: int = 42
    # --- seeds and regularisation (evaluate/seeds.py, train/optim.py)
    seeds: int = Field(1, ge=1, description="repeat the run with seeds seed, seed+1, ...: mean ± std and CI "
                       "(tailor run --seeds N); each run in output_dir/seed-<s>/")
    attention_dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="attention-probability dropout (after training.dropout); None keeps it"
    )
    layer_lr_decay: float = Field(
        1.0, gt=0.0, le=1.0, description="layer-wise LR decay: each lower layer gets this times the LR of the "
        "one above (embeddings lowest, head full LR); 1.0: off"
    )
    # --- end seeds and regularisation
    # --- memory fit (train/memory_fit.py)
    memory_limit: str = Field(
        "auto", description="memory the training step may plan for: auto = the machine's free memory (GPU or RAM); "
        "a size such as 8GiB; off = no check. The per-device batch shrinks to fit, gradient accumulation keeps "
        "the effective batch"
    )
    # --- end memory fit

    @property
    def eval_batch(self) -> int:
        """Evaluation batch: ``eval_batch_size``, else twice the training batch (``AUTO_BATCH_STAND_IN`` while
        ``batch_size`` is still ``auto``, e.g. for baselines measured outside a run)."""
        batch = self.batch_size if isinstance(self.batch_size, int) else AUTO_BATCH_STAND_IN
        return self.eval_batch_size or 2 * batch


class GenerationSettings(_Section):
    """Decoding for generation and translation (before/after samples, BLEU/chrF, `tailor generate`)."""

    max_new_tokens: int = Field(64, ge=1)
    num_beams: int = Field(1, ge=1)
    do_sample: bool = False
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(0.9, gt=0, le=1)
    samples: int = Field(5, ge=0, description="held-out prompts shown before/after in the report")
    max_eval_rows: int | None = Field(200, ge=1, description="cap on test rows decoded for BLEU/chrF (slow)")


class LanguageModelingConfig(_Section):
    """Causal-LM fine-tuning (task: generation)."""

    loss_on: Literal["response", "all"] = Field("response", description="response: prompt tokens are masked")
    packing: bool = Field(False, description="pack several examples into one sequence (no cross-attention)")
    chat_template: Literal["auto", "none"] = Field(
        "auto", description="auto: the tokenizer's chat template when it has one, else a plain template"
    )


class QAConfig(_Section):
    """Extractive question answering (task: qa)."""

    doc_stride: int = Field(128, ge=1, description="overlap between windows of a long context, in tokens")
    n_best: int = Field(20, ge=1)
    max_answer_length: int = Field(30, ge=1, description="in tokens")
    null_threshold: float = Field(0.0, description="SQuAD v2: predict 'no answer' when null score - best > this")


class RegressionConfig(_Section):
    """A float target per text (task: regression); ``data.label_column`` names the target column."""

    loss: Literal["mse", "huber"] = Field("mse", description="mse, or huber (less pulled by outlying targets)")
    huber_delta: PositiveFloat = Field(1.0, description="huber: errors beyond this count linearly")
    pair_encoding: Literal["auto", "cross_encoder", "bi_encoder"] = Field(
        "auto", description="text pairs: bi_encoder embeds each text alone and scores a line of their cosine "
        "(what a sentence-embedding model was trained for); cross_encoder reads both texts in one input with a new "
        "head; auto: bi_encoder for a sentence-transformers model without LoRA, else cross_encoder (multi-task: "
        "cross_encoder)")


class BaselineConfig(_Section):
    zero_shot: bool = True
    linear_probe: bool = True
    max_train_rows: int | None = Field(None, ge=1, description="cap on rows embedded for the linear probe")


class ReportConfig(_Section):
    top_errors: int = Field(20, ge=0, description="most confident errors listed for expert review")
    require_gain: bool = Field(
        False, description="exit 4 (after writing everything) when the tuned model does not beat the best reference "
        "baseline on the test split (tailor run --require-gain)"
    )
    data_curve: bool = Field(
        False, description="also train on 25% and 50% of the training split and extrapolate the test metric to 2x "
        "and 4x the labels (tailor run --data-curve): would more labels help?"
    )
    license: str | None = Field(
        None, description="the model card's licence (a Hub identifier such as apache-2.0 or mit); None: the shipped "
        "base model's licence, else unknown"
    )


# --- tune and cross-validation (tailorlm/tune/)
class ParamSpec(_Section):
    """One searched recipe key: a distribution, and for grid search a finite list of values."""

    type: Literal["loguniform", "uniform", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    step: float | None = Field(None, gt=0, description="uniform/int: spacing of the values tried")
    choices: list[Any] | None = Field(None, description="categorical: the values to choose from")
    grid: list[Any] | None = Field(None, description="grid search: the values of a numeric key to try")

    @model_validator(mode="after")
    def _complete(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical spec needs a non-empty 'choices' list")
            return self
        if self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"a {self.type} spec needs 'low' < 'high'")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError("a loguniform spec needs 'low' > 0")
        return self


_DURATION = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m(?:in)?)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")


def budget_seconds(text: str) -> float:
    """``search.budget`` in seconds: ``90s``, ``20m``, ``1h30m``, ``1.5h``; a bare number is minutes."""
    compact = str(text).strip().lower().replace(" ", "")
    try:
        seconds = float(compact) * 60
    except ValueError:
        match = _DURATION.match(compact)
        if not compact or match is None or not any(match.groupdict().values()):
            raise ValueError("expected a duration such as 90s, 20m or 1h30m (a bare number is minutes)") from None
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
        seconds = parts.get("h", 0.0) * 3600 + parts.get("m", 0.0) * 60 + parts.get("s", 0.0)
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError("must be a positive duration such as 90s, 20m or 1h30m")
    return seconds


#: what search.storage may name: SQLAlchemy URLs of the databases Optuna's RDBStorage is tested with
STORAGE_URL = re.compile(r"^(?:postgres(?:ql)?(?:\+psycopg2?)?|mysql(?:\+pymysql)?|sqlite)://\S*$")


class SearchConfig(_Section):
    """`tailor tune`: which recipe keys to search, how, and for how many trials (Optuna)."""

    method: Literal["grid", "random", "bayes"] = Field("bayes", description="bayes: Optuna's TPE sampler")
    trials: int = Field(20, ge=1, description="trials to finish (complete or pruned), resumes included")
    metric: str | None = Field(None, description="validation metric to optimise; None: the task's (f1_macro, ...)")
    direction: Literal["maximize", "minimize"] | None = Field(None, description="None: from the metric")
    pruner: Literal["median", "halving", "none"] = Field("median", description="stop poor trials early")
    space: dict[str, ParamSpec] = Field(default_factory=dict, description="dotted recipe key -> distribution")
    baselines: bool = Field(False, description="also measure the baselines in every trial (slower)")
    budget: str | None = Field(
        None, description="tailor run --budget 20m: search learning rate, epochs, batch size (and LoRA r) by "
        "successive halving within this wall time (90s, 20m, 1h30m; a bare number is minutes), then train the "
        "winner with baselines and the full report (tune/budget.py)"
    )
    workers: int = Field(
        1, ge=1, description="processes running trials at once, sharing the study through its storage; each gets "
        "its share of the CPU cores as torch threads (and one GPU of several)"
    )
    storage: str | None = Field(
        None, description="Optuna storage URL that processes on several machines share (postgresql://user@host/db, "
        "sqlite:///path/study.db); None: output_dir/study.db"
    )
    study: str = Field("tailor-tune", min_length=1, description="the study's name in the storage: processes with "
                       "the same storage, name and search share one study")

    @field_validator("storage")
    @classmethod
    def _storage_is_a_database_url(cls, value: str | None) -> str | None:
        """Checked here, so a mistyped URL fails in one line before any work (the database is reached later)."""
        if value is None:
            return None
        if not STORAGE_URL.match(value.strip()):
            raise ValueError("expected a database URL such as postgresql://user@host/db, "
                             "postgresql://user@/db?host=/socket/dir or sqlite:///path/study.db")
        return value.strip()

    @field_validator("budget", mode="before")
    @classmethod
    def _budget_is_a_duration(cls, value: Any) -> str | None:
        """Checked here, so ``budget: 20`` (YAML reads a number) and ``--budget 1h30`` fail or pass before any work."""
        if value is None:
            return None
        text = f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        if not isinstance(text, str):
            raise ValueError("expected a duration such as 90s, 20m or 1h30m (a bare number is minutes)")
        budget_seconds(text)
        return text.strip()


class ValidationConfig(_Section):
    """k-fold cross-validation of `tailor run` (classification)."""

    kfold: int | None = Field(None, ge=0, description="number of folds; 0 or None: one train/validation split")
    stratified: bool = Field(True, description="keep each label's share the same in every fold")

    @field_validator("kfold")
    @classmethod
    def _not_one(cls, value: int | None) -> int | None:
        if value == 1:
            raise ValueError("must be 0 (off) or at least 2")
        return value


# --- end tune and cross-validation


# --- fairness (tailorlm/fairness/)
def _checked_pairs(value: list[list[str]]) -> list[list[str]]:
    for pair in value:
        terms = [str(term).strip() for term in pair]
        if len(terms) != 2 or not all(terms) or terms[0].lower() == terms[1].lower():
            raise ValueError(f"each pair must be two different terms, like [he, she] (got {pair})")
    return [[str(term).strip() for term in pair] for pair in value]


class FairnessConfig(_Section):
    """Bias audit of a classifier (fairness/): metrics by group, counterfactual term swaps, reweighing."""

    group_column: str | list[str] | None = Field(
        None, description="column of the data files naming each row's group (region, age band, customer type), or "
        "several ([gender, race]): each is audited alone and, with intersections, together; empty cells form the "
        "group '(missing)'; None: no by-group audit"
    )
    intersections: bool = Field(
        True, description="with several group_column: also audit their intersection (gender x race), groups below "
        "min_group_size flagged"
    )
    counterfactual: list[list[str]] | list[str] | str = Field(
        "none", description="swap terms in the test texts and predict again: a shipped family (gender, "
        "gender_names, race_names, nationality, religion, age; fairness/terms/), a list of families, a family of "
        "swap_families, term pairs ([[he, she], [mr, mrs]]), or none; label flips are reported per family"
    )
    swap_families: dict[str, list[list[str]]] = Field(
        default_factory=dict, description="your own counterfactual families: name -> term pairs ({dialect: [[y'all, "
        "you all]]}); name them in counterfactual"
    )
    mitigation: Literal["none", "reweight", "counterfactual_augment"] = Field(
        "none", description="reweight: training rows weighted so that group and label look independent "
        "(Kamiran & Calders 2012 reweighing; needs group_column); counterfactual_augment: a swapped copy of every "
        "training row that holds a counterfactual term is added to the training split only (Lu et al. 2018)"
    )
    postprocess: Literal["none", "demographic_parity", "equalized_odds"] = Field(
        "none", description="report fairlearn's ThresholdOptimizer on the model's scores (binary labels, the first "
        "group_column known at prediction time), fitted on the validation split, beside the unmitigated model on the "
        "same test split; saved with the model, predict and serve apply it to inputs that give their 'group'"
    )
    min_group_size: int = Field(10, ge=1, description="groups with fewer test rows are reported, flagged as too "
                                "small to compare")
    max_gap: float | None = Field(
        None, ge=0.0, le=1.0, description="gate: fail the run (exit 3) when the tuned model's accuracy or macro-F1 "
        "gap between compared groups is above this (0.05 = 5 points); None: no gate"
    )
    max_flip_rate: float | None = Field(
        None, ge=0.0, le=1.0, description="gate: fail the run (exit 3) when more than this share of test labels "
        "flip under the counterfactual swaps; None: no gate"
    )

    @field_validator("group_column")
    @classmethod
    def _column_named(cls, value: str | list[str] | None) -> str | list[str] | None:
        names = [value] if isinstance(value, str) else value or []
        if isinstance(value, list) and not value:
            raise ValueError("must name at least one column of the data files (or be null)")
        if any(not name.strip() for name in names):
            raise ValueError("must name a column of the data files (or be null)")
        if len(set(names)) != len(names):
            raise ValueError(f"names a column twice ({names})")
        return value

    @field_validator("swap_families")
    @classmethod
    def _families_are_pairs(cls, value: dict[str, list[list[str]]]) -> dict[str, list[list[str]]]:
        return {name: _checked_pairs(pairs) for name, pairs in value.items()}

    @field_validator("counterfactual")
    @classmethod
    def _two_terms_each(cls, value: list[list[str]] | list[str] | str) -> list[list[str]] | list[str] | str:
        if isinstance(value, str) or all(isinstance(v, str) for v in value):
            return value
        return _checked_pairs(value)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _known_families(self) -> FairnessConfig:
        value = self.counterfactual
        names = [value] if isinstance(value, str) else value if all(isinstance(v, str) for v in value) else []
        from tailorlm.fairness.families import family_names

        known = [*family_names(), *self.swap_families]
        for name in names:
            if name != "none" and name not in known:
                raise ValueError(f"fairness.counterfactual: unknown family '{name}'; use one of {', '.join(known)}, "
                                 "none, term pairs like [[he, she]], or add it under fairness.swap_families")
        return self

    @model_validator(mode="after")
    def _reweight_needs_groups(self) -> FairnessConfig:
        if self.mitigation == "reweight" and not self.group_column:
            raise ValueError("fairness.mitigation: reweight needs fairness.group_column (the groups to balance)")
        return self

    @model_validator(mode="after")
    def _gate_has_something_to_check(self) -> FairnessConfig:
        if self.max_gap is not None and not self.group_column:
            raise ValueError("fairness.max_gap needs fairness.group_column (the groups whose gap it bounds)")
        if self.max_flip_rate is not None and not self.counterfactual_on:
            raise ValueError("fairness.max_flip_rate needs fairness.counterfactual (gender or term pairs to swap)")
        return self

    @model_validator(mode="after")
    def _mitigations_have_what_they_need(self) -> FairnessConfig:
        if self.mitigation == "counterfactual_augment" and not self.counterfactual_on:
            raise ValueError("fairness.mitigation: counterfactual_augment needs fairness.counterfactual (the terms "
                             "whose swapped copies are added)")
        if self.postprocess != "none" and not self.group_column:
            raise ValueError(f"fairness.postprocess: {self.postprocess} needs fairness.group_column (the group known "
                             "at prediction time)")
        return self

    @property
    def group_columns(self) -> list[str]:
        """The group columns as a list ([] when none)."""
        value = self.group_column
        return [value] if isinstance(value, str) else list(value or [])

    @property
    def counterfactual_on(self) -> bool:
        return self.counterfactual not in ("none", [], ["none"])

    @property
    def active(self) -> bool:
        """Whether any audit or mitigation is asked for (a plain run never imports fairlearn)."""
        return bool(self.group_column) or self.counterfactual_on


# --- end fairness


# --- domain adaptation (tailorlm/adapt/)
class AdaptConfig(_Section):
    """Domain-adaptive continued pretraining (DAPT): the body keeps pretraining on the team's unlabelled text
    with its own objective (masked-LM for encoders, causal-LM for decoders) before the task is fine-tuned."""

    pretrain: bool = Field(False, description="continue pretraining on domain text before the task fine-tune")
    text: str | None = Field(
        None, description="unlabelled domain text: .txt (one document per line) or csv/jsonl/parquet with "
        "adapt.text_column; the training texts are added; None: the training texts alone (labels unused)"
    )
    text_column: str = Field("text", description="column of adapt.text holding the text (csv/jsonl/parquet)")
    epochs: float = Field(1, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    mlm_probability: float = Field(0.15, gt=0.0, lt=1.0, description="share of tokens masked (encoders)")
    whole_word_mask: bool = Field(
        False, description="mask all sub-tokens of a word together, always as [MASK] (encoders, fast tokenizers)"
    )
    max_length: int = Field(256, ge=8, description="token limit of one pretraining text (longer are truncated)")
    batch_size: int | None = Field(None, ge=1, description="None: training.batch_size")
    max_rows: int | None = Field(None, ge=1, description="use only the first N rows of adapt.text / adapt.unlabelled")
    holdout: float = Field(
        0.1, ge=0.0, le=0.5, description="share of the domain text held out to measure perplexity before/after"
    )
    self_train: bool = Field(
        False, description="classification: pseudo-label unlabelled text with the tuned model, retrain, keep the "
        "student only if its validation metric is not worse (adapt/self_train.py)"
    )
    unlabelled: str | None = Field(
        None, description="unlabelled texts to pseudo-label (same formats and adapt.text_column as adapt.text); "
        "None: adapt.text"
    )
    threshold: float = Field(0.9, gt=0.0, le=1.0, description="minimum calibrated confidence of a pseudo-label")
    max_pseudo: int | None = Field(
        None, ge=1, description="cap on pseudo-labels per round, highest confidence first, per label at most its "
        "training share of the cap; None: all above adapt.threshold"
    )
    rounds: int = Field(1, ge=1, le=3, description="self-training rounds (the kept model teaches the next)")
    # --- source -> target adaptation (issue 14): the training data is the source, these texts are the target
    target_unlabeled: str | None = Field(
        None, description="unlabelled text of the target domain (same formats and adapt.text_column as adapt.text); "
        "needed by adapt.adversarial and adapt.instance_weighting; leak-checked against every eval split"
    )
    adversarial: bool = Field(
        False, description="DANN (Ganin et al. 2016): a domain classifier behind a gradient-reversal layer makes the "
        "representation domain-invariant while the task loss is minimised; needs adapt.target_unlabeled"
    )
    adversarial_max_lambda: float = Field(
        1.0, gt=0.0, le=10.0, description="cap of the gradient-reversal weight, reached by the schedule "
        "2/(1+exp(-10p))-1 over training progress p"
    )
    instance_weighting: bool = Field(
        False, description="weigh each source row by how target-like it is (a domain classifier's density ratio, "
        "clipped, mean 1); needs adapt.target_unlabeled"
    )
    weight_clip: float = Field(10.0, gt=1.0, description="largest instance weight, as a multiple of the mean (1)")
    target_test: str | None = Field(
        None, description="labelled target-domain test file (the task's columns): what tailor adapt-study scores every "
        "method on, in place of the source test split"
    )
    target_labeled: str | None = Field(
        None, description="labelled target-domain training file: tailor adapt-study's ceiling trains on it"
    )
    target_validation: str | None = Field(
        None, description="labelled target-domain file that tailor adapt-study uses as every method's validation "
        "split (checkpoint and early stopping chosen on the target, not on held-out source rows)"
    )


# --- end domain adaptation


# --- augmentation (tailorlm/augment/)
class AugmentDecoding(_Section):
    """How a generative augmenter decodes: sampling (varied copies) or beam search (the most likely rewrite)."""

    do_sample: bool = Field(True, description="sample the output (false: greedy or beam search)")
    temperature: float = Field(0.8, gt=0.0, le=5.0, description="sampling temperature")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="nucleus sampling: the smallest token set of this mass")
    num_beams: int = Field(1, ge=1, le=16, description="beam search width (1: none)")
    max_new_tokens: int = Field(96, ge=1, le=1024, description="longest output, in tokens")


class BackTranslationConfig(AugmentDecoding):
    """``augment.method: back_translation``: source -> pivot language -> source through two seq2seq models."""

    forward: str | None = Field(None, description="seq2seq model from the data's language to the pivot: a hub id "
                                "(online) or a local folder, e.g. Helsinki-NLP/opus-mt-en-de")
    backward: str | None = Field(None, description="seq2seq model from the pivot back to the data's language, e.g. "
                                 "Helsinki-NLP/opus-mt-de-en")


class ParaphraseConfig(AugmentDecoding):
    """``augment.method: paraphrase``: the generator's rewrites that pass a length and a similarity filter."""

    examples: int = Field(3, ge=0, le=16, description="target-domain examples (adapt.target_unlabeled) per prompt")
    min_length_ratio: float = Field(0.5, ge=0.0, description="shortest kept rewrite, in words, as a share of the "
                                    "source row's")
    max_length_ratio: float = Field(2.0, gt=0.0, description="longest kept rewrite, as a share of the source row's")
    similarity: Literal["embedding", "overlap"] = Field(
        "embedding", description="embedding: cosine of mean-pooled sentence embeddings from the run's model; "
        "overlap: the share of words the two texts share (Jaccard)"
    )
    min_similarity: float = Field(0.5, ge=-1.0, le=1.0, description="a rewrite less similar to its source row is "
                                  "dropped (counted)")


class AugmentConfig(_Section):
    """Augmented copies of training rows (token edits, EDA: Wei & Zou 2019; masked-LM substitution; back-translation;
    paraphrase by a generator), kept only when they help: augmentation often does not help pretrained transformers
    (Longpre et al. 2020), so ``gate`` trains without it as well."""

    method: Literal["none", "eda", "mlm", "back_translation", "paraphrase"] = Field(
        "none", description="none; eda: synonym replacement and insertion (from augment.synonyms), random swap "
        "and random deletion of words; mlm: masked words filled by a masked-LM (augment.mlm_model); "
        "back_translation: through a pivot language (augment.back_translation); paraphrase: rewrites by a causal LM "
        "(augment.generator)"
    )
    synonyms: str | None = Field(
        None, description="word list for eda: csv/tsv with two columns word,synonym (one pair a line); None: only "
        "swap and deletion"
    )
    alpha: float = Field(0.1, gt=0.0, le=0.9, description="share of a text's words one edit changes (eda) or masks "
                         "(mlm)")
    copies: int = Field(1, ge=1, le=16, description="augmented copies per training row")
    max_share: float = Field(
        0.5, gt=0.0, le=4.0, description="cap on augmented rows as a share of the training rows"
    )
    seed: int | None = Field(None, description="seed of the edits; None: training.seed")
    mlm_model: str | None = Field(
        None, description="mlm: a model with a masked-LM head (alias, folder or hub id); None: the run's model "
        "(adapted/ when adapt.pretrain is on)"
    )
    top_k: int = Field(5, ge=1, le=100, description="mlm: a masked word is filled from the model's top k words")
    back_translation: BackTranslationConfig = Field(default_factory=BackTranslationConfig)
    generator: str = Field("smollm2", description="paraphrase: the causal LM that rewrites rows (alias, folder "
                           "or hub id; an instruct model with a chat template)")
    paraphrase: ParaphraseConfig = Field(default_factory=ParaphraseConfig)
    batch_size: int = Field(16, ge=1, le=1024, description="texts per forward pass or generate call")
    gate: bool = Field(
        True, description="also train without augmentation (output_dir/augment-off/) and keep the augmented model "
        "only if its validation main metric is better by more than the noise"
    )
    min_gain: float = Field(
        0.0, ge=0.0, le=1.0, description="the gate's smallest gain on top of the noise (a bootstrap of validation "
        "predictions)"
    )


# --- end augmentation


# --- experiment tracking (tailorlm/track/)
class TrackingConfig(_Section):
    """Log each finished (or failed) run to MLflow: params, metrics, curves, tags, artifacts (tailor run --track)."""

    mlflow: bool = Field(False, description="log the run to MLflow (needs pip install 'tailorlm[tracking]')")
    uri: str | None = Field(
        None, description="sqlite:///PATH or http(s)://server; None: sqlite:///<parent of output_dir>/mlflow.db"
    )
    experiment: str | None = Field(None, description="MLflow experiment; None: <task>/<train file stem>")
    log_model: bool = Field(False, description="also log model/ as an artifact (large)")
    run_name: str | None = Field(None, description="MLflow run name; None: the output_dir's folder name")


# --- end experiment tracking


class TaskEntry(_Section):
    """One task of a multi-task recipe (``tasks:``): its own data and task type; model and training are shared."""

    name: str = Field(..., min_length=1, description="what predict --task, the report and metrics.json call it")
    task: Literal[TASK_NAMES]  # type: ignore[valid-type]
    data: DataConfig = Field(default_factory=DataConfig)
    loss_weight: NonNegativeFloat = Field(1.0, description="balance: fixed: this task's loss times this")
    select_weight: NonNegativeFloat = Field(1.0, description="weight of its main metric in checkpoint choice")
    model: str | None = Field(None, description="must be model.name or share its tokenizer (one encoder)")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", value):
            raise ValueError("use letters, digits, '_' or '-' (it names a folder and predict --task)")
        return value


class MultiTaskConfig(_Section):
    """How the tasks of ``tasks:`` are trained together (multitask/)."""

    sampling: Literal["proportional", "temperature", "round_robin", "annealed"] = Field(
        "temperature", description="which task each batch comes from: ∝ n, ∝ n^(1/T), in turn, or T annealed"
    )
    temperature: PositiveFloat = Field(2.0, description="temperature sampling: p ∝ n^(1/T); large T is uniform")
    anneal_to: PositiveFloat = Field(
        5.0, description="annealed: T moves linearly from 1 (proportional) to this over training")
    balance: Literal["fixed", "uncertainty", "pcgrad"] = Field(
        "fixed", description="fixed: loss_weight; uncertainty: learned log-variances (Kendall et al. 2018); "
        "pcgrad: one batch per task per step, conflicting gradients projected (Yu et al. 2020)"
    )
    uncertainty_lr: PositiveFloat = Field(
        0.05, description="uncertainty: the learning rate of the log-variances (their own group, scheduled like the "
        "rest; at a fine-tuning rate they would barely move)")
    steps: PositiveInt | Literal["auto"] = Field(
        "auto", description="the total optimizer-step budget (one batch each, one task per batch); auto: the sum "
        "of each task's training.epochs: auto steps"
    )
    select: str = Field("weighted", description="checkpoint choice: weighted (mean of per-task main metrics, "
                        "select_weight each, lower-is-better ones negated) or a task's name")
    conflict_batches: int = Field(2, ge=0, description="batches per task for the gradient-cosine diagnostics at "
                                  "each evaluation; 0: off")
    comparison: Literal["none", "single_task"] = Field(
        "none", description="single_task: also train each task alone with the same settings, side by side")


#: task types whose model is an encoder with a head on it, so several can share that encoder
SHAREABLE_HINT = "only encoder tasks with a head can share one encoder"


class Recipe(_Section):
    """A whole run: what to learn, from which data, starting from which model, how, and where to write."""

    task: Literal[TASK_NAMES] = "classification"  # type: ignore[valid-type]  # the registry's names (tasks/)
    output_dir: str = "runs/latest"
    overwrite: bool = Field(False, description="replace a finished run in output_dir (tailor run --overwrite); "
                            "without it, tailor run refuses a finished output_dir")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    lm: LanguageModelingConfig = Field(default_factory=LanguageModelingConfig)
    qa: QAConfig = Field(default_factory=QAConfig)
    fairness: FairnessConfig = Field(default_factory=FairnessConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    adapt: AdaptConfig = Field(default_factory=AdaptConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    regression: RegressionConfig = Field(default_factory=RegressionConfig)
    #: multi-task learning: several named tasks on one shared encoder (multitask/); None: one task
    tasks: list[TaskEntry] | None = None
    multitask: MultiTaskConfig = Field(default_factory=MultiTaskConfig)

    @field_validator("output_dir")
    @classmethod
    def _output_dir_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _tasks_can_share_an_encoder(self) -> Recipe:
        """tasks: unique names, task types that put a head on an encoder, settings one run can honour."""
        if self.tasks is None:
            return self
        if len(self.tasks) < 2:
            raise ValueError("tasks: list at least two tasks (one task is an ordinary recipe with task: and data:)")
        if self.data.train:
            raise ValueError("tasks: each task names its own files (tasks[i].data); remove the top-level data.train")
        seen: set[str] = set()
        for i, entry in enumerate(self.tasks):
            if entry.name in seen:
                raise ValueError(f"tasks[{i}].name: '{entry.name}' is used twice; give each task its own name")
            seen.add(entry.name)
            if not get_spec(entry.task).has("multi_task"):
                shareable = ", ".join(n for n in TASK_NAMES if get_spec(n).has("multi_task"))
                raise ValueError(f"tasks[{i}].task: '{entry.task}' cannot share the encoder ({SHAREABLE_HINT}: "
                                 f"{shareable}); train it in its own recipe")
        select = self.multitask.select
        if select != "weighted" and select not in seen:
            raise ValueError(f"multitask.select: '{select}' is not a task name; use weighted or one of: "
                             f"{', '.join(sorted(seen))}")
        looped = self.validation.kfold or self.report.data_curve or self.search.budget
        others = self.augment.method != "none" or self.adapt.self_train or self.adapt.pretrain
        if looped or others or self.training.num_processes > 1:
            raise ValueError("tasks: a multi-task run is one run of one process; remove validation.kfold, "
                             "report.data_curve, search.budget, augment, adapt and training.num_processes")
        return self

    @model_validator(mode="after")
    def _splits_leave_training_data(self) -> Recipe:
        split = self.data.split
        if split.validation + split.test >= 0.9:
            raise ValueError("data.split.validation + data.split.test must leave at least 10% for training")
        return self

    @model_validator(mode="after")
    def _adapt_runs_in_one_process(self) -> Recipe:
        if self.adapt.pretrain and self.training.num_processes > 1:
            raise ValueError("adapt.pretrain runs in one process; set training.num_processes: 1 (or pretrain apart)")
        return self

    @model_validator(mode="after")
    def _self_train_is_possible(self) -> Recipe:
        if not self.adapt.self_train:
            return self
        if not get_spec(self.task).has("self_train"):
            raise ValueError(f"adapt.self_train pseudo-labels classes, not task '{self.task}'; set it to false")
        if not (self.adapt.unlabelled or self.adapt.text):
            raise ValueError("adapt.self_train needs unlabelled texts; set adapt.unlabelled (or adapt.text)")
        if self.training.num_processes > 1:
            raise ValueError("adapt.self_train runs in one process; set training.num_processes: 1")
        if self.fairness.mitigation != "none":
            raise ValueError("adapt.self_train: pseudo-labelled rows have no fairness group; set "
                             "fairness.mitigation: none")
        return self

    @model_validator(mode="after")
    def _target_methods_have_a_target(self) -> Recipe:
        """adapt.adversarial and adapt.instance_weighting learn from target text, and per-example weights."""
        for key in ("adversarial", "instance_weighting"):
            if not getattr(self.adapt, key):
                continue
            if not self.adapt.target_unlabeled:
                raise ValueError(f"adapt.{key} needs target-domain text; set adapt.target_unlabeled (a file)")
            if not get_spec(self.task).has("per_example_loss"):
                raise ValueError(f"adapt.{key} works for classification, not task '{self.task}'; set it to false")
        return self

    @model_validator(mode="after")
    def _augment_is_possible(self) -> Recipe:
        """Copies keep their row's one label (classification); back-translation needs its two models; the gate is a
        loop around one run."""
        if self.augment.method == "none":
            return self
        if not get_spec(self.task).has("kfold"):
            raise ValueError(f"augment.method: augmented copies keep one label per text (classification), not task "
                             f"'{self.task}'; set augment.method: none")
        bt = self.augment.back_translation
        missing = [f"augment.back_translation.{key}" for key in ("forward", "backward") if not getattr(bt, key)]
        if self.augment.method == "back_translation" and missing:
            raise ValueError(f"{' and '.join(missing)} not set; name two seq2seq models, e.g. "
                             "augment.back_translation: {forward: Helsinki-NLP/opus-mt-en-de, backward: "
                             "Helsinki-NLP/opus-mt-de-en} (local folders offline)")
        looped = self.validation.kfold or self.report.data_curve or self.search.budget or self.training.seeds > 1
        if self.augment.gate and looped:
            raise ValueError("augment.gate compares two single runs; with validation.kfold, report.data_curve, "
                             "search.budget or training.seeds > 1 set augment.gate: false")
        return self

    @model_validator(mode="after")
    def _probe_can_be_kept(self) -> Recipe:
        """training.keep_best_of: linear_probe needs the probe to be measured, on a validation split."""
        if "linear_probe" not in self.training.keep_best_of:
            return self
        if not get_spec(self.task).has("keep_probe"):
            raise ValueError(f"training.keep_best_of: a linear probe can be kept for classification, not task "
                             f"'{self.task}'; set training.keep_best_of: [tuned]")
        if not self.baseline.linear_probe:
            raise ValueError("training.keep_best_of includes linear_probe but baseline.linear_probe is false; "
                             "set baseline.linear_probe: true")
        if self.data.split.validation <= 0 and not self.data.validation:
            raise ValueError("training.keep_best_of chooses on the validation split; set data.split.validation > 0 "
                             "or data.validation")
        return self

    @model_validator(mode="after")
    def _bi_encoder_is_trained_whole(self) -> Recipe:
        """regression.pair_encoding: bi_encoder trains the encoder itself (the cosine head is two numbers)."""
        if self.regression.pair_encoding == "bi_encoder" and self.model.peft.method != "none":
            raise ValueError("regression.pair_encoding: bi_encoder fine-tunes the whole encoder; set "
                             "model.peft.method: none, or regression.pair_encoding: cross_encoder for LoRA")
        return self

    @model_validator(mode="after")
    def _fairness_is_for_classification(self) -> Recipe:
        if not get_spec(self.task).has("fairness") and (self.fairness.active or self.fairness.mitigation != "none"):
            raise ValueError(f"the fairness section audits classifiers, not task '{self.task}'; remove it")
        return self


# --------------------------------------------------------------------------------------------- loading


def all_keys(model: type[BaseModel] = Recipe, prefix: str = "") -> list[str]:
    """Every dotted key the recipe accepts, for did-you-mean suggestions and the docs."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(all_keys(annotation, dotted + "."))
    return keys


def closest_key(key: str) -> str | None:
    """The valid recipe key a mistyped one most likely meant, over full dotted keys (``training.lr`` ->
    ``training.learning_rate``; keys.suggest_key), for the did-you-mean of recipe errors and of ``search.space``;
    None when nothing is close."""
    return suggest_key(key, all_keys())


def _field_path(loc: tuple[Any, ...]) -> str:
    """The dotted recipe key of an error, without pydantic's union-branch names (``constrained-float``,
    ``literal['auto']``)."""
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and ("-" in p or "[" in p)))


def _section_at(key: str) -> type[BaseModel] | None:
    """The recipe section a dotted key names (``model.peft`` -> PeftConfig), or None when it names a value."""
    node: Any = Recipe
    for part in key.split(".") if key else []:
        field = node.model_fields.get(part) if isinstance(node, type) and issubclass(node, BaseModel) else None
        if field is None:
            return None
        node = field.annotation
    return node if isinstance(node, type) and issubclass(node, BaseModel) else None


def _section_hint(key: str, value: Any) -> str | None:
    """A value written where a section belongs (``model: {peft: lora}``, ``model: minilm``): the key it meant."""
    section = _section_at(key)
    if section is None or isinstance(value, dict):
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    for name, field in section.model_fields.items():  # a word one of its keys accepts: peft: lora -> method
        if text in allowed_values(field.annotation) and text not in ("true", "false"):
            return f"'{key}' is a section, not a value; use {key}.{name}: {text}"
    if "train" in section.model_fields and isinstance(value, str) and "." in value:  # data: train.csv
        return f"'{key}' is a section, not a value; use {key}.train: {text} (and {key}.test, {key}.text_column, ...)"
    if "name" in section.model_fields and isinstance(value, str):  # model: minilm -> model.name
        return f"'{key}' is a section, not a value; use {key}.name: {text}"
    keys = ", ".join(list(section.model_fields)[:6])
    return f"'{key}' is a section of keys ({keys}, ...), not a value; see `tailor keys {key}`"


_FIX_VALUE = "; fix the value in the recipe or with --set"


def _describe_error(error: dict[str, Any], source: str, alternatives: str = "") -> str:
    key = _field_path(error["loc"])
    if error["type"] == "extra_forbidden":
        suggestion = closest_key(key)
        hint = f"did you mean '{suggestion}'?" if suggestion else "see `tailor keys` for the valid keys"
        inner = error.get("input")
        if suggestion and isinstance(inner, dict) and _section_at(suggestion) is not None:  # a misspelt section
            meant = [closest_key(f"{suggestion}.{sub}") or f"{suggestion}.{sub}" for sub in list(inner)[:3]]
            hint = f"did you mean '{suggestion}' ({', '.join(meant)})?"
        return f"{source}: unknown recipe key '{key}'; {hint}"
    value = error.get("input")
    section_hint = _section_hint(key, value) if error["type"] == "model_type" else None
    if section_hint:
        return f"{source}: {section_hint}"
    meant = ""
    if error["type"] == "literal_error" and isinstance(value, str):  # task: clasification -> 'classification'
        words = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        close = difflib.get_close_matches(value.strip().lower(), words, n=1, cutoff=0.6)
        meant = f"; did you mean '{close[0]}'?" if close else ""
    if error["type"] == "list_type" and isinstance(value, str):  # labels: a, b -> [a, b]
        items = [item.strip() for item in value.split(",") if item.strip()]
        meant = f"; write a YAML list: [{', '.join(items)}]"
    shown = repr(value) if not isinstance(value, dict) else "a mapping"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    where = f"key '{key}'" if key else "the recipe"
    return f"{source}: {where} {error['msg'].lower()}{alternatives} (got {shown}){meant}{_FIX_VALUE}"


def _union_alternatives(errors: list[dict[str, Any]], key: str) -> str:
    """For a key that accepts a number or a word (``epochs: auto``): the words, so the message names them all."""
    words = [e["ctx"]["expected"] for e in errors
             if _field_path(e["loc"]) == key and e["type"] == "literal_error" and "ctx" in e]
    return f", or {' or '.join(words)}" if words else ""


def describe_errors(errors: list[dict[str, Any]], source: str) -> list[str]:
    """One message per recipe key in error (a union's branches are one key), in the order pydantic found them."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for error in errors:
        by_key.setdefault(_field_path(error["loc"]), []).append(error)
    messages = []
    for key, group in by_key.items():
        first = next((e for e in group if e["type"] != "literal_error"), group[0])
        others = [e for e in group if e is not first]
        messages.append(_describe_error(first, source, _union_alternatives(others, key)))
    return messages


def _validate(raw: dict[str, Any], source: str) -> Recipe:
    """The recipe, or one RecipeError line that names every problem pydantic found (not only the first)."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        messages = describe_errors(exc.errors(), source)
        if len(messages) == 1:
            raise RecipeError(messages[0]) from None
        prefix, fix = f"{source}: ", _FIX_VALUE
        parts = [m[len(prefix):] if m.startswith(prefix) else m for m in messages]
        listed = "; ".join(f"({n}) {part.removesuffix(fix)}" for n, part in enumerate(parts, start=1))
        raise RecipeError(f"{source}: {len(parts)} problems: {listed}; fix them in the recipe or with --set") from None


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise RecipeError(f"--set '{item}': expected key=value, e.g. --set training.epochs=2")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key:
        raise RecipeError(f"--set '{item}': the key before '=' is empty")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides; values are parsed as YAML (``2`` is an int, ``[a, b]`` a list)."""
    for item in overrides:
        path, value = _parse_override(item)
        node = raw
        for depth, part in enumerate(path[:-1]):
            if isinstance(node, list):  # tasks.<name or index>: one entry of the task list
                node = _list_entry(node, part, item, ".".join(path[:depth]))
                continue
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif isinstance(child, list) and part == "tasks":
                node = child
                continue
            elif not isinstance(child, dict):
                parent = ".".join(path[: depth + 1])
                raise RecipeError(f"--set {item}: '{parent}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return raw


def _list_entry(entries: list[Any], part: str, item: str, where: str) -> dict[str, Any]:
    """``tasks.score`` or ``tasks.1``: the entry of that name (or index) of the recipe's task list."""
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and (entry.get("name") == part or str(i) == part):
            return entry
    names = ", ".join(str(e.get("name")) for e in entries if isinstance(e, dict))
    raise RecipeError(f"--set {item}: no task '{part}' in {where}; use one of: {names}")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a recipe file into a mapping, with one-line errors for the usual mistakes."""
    file = Path(path)
    if not file.exists():
        raise RecipeError(f"{file}: recipe file not found; check the path (relative to {Path.cwd()})")
    if file.is_dir():
        raise RecipeError(f"{file}: is a folder; pass the recipe's .yaml file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"{file}: not UTF-8 text; save the recipe as UTF-8") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise RecipeError(f"{file}:{where} invalid YAML ({problem}); check indentation and quoting") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{file}: a recipe must be a mapping of keys (task, model, data, ...), not a list or value")
    return raw


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe file (or the defaults when ``path`` is None) and apply ``--set`` overrides."""
    raw = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "recipe"
    if overrides:
        apply_overrides(raw, overrides)
        source = f"{source} (with --set)"
    return _validate(raw, source)


def recipe_from_dict(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    return _validate(raw, source)


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
