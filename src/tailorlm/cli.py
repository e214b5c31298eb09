"""The ``tailor`` command: a thin layer over the library. Parse, call, print.

Problems a user can fix (``UserError``) print one line on stderr and exit with code 2; nothing else is caught
here, so a bug still shows its traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tailorlm.errors import UserError
from tailorlm.tasks import TASK_SPECS
from tailorlm.terminal import LineConsole

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # -h everywhere: subcommands inherit it
    help="Fine-tune a pretrained language model on your own data and show, with numbers, what it gained.",
)
_typed_option = typer.core.TyperOption.display_type_rich


def _flag_shows_no_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    """A flag takes no value, so --help shows nothing where typer would print ``<bool>``."""
    return None if self.is_flag else _typed_option(self, ctx)


typer.core.TyperOption.display_type_rich = _flag_shows_no_type  # type: ignore[method-assign]


def _version(value: bool) -> None:
    if value:
        from tailorlm import __version__

        typer.echo(f"tailorlm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                                help="print tailorlm's version and exit")] = False) -> None:
    """Fine-tune a pretrained language model on your own data and show, with numbers, what it gained."""


# one line per message in logs and pipes, wrapped at the width of a terminal (terminal.py)
out = LineConsole()
err = LineConsole(stderr=True)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="override a recipe key, e.g. --set training.epochs=2 (repeatable)"),
]
RecipeArg = Annotated[Path, typer.Argument(help="recipe YAML file", show_default=False)]


def _quiet_libraries() -> None:
    """Library chatter (load reports, tqdm bars, fork warnings) hides the lines a user needs."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")


def _load(recipe: Path | None, overrides: list[str] | None, check_inputs: bool = True) -> Any:
    """The validated recipe, its files and model checked too (precheck.py), all before torch is imported."""
    from tailorlm.precheck import check_inputs as check
    from tailorlm.recipe import load_recipe

    loaded = load_recipe(recipe, overrides or [])
    if check_inputs:
        check(loaded)
    return loaded


# --------------------------------------------------------------------------------------------- commands


NumProcessesOption = Annotated[
    int | None, typer.Option("--num-processes", help="data-parallel processes (training.num_processes)")
]
AccelerateConfigOption = Annotated[
    str | None, typer.Option("--accelerate-config", help="accelerate config: FSDP, DeepSpeed, multi-node")
]


SeedsOption = Annotated[
    int | None, typer.Option("--seeds", min=1, help="repeat with N seeds; mean ± std and 95% CI (training.seeds)")
]
TrackOption = Annotated[
    bool, typer.Option("--track", help="log to MLflow (tracking.mlflow=true; store: tracking.uri)")
]
RequireGainOption = Annotated[
    bool, typer.Option("--require-gain", help="exit 4 when the tuned model does not beat the best reference "
                       "baseline on the test split (report.require_gain=true)")
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="print the stages this recipe would run, and why the others are skipped; "
                       "train nothing, write nothing")
]
DataCurveOption = Annotated[
    bool, typer.Option("--data-curve", help="also train on 25% and 50% of the training rows and extrapolate the test "
                       "metric to 2x and 4x the labels (report.data_curve=true)")
]


# --- reliability: --resume and --reproduce (train/resume.py, provenance.py)
OptionalRecipeArg = Annotated[
    Path | None, typer.Argument(help="recipe YAML file (not with --reproduce)", show_default=False)
]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="continue the interrupted run in output_dir (training.resume=always)")
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="replace a finished run in output_dir (overwrite=true); without it a "
                       "finished output_dir is refused")
]
ReproduceOption = Annotated[
    Path | None, typer.Option("--reproduce", help="rerun a run directory's resolved recipe into RUN_DIR-reproduce")
]


def _resume_or_reproduce(recipe: Path | None, set_: list[str] | None, resume: bool,
                         reproduce: Path | None) -> tuple[Path, list[str]]:
    """The recipe file and overrides a plain `tailor run` would get for --resume / --reproduce."""
    overrides = list(set_ or [])
    if reproduce is not None:
        from tailorlm.provenance import check_reproducible, reproduce_args

        if recipe is not None:
            raise UserError("--reproduce RUN_DIR reruns that run's recipe; do not pass a recipe file too")
        recipe, overrides = reproduce_args(reproduce, overrides)
        for warning in check_reproducible(reproduce, overrides):
            err.print(f"warning: {escape(warning)}", highlight=False)
    if recipe is None:
        raise UserError("tailor run needs a recipe file (tailor run RECIPE.yaml) or --reproduce RUN_DIR")
    if resume:
        overrides.append("training.resume=always")
    return recipe, overrides
# --- end reliability


# --- time budget: search within it, then the winner's run (tune/budget.py)
BudgetOption = Annotated[
    str | None, typer.Option("--budget", help="search.budget, e.g. 20m, 90s, 1h30m: search learning rate, epochs, "
                             "batch size (LoRA r) within this time, then train the winner")
]
# --- end time budget


@app.command()
def run(recipe: OptionalRecipeArg = None, set_: SetOption = None, num_processes: NumProcessesOption = None,
        accelerate_config: AccelerateConfigOption = None, resume: ResumeOption = False,
        reproduce: ReproduceOption = None, seeds: SeedsOption = None, track: TrackOption = False,
        require_gain: RequireGainOption = False, data_curve: DataCurveOption = False,
        budget: BudgetOption = None, dry_run: DryRunOption = False, overwrite: OverwriteOption = False) -> None:
    """Prepare the data, measure the baselines, fine-tune, evaluate and write the run directory."""
    started = time.monotonic()  # --budget counts from here, the imports below included
    from tailorlm.train.distributed import is_main_process, launch_overrides, needs_launch, relaunch_run

    recipe, set_ = _resume_or_reproduce(recipe, set_, resume, reproduce)
    overrides = [*(set_ or []), *launch_overrides(num_processes, accelerate_config)]
    overrides += [f"training.seeds={seeds}"] if seeds else []  # --seeds N: evaluate/seeds.py
    overrides += ["tracking.mlflow=true"] if track else []  # --track: track/
    overrides += ["report.require_gain=true"] if require_gain else []  # --require-gain: evaluate/verdict.py
    overrides += ["report.data_curve=true"] if data_curve else []  # --data-curve: evaluate/data_curve.py
    overrides += [f"search.budget={json.dumps(budget)}"] if budget else []  # --budget: tune/budget.py
    overrides += ["overwrite=true"] if overwrite else []  # --overwrite: safety.refuse_finished_run
    loaded = _load(recipe, overrides, check_inputs=not dry_run)
    if dry_run:  # the plan, then whether the run could start (a missing data file, a typo'd model: exit 2)
        from tailorlm.precheck import check_inputs

        print_plan(loaded)
        check_inputs(loaded)
        return
    t = loaded.training
    if loaded.report.data_curve and t.seeds > 1:
        raise UserError("--data-curve (report.data_curve) runs with one seed; drop --seeds / training.seeds")
    if needs_launch(t.num_processes, t.accelerate_config) and not loaded.search.budget:
        err.print(f"launching {t.num_processes} processes (training.num_processes; train/distributed.py)")
        code = relaunch_run(str(recipe), overrides, t.num_processes, t.accelerate_config)
        if code:
            sys.exit(code)
        return
    _quiet_libraries()
    metrics = _run_loaded(loaded, err if is_main_process() else Console(stderr=True, quiet=True), started,
                          reproduce is not None)
    if not is_main_process():
        return
    print_verdict(metrics)
    out.print(comparison_table(metrics))
    out.print(f"run directory: {loaded.output_dir} (report.html, metrics.json, model/)")
    if isinstance(metrics.get("data_curve"), dict):  # --data-curve: the answer, after the table it is about
        out.print(f"data curve: {escape(str(metrics['data_curve'].get('answer')))}", highlight=False)
    from tailorlm.fairness.gate import GATE_EXIT_CODE, gate_failure

    failure = gate_failure(metrics)
    if failure:  # everything is written; the exit status tells a pipeline not to ship this model
        err.print(f"error: {escape(failure)}", highlight=False)
        sys.exit(GATE_EXIT_CODE)
    verdict = metrics.get("verdict") or {}
    if loaded.report.require_gain and verdict.get("beats_best_reference") is not True:
        from tailorlm.evaluate.verdict import NO_GAIN_EXIT_CODE

        err.print("error: --require-gain: the fine-tuned model does not beat the best reference baseline on the test "
                  "split (see the verdict above); everything is written, the model is not fit to ship", highlight=False)
        sys.exit(NO_GAIN_EXIT_CODE)


def _run_loaded(loaded: Any, console: Console, started: float, reproducing: bool) -> dict[str, Any]:
    """launch.run_recipe; a failed --reproduce removes the RUN_DIR-reproduce/ it created."""
    from tailorlm.launch import run_recipe
    from tailorlm.provenance import removed_on_failure

    if not reproducing:
        return run_recipe(loaded, console, started=started)
    with removed_on_failure(Path(loaded.output_dir).expanduser()):
        return run_recipe(loaded, console, started=started)


def print_plan(recipe: Any) -> None:
    """``tailor run --dry-run``: the loop around the run, then each stage, run or skipped with its condition."""
    from tailorlm.launch import loop_of
    from tailorlm.run import dry_run

    out.print(f"{recipe.task} run into {recipe.output_dir}: {loop_of(recipe)}", highlight=False)
    for entry in dry_run(recipe):
        mark = "run " if entry["runs"] else "skip"
        why = "" if entry["when"] == "always" else f"  (runs when {entry['when']})"
        out.print(f"  {mark} {entry['stage']}{why}", highlight=False)


def print_verdict(metrics: dict) -> None:
    """The verdict first, in plain words, with what to try when the tuned model lost (evaluate/verdict.py)."""
    verdict = metrics.get("verdict") or {}
    if not verdict.get("sentence"):
        return
    style = {True: "bold green", False: "bold red"}.get(verdict.get("beats_best_reference"), "bold yellow")
    out.print(f"[{style}]{escape(verdict['sentence'])}[/]", highlight=False)
    for tip in verdict.get("advice") or []:
        out.print(f"  try: {escape(tip)}", highlight=False)


@app.command("adapt-study")
def adapt_study(
    recipe: RecipeArg, set_: SetOption = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="seeds per method (the spread a gain must beat)")] = 3,
    methods: Annotated[str, typer.Option("--methods", help="comma-separated: source_only, dapt, dann, weighting, "
                                         "self_train, augment, ceiling; default: all")] = "",
) -> None:
    """Which domain-adaptation method helped: every method on the same target test and seeds, against source-only.

    Writes OUTPUT_DIR/study.md, .csv, .json and one run directory per cell (OUTPUT_DIR/cells/); a finished cell is
    not rerun, so a stopped study continues.
    """
    loaded = _load(recipe, set_)  # recipe, files and model checked before the imports below load torch
    from tailorlm.adapt.study import DEFAULT_METHODS, run_study

    _quiet_libraries()
    run_study(loaded, err, [m.strip() for m in methods.split(",") if m.strip()] or DEFAULT_METHODS, seeds)
    out.print((Path(loaded.output_dir) / "study.md").read_text(encoding="utf-8"), highlight=False, markup=False)


@app.command("lr-find")
def lr_find(recipe: RecipeArg, set_: SetOption = None) -> None:
    """Learning-rate range test: a short sweep on training batches suggests training.learning_rate.

    Writes OUTPUT_DIR/lr-find/ (lr_find.json, lr_find.svg, the data report); nothing else in output_dir.
    """
    loaded = _load(recipe, set_)
    from tailorlm.launch import lr_find_command

    _quiet_libraries()
    found, folder = lr_find_command(loaded, err)
    if found.suggestion is not None:
        out.print(f"suggested learning rate: {found.suggestion:.3g} (set training.learning_rate: {found.suggestion:.3g}"
                  f", or learning_rate: find to run this inside tailor run)", highlight=False)
    else:
        out.print(f"no suggestion: {escape(found.note)}; keep training.learning_rate: auto", highlight=False)
    out.print(f"rule: {found.rule}", highlight=False)
    out.print(f"{found.stopped}; wrote {folder / 'lr_find.json'} and lr_find.svg", highlight=False)


@app.command()
def prepare(recipe: RecipeArg, set_: SetOption = None) -> None:
    """Only load, clean and split the data; write data_report.json and rejects.jsonl."""
    loaded = _load(recipe, set_)
    from tailorlm.stages.data import prepare_data

    _quiet_libraries()
    data, *_ = prepare_data(loaded, err)
    removed = {k: v for k, v in data.report.get("removed", {}).items() if v}
    if data.labels:
        out.print(f"labels: {', '.join(data.labels)}")
    out.print(f"removed: {removed or 'nothing'}")
    out.print(f"wrote {Path(loaded.output_dir) / 'data_report.json'} and rejects.jsonl")


#: every command writes to --out; --output is the old spelling of eval and predict, kept as a hidden alias
OutputAlias = Annotated[Path | None, typer.Option("--output", hidden=True, help="same as --out")]


def _out_option(out_path: Path | None, alias: Path | None) -> Path | None:
    if out_path is not None and alias is not None and out_path != alias:
        raise UserError(f"--out {out_path} and --output {alias}: two output files; pass one --out")
    return out_path if out_path is not None else alias


@app.command("eval")
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="a run directory or its model/ folder")],
    data: Annotated[Path, typer.Option("--data", help="labelled file (csv, tsv, jsonl, json, parquet)")],
    text_column: Annotated[str, typer.Option(help="column holding the text")] = "text",
    label_column: Annotated[str, typer.Option(help="column holding the label")] = "label",
    output: Annotated[Path | None, typer.Option("--out", help="write the metrics here as JSON")] = None,
    output_alias: OutputAlias = None,
    clean: Annotated[bool, typer.Option("--clean", help="also drop near-duplicates and texts outside the run's "
                                        "min/max length, as its test split was (default: score every row)")] = False,
    task_name: Annotated[str | None, typer.Option("--task", help="multi-task model: which task to score")] = None,
) -> None:
    """Evaluate a saved model on any labelled file: every row it holds (rows without a text or a known label are
    listed as skipped)."""
    from tailorlm.models.saved import load_saved_model
    from tailorlm.progress import progress_bar
    from tailorlm.tasks import get_task
    from tailorlm.tasks.base import EvalSettings

    output = _out_option(output, output_alias)
    _quiet_libraries()
    loaded = load_saved_model(model_dir, task=task_name)
    task = get_task(loaded.task)
    columns = {"text_column": text_column, "label_column": label_column}
    frame, rejects = task.load_eval_file(data, loaded.meta, columns, clean=clean)
    if rejects:
        err.print(f"{data}: {len(rejects)} rows skipped ({_reasons(rejects)})")
    if len(frame) == 0:
        raise UserError(f"{data}: no usable rows to evaluate ({_reasons(rejects)})")
    with progress_bar(err, "scoring"):
        result = task.evaluate(loaded.model, loaded.tokenizer, frame, loaded.meta, EvalSettings(loaded.max_length))
    metrics = result["metrics"] | {"rejected": len(rejects), "file": str(data)}
    out.print(metrics_table({"evaluated": metrics}, title=f"{model_dir} on {data}"))
    cleaned = " after the test split's cleaning (--clean)" if clean else ""
    out.print(f"scored {len(frame)} rows{cleaned}; {len(rejects)} could not be scored", highlight=False)
    if output:
        from tailorlm.rundir import atomic_write_json

        atomic_write_json(output, metrics)
        out.print(f"wrote {output}")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="a run directory or its model/ folder")],
    text: Annotated[list[str] | None, typer.Option(
        "--text", help="a text to predict for (repeatable); a generation model reads it as the prompt")] = None,
    input_file: Annotated[Path | None, typer.Option(
        "--input", help="file of inputs (csv, tsv, jsonl, json, parquet; txt: one text per line)")] = None,
    output: Annotated[Path | None, typer.Option("--out", help="write predictions here (JSONL)")] = None,
    output_alias: OutputAlias = None,
    text_column: Annotated[str | None, typer.Option(
        help="--input column holding the text (default: the task's field: text, or prompt)")] = None,
    question: Annotated[str | None, typer.Option("--question", help="qa: the question (with --context)")] = None,
    context: Annotated[str | None, typer.Option("--context", help="qa: the passage holding the answer")] = None,
    keep_columns: Annotated[str | None, typer.Option(
        "--keep-columns", help="--input columns copied into each prediction, comma-separated; '*': all, '': none "
        "(default: id and the input columns)")] = None,
    task_name: Annotated[str | None, typer.Option("--task", help="multi-task model: which task predicts")] = None,
) -> None:
    """Predict with a saved model of any task: label, entities, answer, translation or completion, per input.

    File rows that cannot be used are kept in the output as {"row": N, "error": reason}; each row keeps its id and
    input columns, so the output joins back to the file.
    """
    from tailorlm.serve.predict import predict_rows

    output = _out_option(output, output_alias)
    if not text and input_file is None and question is None and context is None:
        raise UserError("nothing to predict: pass --text \"...\", --question/--context (qa) or --input FILE")
    _quiet_libraries()
    from tailorlm.progress import progress_bar

    kept = None if keep_columns is None else [c.strip() for c in keep_columns.split(",") if c.strip()]
    with progress_bar(err, "predicting"):
        rows = predict_rows(model_dir, texts=text, input_file=input_file, text_column=text_column,
                            question=question, context=context, keep_columns=kept, task_name=task_name)
    if output is not None:
        from tailorlm.rundir import atomic_write_text

        atomic_write_text(output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        errors = sum(1 for r in rows if "error" in r)
        out.print(f"wrote {len(rows)} predictions to {output}" + (f" ({errors} rows with an error)" if errors else ""))
    else:
        for row in rows:
            out.print_json(json.dumps(row, ensure_ascii=False))


# --- bias audit (fairness/)
@app.command()
def audit(
    model_dir: Annotated[Path, typer.Argument(help="a run directory or its model/ folder (a classifier)")],
    data: Annotated[Path, typer.Option("--data", help="labelled file (csv, tsv, jsonl, json, parquet)")],
    group_column: Annotated[list[str], typer.Option(
        "--group-column", help="column naming each row's group; repeat it for several (and their intersection)")],
    counterfactual: Annotated[str, typer.Option(
        help="swap terms, predict again: families (gender, gender_names, race_names, nationality, religion, age; "
             "comma-separated), none, or pairs like he/she,mr/mrs")] = "none",
    min_group_size: Annotated[int, typer.Option(min=1, help="smaller groups are shown but not compared")] = 10,
    text_column: Annotated[str, typer.Option(help="column holding the text")] = "text",
    label_column: Annotated[str, typer.Option(help="column holding the label")] = "label",
    out_file: Annotated[Path | None, typer.Option("--out", help="write the audit here as JSON")] = None,
) -> None:
    """Bias audit of a saved classifier on any labelled file: metrics by group, gaps, counterfactual swaps."""
    from tailorlm.fairness.pipeline import audit_saved_model, parse_pairs

    pairs = parse_pairs(counterfactual)
    _quiet_libraries()
    from tailorlm.progress import progress_bar

    with progress_bar(err, "auditing"):
        columns: str | list[str] = group_column[0] if len(group_column) == 1 else list(group_column)
        result = audit_saved_model(model_dir, data, columns, pairs, min_group_size, text_column, label_column)
    if result.get("rejected"):
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(result["rejected_reasons"].items()))
        err.print(f"{data}: {result['rejected']} rows skipped ({reasons})")
    for grouping in result.get("groupings") or ([result] if "systems" in result else []):
        out.print(audit_table(grouping, title=f"{model_dir} on {data}, by {grouping['group_column']}"))
    for family in result.get("counterfactual_families") or []:
        rate = family.get("flip_rate")
        out.print(escape(f"counterfactual {family['pairs']} ({family['axis']}): {family['rows_swapped']} texts "
                         f"swapped, flip rate {rate:.1%}" if rate is not None else
                         f"counterfactual {family['pairs']} ({family['axis']}): no text holds its terms"),
                  highlight=False)
    for line in result.get("summary") or []:
        out.print(escape(line), highlight=False)
    if out_file:
        from tailorlm.rundir import atomic_write_json

        atomic_write_json(out_file, result)
        out.print(f"wrote {out_file}")


@app.command()
def shift(
    source: Annotated[Path, typer.Option("--source", help="the source domain's file (the labelled training data)")],
    target: Annotated[Path, typer.Option("--target", help="the target domain's file (the text the model will see)")],
    text_column: Annotated[str, typer.Option(help="column holding the text (csv, tsv, jsonl, json, parquet)")] = "text",
    label_column: Annotated[str, typer.Option(help="column holding the label, when both files have one")] = "label",
    model: Annotated[str, typer.Option(help="model whose frozen embeddings the proxy A-distance uses")] = "minilm",
    out_dir: Annotated[Path | None, typer.Option("--out", help="folder for shift.json and shift.md")] = None,
) -> None:
    """How far the target domain is from the source: vocabulary, lengths, embeddings, words, labels."""
    from tailorlm.adapt.shift import read_domain_texts, shift_report, summary_rows, write_shift

    source_file = read_domain_texts(source, text_column, label_column, "--source")
    target_file = read_domain_texts(target, text_column, label_column, "--target")
    _quiet_libraries()
    report = shift_report(source_file, target_file, model)
    table = Table(title=f"domain shift: {source} -> {target}")
    for column in ("measure", "source", "target"):
        table.add_column(column)
    for row in summary_rows(report):
        table.add_row(*(escape(cell) for cell in row))
    out.print(table)
    for side in ("target", "source"):
        top = ", ".join(row["word"] for row in report["distinguishing_words"][side][:8]) or "none"
        out.print(f"typical of the {side}: {escape(top)}", highlight=False, soft_wrap=True)
    if out_dir is not None:
        for path in write_shift(out_dir, report):
            out.print(f"wrote {path}")


def audit_table(result: dict[str, Any], title: str) -> Table:
    """One row per group: test texts, accuracy and macro-F1; groups too small to compare are marked."""
    tuned = result["systems"]["tuned"]
    table = Table("group", "texts", "accuracy", "macro-F1", "note", title=title)
    rows = [("all groups", tuned["overall"], "")]
    rows += [(g, s, "too small to compare" if s["too_small"] else "") for g, s in tuned["by_group"].items()]
    for name, scores, note in rows:
        table.add_row(escape(name), str(scores["n"]), *(f"{scores[m]:.4f}" if scores[m] is not None else "–"
                                                         for m in ("accuracy", "f1_macro")), note)
    return table
# --- end bias audit


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Argument(help="a run directory or its model/ folder")],
    host: Annotated[str, typer.Option(help="address to listen on; 0.0.0.0 exposes it to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free port)")] = 8000,
    max_batch: Annotated[int, typer.Option(
        min=1, help="most inputs in one POST /predict, and in one batched forward pass")] = 64,
    max_wait_ms: Annotated[float, typer.Option(
        min=0.0, help="how long a forward pass waits for more concurrent requests to join it")] = 5.0,
    batching: Annotated[str, typer.Option(
        help="on: concurrent requests share forward passes; off: one request per pass")] = "on",
    max_body_bytes: Annotated[int, typer.Option(min=1, help="largest request body accepted")] = 1_048_576,
    max_connections: Annotated[int, typer.Option(
        min=1, help="connections open at once; more get 503 + Retry-After")] = 128,
    max_queue: Annotated[int, typer.Option(
        min=0, help="requests waiting for the model behind the pass computing; more get 503 + Retry-After")] = 128,
    request_timeout: Annotated[float, typer.Option(
        min=0.1, help="seconds a whole request may take (a client still sending then gets 408)")] = 60.0,
    task: Annotated[str | None, typer.Option(help="a multi-task folder: serve only this task (default: all)")] = None,
    backend: Annotated[str, typer.Option(
        help="auto (as the folder was saved), torch, or onnx (a `tailor export --format onnx` folder)")] = "auto",
    api_key: Annotated[str | None, typer.Option(
        help="require 'Authorization: Bearer KEY' on every route but /health (default: $TAILORLM_API_KEY)")] = None,
    threads: Annotated[int | None, typer.Option(
        min=1, help="threads for the model's matrix work (default: torch's, i.e. $OMP_NUM_THREADS or the cores)")]
    = None,
) -> None:
    """Serve a saved model over HTTP: POST /predict, GET /info, GET /health, /docs (OpenAI's /v1 for generation)."""
    import logging
    import os

    from tailorlm.serve.server import API_KEY_ENV, make_server

    if batching not in ("on", "off"):
        raise UserError(f"--batching {batching}: not a mode", fix="pass --batching on or --batching off")
    _quiet_libraries()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the access log is JSON lines
    import torch

    if threads:
        torch.set_num_threads(threads)  # before loading: an ONNX session takes torch's count
    server = make_server(model_dir, host, port, task=task, backend=backend, max_batch=max_batch,
                         max_body_bytes=max_body_bytes, request_timeout_s=request_timeout,
                         max_connections=max_connections, max_queue=max_queue, max_wait_ms=max_wait_ms,
                         batching=batching == "on", api_key=api_key)
    bound_host, bound_port = server.server_address[:2]
    served = ", ".join(server.models) if "" not in server.models else server.loaded.task
    err.print(f"serving {escape(str(server.loaded.path))} ({served}) on http://{bound_host}:{bound_port}"
              f" · POST /predict, GET /info, GET /health, /docs · batching {batching} · {torch.get_num_threads()} model"
              " threads · Ctrl+C stops", highlight=False)
    if host not in ("127.0.0.1", "localhost", "::1") and not (api_key or os.environ.get(API_KEY_ENV)):
        err.print(f"warning: listening on {host} without --api-key: anyone who can reach it can use the model")
    from tailorlm.safety import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # uvicorn finishes the requests in flight on SIGTERM/Ctrl+C, then re-raises
            server.serve_forever()
    except KeyboardInterrupt:
        err.print("stopped")
    finally:
        server.server_close()


@app.command()
def card(run_dir: Annotated[Path, typer.Argument(help="a finished run directory")]) -> None:
    """Write the model card (model/README.md) again from a run directory's files."""
    from tailorlm.serve.card import write_model_card

    out.print(f"wrote {write_model_card(run_dir)}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory")]) -> None:
    """Render report.html and report.md again from a run directory's files."""
    from tailorlm.report import render_report

    if not (run_dir / "metrics.json").exists():
        raise UserError(f"{run_dir}: no metrics.json; pass the output_dir of a finished `tailor run`")
    html, md = render_report(run_dir)
    out.print(f"wrote {html} and {md}")


@app.command()
def export(
    model_dir: Annotated[Path, typer.Argument(help="a run directory or its model/ folder")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the exported model")],
    format: Annotated[str, typer.Option(
        "--format", help="merged (a LoRA adapter folded into its base), onnx, or onnx-int8")] = "merged",
    tolerance: Annotated[float, typer.Option(
        min=0.0, help="onnx: the largest logit difference from torch accepted")] = 1e-4,
) -> None:
    """Export a model: LoRA merged into its base, or a classifier as ONNX (fp32 or int8) with a parity check."""
    from tailorlm.models.saved import model_folder
    from tailorlm.serve.onnx_export import FORMATS

    _quiet_libraries()
    if format not in FORMATS:
        raise UserError(f"--format {format}: not an export format", fix=f"choose one of: {', '.join(FORMATS)}")
    folder = model_folder(model_dir)
    if format == "merged":
        from tailorlm.serve.export import export_merged

        if not (folder / "adapter_config.json").exists():
            raise UserError(f"{folder}: holds no LoRA adapter (adapter_config.json); only LoRA runs need merging")
        export_merged(folder, out_dir)
        out.print(f"wrote merged model to {out_dir}")
        return
    from tailorlm.serve.onnx_export import export_onnx

    report = export_onnx(model_dir, out_dir, int8=format == "onnx-int8", tolerance=tolerance)
    accuracy = (f", accuracy {report['accuracy_torch']:.4f} torch → {report['accuracy_onnx']:.4f} onnx"
                if "accuracy_onnx" in report else "")
    out.print(f"wrote {format} model to {out_dir} · parity on {report['texts']} texts: max |logit diff| "
              f"{report['max_abs_logit_diff']:.2e}, labels agree {report['label_agreement']:.1%}{accuracy}, "
              f"speed ×{report['speed_ratio']} vs torch (one text at a time) · {out_dir}/export.json")


# --- demo-data: one generator per task, named by its spec (tasks/<name>/spec.py: SPEC.demo) ----------------------


@app.command("demo-data")
def demo_data(
    out_dir: Annotated[Path | None, typer.Option("--out", help="output folder (default: examples/data/<demo>)")] = None,
    seed: Annotated[int, typer.Option(help="generator seed: the same seed gives the same files")] = 13,
    task: Annotated[str, typer.Option(help=f"which demo: {', '.join(TASK_SPECS)}")] = "classification",
) -> None:
    """Generate the embedded localized demo dataset of a task (deterministic from a seed)."""
    if task not in TASK_SPECS:
        raise UserError(f"--task {task}: no demo data for it; choose one of: {', '.join(TASK_SPECS)}")
    demo = TASK_SPECS[task].demo
    paths = demo.load()(out_dir or Path(demo.default_out), seed=seed)
    out.print("wrote " + ", ".join(str(p) for p in paths.values()))
# --- end demo-data ----------------------------------------------------------------------------------------------


# --- generation: `tailor generate` (tasks/generation/task.py)
@app.command()
def generate(
    model_dir: Annotated[str, typer.Argument(help="a run directory, a model folder, or an alias (smollm2)")],
    prompt: Annotated[str, typer.Option("--prompt", help="the instruction or question to answer")],
    max_new_tokens: Annotated[int | None, typer.Option(help="length limit of the answer, in tokens")] = None,
) -> None:
    """Answer a prompt with a causal LM (tuned or not), formatted as in training (chat template or plain)."""
    from tailorlm.tasks.generation.task import complete

    _quiet_libraries()
    out.print(complete(model_dir, prompt, max_new_tokens), markup=False, highlight=False)


# --- end generation


# --- models and memory estimates (models/estimate.py)
@app.command()
def models(
    estimate_recipe: Annotated[Path | None, typer.Option("--estimate", hidden=True,
                                                         help="same as `tailor estimate RECIPE`")] = None,
    set_: SetOption = None,
    task: Annotated[str | None, typer.Option("--task", help="advise: candidate models for this task")] = None,
    memory: Annotated[str | None, typer.Option("--memory", help="budget, e.g. 8GiB, 8 GB, 8000M (default: "
                                                "this machine's RAM, or the GPU's with --device cuda)")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
    peft: Annotated[str | None, typer.Option("--peft", help="lora or none (default: either may fit)")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="per-device batch for the estimate")] = 16,
    max_length: Annotated[int, typer.Option("--max-length", help="tokens per example for the estimate")] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="print the advice as JSON")] = False,
) -> None:
    """List the shipped model aliases with their parameters (nothing is converted or downloaded); --task TASK:
    candidate models with memory, fit and speed on this hardware, and a recommendation. The memory a recipe needs:
    `tailor estimate RECIPE`."""
    if estimate_recipe is not None:  # the old spelling of `tailor estimate`, kept hidden
        estimate(estimate_recipe, set_)
        return
    if task is not None:
        _quiet_libraries()
        _advise(task, memory, device, peft, batch_size, max_length, set_, as_json)
        return
    from tailorlm.models.registry import alias_rows

    table = Table("alias", "parameters", "where", box=None)
    for row in alias_rows():
        count = f"{row.parameters / 1e6:,.1f} M" if row.parameters is not None else "—"
        table.add_row(row.alias, count, escape(row.where))
    out.print(table)


def _advise(task: str, memory: str | None, device: str, peft: str | None, batch: int, seq: int,
            overrides: list[str] | None, as_json: bool) -> None:
    """Print models/advisor.py's report: a table, the recommendation and how speed was derived."""
    from tailorlm.models.advisor import advise

    report = advise(task, memory=memory, device=device, peft=peft, batch=batch, seq=seq, overrides=overrides)
    if as_json:
        out.print_json(json.dumps(report.to_json()))
        return
    gib = 2**30
    out.print(f"task {report.task} · {report.device} ({report.precision}) · memory {report.memory_bytes / gib:.1f} "
              f"GiB ({report.memory_source}) · batch {report.batch_size} · length {report.max_length}",
              markup=False, highlight=False)
    out.print("training memory per process in GiB (weights, gradients, AdamW, activations; models/estimate.py) for "
              "a full and a LoRA fine-tune; * recommended", markup=False, highlight=False)
    table = Table("", "model", "params", "full", "LoRA", "fits", "tok/s", "offline", box=None, pad_edge=False,
                  collapse_padding=True)
    table.columns[1].min_width = max(len(row.name) for row in report.models)  # hub ids stay whole and one line
    table.columns[5].min_width = len("full+LoRA")
    for row in report.models:
        fits = "+".join(m for m, ok in (("full", row.fits_full), ("LoRA", row.fits_lora)) if ok) or "no"
        speed = f"≤{row.tokens_per_s:,.0f}" if row.tokens_per_s is not None else "—"
        table.add_row("*" if row.name == report.recommended else "", escape(row.name), f"{row.parameters / 1e6:,.0f}M",
                      f"{row.full_bytes / gib:.2f}", f"{row.lora_bytes / gib:.2f}", fits, speed, row.offline)
    out.print(table)
    for row in report.models:
        if row.note:
            out.print(f"  {row.name}: {row.note}", markup=False, highlight=False)
    if report.offline:
        out.print(f"offline: {report.offline}; the recommendation is a model available here (offline column: "
                  "shipped or cached), download-only ones need the hub", markup=False, highlight=False)
    out.print(f"recommended: {report.why}", markup=False, highlight=False)
    out.print(f"rule: {report.rule}", markup=False, highlight=False)
    out.print(f"speed: an estimate, tokens/s = FLOP/s ÷ (6 × parameters), an upper bound that real training reaches "
              f"a fraction of; FLOP/s: {report.speed_how}", markup=False, highlight=False)


@app.command()
def cache(
    action: Annotated[str, typer.Argument(help="list (what the cache holds, with sizes) or clear (delete it)")
                      ] = "list",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="clear without asking")] = False,
) -> None:
    """tailorlm's cache ($TAILORLM_CACHE, else ~/.cache/tailorlm): converted shipped models and tokenised splits.

    clear deletes only what tailorlm created there; a later run converts or tokenises again when it needs to.
    """
    from tailorlm.models.cache import cache_entries, cache_root, clear_cache

    if action not in ("list", "clear"):
        raise UserError(f"tailor cache {action}: choose list or clear")
    root, entries = cache_root(), cache_entries()
    if not entries:
        out.print(f"{root}: nothing of tailorlm's (set TAILORLM_CACHE to use another folder)", highlight=False)
        return
    table = Table("entry", "size", "what", box=None)
    for entry in entries:
        table.add_row(escape(entry.path.name), f"{entry.bytes / 2**20:,.1f} MiB", escape(entry.what))
    total = sum(entry.bytes for entry in entries)
    out.print(f"{root}: {len(entries)} entries, {total / 2**20:,.1f} MiB", highlight=False)
    out.print(table)
    if action == "list":
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UserError("tailor cache clear: pass --yes to delete without a terminal to confirm on")
        typer.confirm(f"delete these {len(entries)} entries ({total / 2**20:,.1f} MiB)?", abort=True)
    cleared = clear_cache(root)
    out.print(f"deleted {len(cleared)} entries, {sum(e.bytes for e in cleared) / 2**20:,.1f} MiB", highlight=False)


@app.command()
def estimate(recipe: RecipeArg, set_: SetOption = None) -> None:
    """Memory per process for a recipe (weights, gradients, AdamW, activations), from the config: no weights read.

    The sequence length is the recipe's max_length, or for auto the one the run would pick from data.train."""
    from tailorlm.precheck import check_inputs

    loaded = _load(recipe, set_, check_inputs=False)
    check_inputs(loaded, files=False)  # the model must be usable; data only sharpens the length (estimate.py)
    from tailorlm.models.estimate import estimate_recipe

    _quiet_libraries()
    est = estimate_recipe(loaded)
    s = est.shape
    out.print(f"{est.model} ({est.family}): {est.parameters:,} parameters; LoRA r={loaded.model.peft.r} on "
              f"{', '.join(est.lora_targets) or 'nothing'}: {est.lora_trainable:,} trainable")
    out.print(f"layers {s.layers} · hidden {s.hidden} · heads {s.heads} · vocab {s.vocab} · batch {est.batch} · "
              f"sequence {est.seq} ({est.seq_note}) · gradient checkpointing {'on' if est.checkpointing else 'off'}")
    table = Table("setting", "trainable", "weights", "grads", "AdamW", "activ.", "total", box=None,
                  title="GiB per process", title_justify="left")
    for row in est.rows:
        table.add_row(row.setting.replace("bf16 autocast", "bf16*"), f"{row.trainable:,}", *(
            f"{v / 2**30:.2f}" for v in (row.weights, row.gradients, row.optimizer, row.activations, row.total)))
    out.print(table)  # fits 80 columns: the unit in the title, bf16* in the legend below
    out.print("bf16*: bf16 autocast (weights and AdamW stay fp32). "
              "activations ≈ L·s·b·h·(34 + 5·a·s/h) bytes at 16 bit (Korthikanti et al. 2022), ×2 in fp32; "
              "+ CUDA context and fragmentation: keep 10-20% headroom. Per process; see models/estimate.py.")


# --- end models


# --- compare runs and experts in the loop (evaluate/compare.py, review.py)
@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="two or more run directories", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for compare.md, compare.csv, compare.png")] = Path(
        "compare"),
) -> None:
    """Runs side by side: recipe keys that differ, test metrics, baselines, and whether the gain is significant."""
    from tailorlm.evaluate.compare import compare as compare_runs
    from tailorlm.evaluate.compare import rows, verdict_line, write

    comparison = compare_runs(run_dirs)
    table = Table(title="runs compared (test split)")
    table.add_column("")
    for summary in comparison.runs:
        table.add_column(escape(summary.name), justify="right")
    for head, cells in rows(comparison):
        table.add_row(escape(head), *(escape(c) for c in cells))
    out.print(table)
    for test in comparison.tests:
        out.print(escape(verdict_line(test)), highlight=False)
    paths = write(comparison, out_dir)
    out.print("wrote " + ", ".join(str(p) for p in paths))


@app.command()
def review(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (single, --seeds or k-fold)")],
    out_file: Annotated[Path, typer.Option("--out", help="review CSV to write")] = Path("review.csv"),
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most this many examples")] = 50,
    data: Annotated[Path | None, typer.Option("--data", help="score this labelled file instead of the test split")
                    ] = None,
) -> None:
    """Export the examples an expert should check: errors, seed disagreements, least confident predictions."""
    from tailorlm.review import export_review, review_advice

    if data is not None:
        _quiet_libraries()
    rows = export_review(run_dir, out_file, limit=limit, data=data)
    line, warnings = review_advice(rows, out_file, run_dir)
    out.print(escape(line), highlight=False)
    for warning in warnings:
        err.print(f"warning: {escape(warning)}", highlight=False)


@app.command("apply-review")
def apply_review(
    review_file: Annotated[Path, typer.Argument(help="review CSV with corrected_label filled in")],
    data: Annotated[Path, typer.Option("--data", help="the data file to correct (csv, tsv, jsonl)")],
    out_file: Annotated[Path | None, typer.Option("--out", help="new file (default: NAME.v2.csv next to it)")
                        ] = None,
    allow_new_labels: Annotated[bool, typer.Option("--allow-new-labels", help="accept labels not in the file")
                                ] = False,
    text_column: Annotated[str, typer.Option(help="column holding the text")] = "text",
    label_column: Annotated[str, typer.Option(help="column holding the label")] = "label",
) -> None:
    """Fold an expert's corrections into a new version of the data file, with a changelog; the original stays."""
    from tailorlm.review import apply_review as apply

    result = apply(review_file, data, out_file, allow_new_labels, text_column, label_column)
    out.print(f"wrote {result.path}: {len(result.changes)} labels changed, {result.unchanged} already right; "
              f"changelog {result.changelog}")
    from_test = sum(1 for change in result.changes if change.get("split") == "test")
    if from_test:
        err.print(f"warning: {from_test} of the changed labels are test rows (changelog column 'split'); a test "
                  "score on the new file is not comparable with the old one", highlight=False)
    if result.skipped:
        out.print(f"skipped {len(result.skipped)} rows of other files (e.g. {escape(result.skipped[0])}); "
                  "pass that file with --data to correct them")


# --- end compare and review


# --- the run index and the dashboard (dashboard/)
RunsFolderArg = Annotated[Path, typer.Argument(help="folder to index, recursively (runs, seeds, folds, trials, "
                                               "studies, comparisons)")]


@app.command("runs")
def runs_index(
    folder: RunsFolderArg = Path("runs"),
    sort: Annotated[str, typer.Option("--sort", help="date, path, status, value, gain or wall")] = "date",
    as_json: Annotated[bool, typer.Option("--json", help="print the index as a JSON list")] = False,
) -> None:
    """Every run directory, tune study and comparison under FOLDER: status, task, model, test metric, gain, time."""
    from tailorlm.dashboard.index import GAIN_NOTE, TERMINAL_COLUMNS, build_index, notes, sort_entries, terminal_cells
    from tailorlm.terminal import on_a_terminal

    entries = sort_entries(build_index(folder), sort)
    if as_json:
        typer.echo(json.dumps([entry.as_dict() for entry in entries], indent=2, ensure_ascii=False))
        return
    if not entries:
        out.print(f"{escape(str(folder))}: no run directories, tune studies or comparisons found", highlight=False)
        return
    table = Table(*TERMINAL_COLUMNS, box=None, pad_edge=False, title=f"{len(entries)} under {escape(str(folder))}",
                  title_justify="left", caption=GAIN_NOTE, caption_justify="left")
    for column in table.columns[1:]:
        column.no_wrap = True
    table.columns[0].overflow, table.columns[0].min_width = "fold", 12
    table.columns[3].no_wrap, table.columns[3].max_width = False, 9  # "val. f1_macro" on two lines: 80 columns
    for entry in entries:
        table.add_row(*(escape(cell) for cell in terminal_cells(entry)))
    # a pipe or a log gets one line per run, however long its path (grep finds it)
    (out if on_a_terminal(out) else Console(file=out.file, width=240, color_system=None)).print(table)
    for line in notes(entries):
        out.print(escape(line), highlight=False)


@app.command("dashboard")
def dashboard_command(
    folder: RunsFolderArg = Path("runs"),
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port")] = 8080,
    host: Annotated[str, typer.Option("--host", help="address to bind; the default answers this machine only")
                    ] = "127.0.0.1",
) -> None:
    """A local web page over FOLDER: the run list, run pages with live progress, a recipe launcher, label review."""
    from tailorlm.dashboard.app import serve_dashboard

    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"warning: --host {escape(host)}: anyone who can reach this address can start and stop runs "
                  "and change labels; there is no login", highlight=False)
    serve_dashboard(folder, host, port, lambda url: out.print(
        f"dashboard of {escape(str(folder))} on {url} (Ctrl+C stops it; jobs it started keep running)",
        highlight=False))


app.command("ui", hidden=True, help="same as `tailor dashboard`")(dashboard_command)  # the issue's first name


# --- end run index and dashboard


# --- tune: hyperparameter search (tune/)
@app.command()
def tune(
    recipe: RecipeArg,
    method: Annotated[str | None, typer.Option(help="search.method: grid, random or bayes (TPE)")] = None,
    trials: Annotated[int | None, typer.Option(help="search.trials: trials to finish, resumes included")] = None,
    metric: Annotated[str | None, typer.Option(help="search.metric: validation metric (default: the task's)")] = None,
    direction: Annotated[str | None, typer.Option(help="search.direction: maximize or minimize")] = None,
    pruner: Annotated[str | None, typer.Option(help="search.pruner: median, halving or none")] = None,
    workers: Annotated[int | None, typer.Option(help="search.workers: processes running trials at once, "
                                                "sharing the study (each with its share of the cores)")] = None,
    storage: Annotated[str | None, typer.Option(help="search.storage: a database shared by processes on several "
                                                "machines, e.g. postgresql://user@host/db (default: "
                                                "output_dir/study.db)")] = None,
    study: Annotated[str | None, typer.Option(help="search.study: the study's name in the storage")] = None,
    set_: SetOption = None,
    track: TrackOption = False,
) -> None:
    """Search the recipe's search.space with Optuna; re-running the same command resumes the study."""
    flags = {"method": method, "trials": trials, "metric": metric, "direction": direction, "pruner": pruner,
             "workers": workers, "storage": storage, "study": study}
    overrides = [*(set_ or []), *(f"search.{k}={json.dumps(v)}" for k, v in flags.items() if v is not None)]
    overrides += ["tracking.mlflow=true"] if track else []  # --track: the study and each trial in MLflow
    loaded = _load(recipe, overrides)
    from tailorlm.tune.report import counts_text, importance_caveat
    from tailorlm.tune.study import summary_line
    from tailorlm.tune.study import tune as run_tune

    _quiet_libraries()
    result = run_tune(loaded, err)
    out.print(summary_line(result), highlight=False)
    complete = result.counts.get("complete", 0)
    caveat = importance_caveat(complete)
    out.print(f"{counts_text(result.counts)}; parameter importances in tune_report.html"
              + (f" ({caveat[0].lower()}{caveat[1:]})" if caveat else ""), highlight=False)
    out.print("wrote " + ", ".join(str(p) for p in result.files.values()), highlight=False)


@app.command("tune-worker", hidden=True)
def tune_worker(spec: Annotated[Path, typer.Argument(help="the worker's spec file, written by tailor tune")]) -> None:
    """One worker process of `tailor tune --workers N` (tune/worker.py); `tailor tune` starts it, not a user."""
    from tailorlm.tune.worker import run_worker

    _quiet_libraries()
    raise typer.Exit(run_worker(spec))


# --- end tune


@app.command()
def keys(
    prefix: Annotated[str | None, typer.Argument(help="only keys under this section or starting so, e.g. training "
                                                 "or model.peft", show_default=False)] = None,
    search: Annotated[str | None, typer.Option("--search", help="only keys whose name, description or allowed "
                                               "values mention this word")] = None,
) -> None:
    """Every recipe key (what --set accepts): its default, the values it allows and what it does."""
    from tailorlm.keys import key_infos, select
    from tailorlm.recipe import Recipe, closest_key

    infos = select(key_infos(Recipe), prefix, search)
    if not infos:
        near = closest_key(prefix) if prefix else None
        hint = f"; did you mean '{near}'?" if near else "; run `tailor keys` for all of them"
        raise UserError(f"no recipe key matches{f' {prefix!r}' if prefix else ''}"
                        f"{f' with --search {search!r}' if search else ''}{hint}")
    table = Table("key", "default", "accepts", "description", box=None, pad_edge=False)
    table.columns[0].no_wrap = True  # a key is what a user copies: whole, on one line
    for info in infos:
        table.add_row(escape(info.key), escape(json.dumps(info.default)), escape(info.accepts),
                      escape(info.description))
    out.print(table)


# --------------------------------------------------------------------------------------------- output


def _reasons(rejects: list[dict]) -> str:
    counts: dict[str, int] = {}
    for reject in rejects:
        counts[reject["reason"]] = counts.get(reject["reason"], 0) + 1
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) or "none rejected"


#: classification's terminal columns, abbreviated so the table fits 80 columns; LEGEND spells them out
COLUMNS = [("accuracy", "acc"), ("f1_macro", "F1"), ("precision_macro", "P"), ("recall_macro", "R"),
           ("f1_weighted", "wF1"), ("ece", "ECE")]
LEGEND = ("acc: accuracy · F1, P, R: macro F1, precision, recall · wF1: weighted F1 · ECE: calibration error "
          "(lower is better)")


def metrics_table(rows: dict[str, dict | None], title: str) -> Table:
    """Classification's fixed columns when the rows carry them, otherwise every flat score they have; numbers are
    never cut, long headers go on two lines, and model names wrap, so the table fits an 80-column terminal."""
    from tailorlm.metric_names import flat_metric_keys, headline_keys

    measured = [m for m in rows.values() if isinstance(m, dict)]
    classic = any("accuracy" in m and "f1_macro" in m for m in measured)
    columns = COLUMNS if classic else [(k, k.replace("_", "\n")) for k in headline_keys(flat_metric_keys(measured))]
    table = Table(title=title, caption=LEGEND if classic else None)
    table.add_column("model", overflow="fold", min_width=10)
    for _, header in columns:
        table.add_column(header, justify="right", no_wrap=True)
    for name, metrics in rows.items():
        if not metrics or ("accuracy" not in metrics if classic else not any(k in metrics for k, _ in columns)):
            continue
        table.add_row(name, *(f"{metrics[k]:.4f}" if isinstance(metrics.get(k), (int, float)) else "–"
                              for k, _ in columns))
    return table


def comparison_table(metrics: dict) -> Table:
    """Baselines and the tuned model on the test split; floors are marked, and the caption gives the change in the
    task's main metric over the best *reference* baseline (never over a floor: evaluate/floors.py)."""
    from tailorlm.evaluate.floors import is_floor
    from tailorlm.evaluate.verdict import main_metric, reference_scores
    from tailorlm.metric_names import greater_is_better

    baseline = metrics.get("baseline") or {}
    tuned = metrics.get("tuned") or {}
    task = str(metrics.get("task"))
    floors = {name for name, value in baseline.items() if is_floor(name, task, value)}
    rows = {_row_name(name) + (" (floor)" if name in floors else ""): value for name, value in baseline.items()}
    rows["fine-tuned"] = tuned
    n = tuned.get("n", "?")
    n = int(n) if isinstance(n, float) and n.is_integer() else n
    table = metrics_table(rows, title=f"test split ({n} rows): before vs after fine-tuning")
    main = main_metric(metrics)
    references, measured_floors = reference_scores(metrics, main)  # the verdict's own split (evaluate/verdict.py)
    scores = list(references.values())
    if not isinstance(tuned.get(main), (int, float)):
        return table
    title = "macro-F1" if main == "f1_macro" else main
    lower = not greater_is_better(main)
    if scores:
        change = tuned[main] - (min(scores) if lower else max(scores))
        word = "gain" if main == "f1_macro" else "change"
        suffix = " (lower is better)" if lower else ""
        caption = f"{title} {word} over the best baseline: {change:+.4f}{suffix}"
    elif measured_floors:
        named = ", ".join(_row_name(n) for n in measured_floors)
        caption = f"only floors were measured ({named}): lower bounds, so no gain over a real baseline is claimed"
    else:
        return table
    table.caption = caption + (f"\n{table.caption}" if table.caption else "")  # the legend after the result
    return table


def _row_name(name: str) -> str:
    return name.replace("_", "-").replace("linear-probe", "linear probe")


def main() -> None:
    try:
        app()
    except UserError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
