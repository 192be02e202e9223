"""`tailor` command line. Each command parses its arguments and calls tailorkit.api."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from tailorkit import api
from tailorkit.cli_data import add_data_commands, cmd_data
from tailorkit.cli_export import EXPORT_COMMANDS, add_export_commands
from tailorkit.cli_flags import add_set, add_trust
from tailorkit.cli_study import STUDY_COMMANDS, add_study_commands
from tailorkit.cli_train import TRAIN_COMMANDS, add_train_commands
from tailorkit.config import GenerationConfig
from tailorkit.data.prepare import column_texts
from tailorkit.data.tables import read_table, write_csv
from tailorkit.errors import TailorError
from tailorkit.generate import generate
from tailorkit.inference import check_output_file, check_text_predictions
from tailorkit.methods import METHODS
from tailorkit.pipeline.estimate import estimate_recipe
from tailorkit.recipe import dump_recipe, load_compress_file, load_recipe, reference_markdown
from tailorkit.tasks import TASKS

# `tailor generate` / `chat` flags: each is a recipe field of `generation:`, so its help is the
# field's description and its default is the run's own recipe (whose default is the schema's).
GENERATION_FLAGS = {"--max-tokens": "max_new_tokens", "--temperature": "temperature", "--top-p": "top_p"}


def _add_config_flag(parser: argparse.ArgumentParser, flag: str, model: type[BaseModel], field: str,
                     section: str) -> None:
    info = model.model_fields[field]
    kind = int if info.annotation is int else float
    parser.add_argument(flag, type=kind, default=None, dest=field,
                        help=f"{info.description} Default: the run's {section}.{field} "
                             f"({info.default} unless its recipe set it).")


def _add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="replace an existing --output file")


# `tailor eval` / `predict --input` flags: the columns of a file the run did not train on.
COLUMNS = {"text_column": "the texts", "text_pair_column": "the second texts (a run trained on pairs)",
           "label_column": "the labels", "image_column": "the image paths (an image run's table)"}


def _add_columns(parser: argparse.ArgumentParser, file_flag: str, options: list[str]) -> None:
    for option in options:
        parser.add_argument("--" + option.replace("_", "-"), dest=option, metavar="COL",
                            help=f"column of {file_flag} holding {COLUMNS[option]} (default: the "
                                 f"recipe's data.{option})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tailor", description="Tailor pretrained models to your task.")
    sub = parser.add_subparsers(dest="command", required=True)

    add_train_commands(sub)  # tailor train | tune (cli_train.py)

    p = sub.add_parser("recipe", help="recipe tools")
    rsub = p.add_subparsers(dest="recipe_command", required=True)
    v = rsub.add_parser("validate", help="check a recipe and print it resolved")
    v.add_argument("recipe")
    v.add_argument("--full", action="store_true",
                   help="print every field, also those the recipe's task does not read (as saved "
                        "in the run's recipe.yaml)")
    v.add_argument("--estimate", action="store_true",
                   help="also load the data and model and estimate the training peak memory "
                        "(weights, optimiser, activations, logits) before any training")
    add_set(v)
    rsub.add_parser("schema", help="print the recipe reference (every field, type, default)")

    sub.add_parser("methods", help="list registered methods and their config fields")

    p = sub.add_parser("eval", help="score a finished run on another labelled file")
    p.add_argument("run_dir")
    p.add_argument("--data", required=True, help="CSV/JSONL/Parquet with the recipe's columns; for an image "
                   "run, also a folder of class folders or a .npz file, as data.train takes")
    _add_columns(p, "--data", ["text_column", "text_pair_column", "label_column", "image_column"])
    p.add_argument("--output", help="also write per-row predictions to this CSV (a new file)")
    _add_force(p)
    add_trust(p)

    p = sub.add_parser("predict", help="predict with a finished run (or several adapter runs)")
    p.add_argument("run_dir", nargs="+", help="run folder; with several, --adapter picks one")
    p.add_argument("--adapter", help="with several runs: the run folder name to predict with (only it "
                   "is loaded)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--text", action="append", help="text to classify (repeatable)")
    group.add_argument("--input", help="CSV/JSONL/Parquet with a text column")
    group.add_argument("--image", action="append",
                       help="image file or folder to classify with an image run (repeatable)")
    p.add_argument("--text-pair", action="append", metavar="TEXT",
                   help="for a run trained on text pairs: the second text, one per --text in the same "
                        "order (repeatable)")
    _add_columns(p, "--input", ["text_column", "text_pair_column"])
    p.add_argument("--output", help="write predictions CSV here, a new file (default: print)")
    _add_force(p)
    add_trust(p)

    for name, help_text in (("generate", "generate an answer with a finished causal-LM run"),
                            ("chat", "chat with a finished causal-LM run (empty line or Ctrl-D ends)")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("run_dir")
        if name == "generate":
            p.add_argument("--prompt", required=True, help="the user message")
        p.add_argument("--system", help="a system message before the conversation")
        for flag, field in GENERATION_FLAGS.items():
            _add_config_flag(p, flag, GenerationConfig, field, "generation")
        p.add_argument("--greedy", action="store_true", help="always take the likeliest token")
        p.add_argument("--seed", type=int, default=None, help="seed for sampling")
        add_trust(p)

    p = sub.add_parser("compress", help="compress a finished run: prune, quantise (a run directory per step)")
    p.add_argument("run_dir")
    p.add_argument("compress_file", metavar="COMPRESS_YAML",
                   help="the steps, as a recipe's compress: section (steps:, output_dir:, ...)")
    p.add_argument("--overwrite", action="store_true",
                   help="reuse the output folder; the previous one is moved to a .bak folder")
    add_set(p)
    add_trust(p)

    p = sub.add_parser("merge", help="merge a run's adapter into its base: a plain Hugging Face model")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="new folder for the merged model")
    add_trust(p)
    add_data_commands(sub)  # tailor data inspect | clean | augment (cli_data.py)
    add_study_commands(sub)  # tailor study | report (cli_study.py)
    add_export_commands(sub)  # tailor export | serve (cli_export.py)
    return parser


def _cmd_recipe(args) -> None:
    if args.recipe_command == "schema":
        print(reference_markdown())
        return
    recipe = load_recipe(args.recipe, args.overrides)
    print(dump_recipe(recipe, full=args.full), end="")
    left_out = "" if args.full else "; the fields of other tasks are left out (--full shows them)"
    print(f"# {args.recipe}: valid{left_out}", file=sys.stderr)
    if args.estimate:
        print(estimate_recipe(recipe), file=sys.stderr)


def _cmd_methods(args) -> None:
    for name, cls in sorted(METHODS.items()):
        print(f"{name}: {cls.summary}")
        for field, info in cls.Config.model_fields.items():
            default = ("(required)" if info.is_required()
                       else _yaml_value(info.get_default(call_default_factory=True)))
            print(f"    {field} = {default}  {info.description or ''}".rstrip())


def _yaml_value(value) -> str:
    """A default as a recipe writes it: null, true, [a, b], {}."""
    text = yaml.safe_dump(to_jsonable_python(value), default_flow_style=True, width=1_000_000)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _cmd_eval(args) -> None:
    metrics = api.evaluate(args.run_dir, args.data, args.output, args.text_column, args.text_pair_column,
                           args.label_column, image_column=args.image_column, force=args.force,
                           trust_remote_code=args.trust_remote_code)
    print(json.dumps(metrics, indent=2))


def _cmd_predict(args) -> None:
    if args.text_pair and not args.text:
        raise TailorError("predict: --text-pair goes with --text (one per --text); with --input the "
                          "second texts come from the recipe's text_pair_column (or --text-pair-column)")
    if (args.text_column or args.text_pair_column) and not args.input:
        raise TailorError("predict: --text-column and --text-pair-column name columns of --input")
    if args.output:  # before any model loads
        check_output_file(args.output, {"--input": args.input}, args.force)
    if args.image:
        frame = api.predict_images(args.run_dir[0], args.image, trust_remote_code=args.trust_remote_code)
        _show(frame, args, ["image", "prediction", "confidence"])
        return
    run_dir = _chosen_run(args.run_dir, args.adapter)
    recipe = api.run_recipe(run_dir)
    check_text_predictions(recipe, run_dir)  # before --input is read
    data = recipe.data
    pairs = None
    if args.text:
        texts, pairs = args.text, _text_pairs(run_dir, data.text_pair_column, args.text, args.text_pair)
    else:
        table = read_table(args.input, "--input")
        if isinstance(table, dict):
            raise TailorError(f"--input {args.input}: a folder of several splits; give one table")
        if args.text_pair_column and not data.text_pair_column:
            raise TailorError(f"predict: {run_dir} was not trained on text pairs; drop --text-pair-column")
        texts = _input_column(args.input, table, args.text_column or data.text_column, "--text-column")
        if data.text_pair_column:  # a pair task needs its second text too
            pairs = _input_column(args.input, table, args.text_pair_column or data.text_pair_column,
                                  "--text-pair-column")
    frame = api.predict(run_dir, texts, pairs, trust_remote_code=args.trust_remote_code)
    _show(frame, args, ["text", "text_pair", "prediction", "confidence"])


def _input_column(path: str, table, column: str, flag: str) -> list[str]:
    if column not in table.columns:
        names = ", ".join(map(str, table.columns))
        raise TailorError(f"--input {path}: no column '{column}' (columns: {names}); "
                          f"name the right one with {flag}")
    if not len(table):
        raise TailorError(f"--input {path}: has no rows")
    return column_texts(f"--input {path}", table, column)


def _text_pairs(run_dir: str, column: str | None, texts: list[str], pairs: list[str] | None
                ) -> list[str] | None:
    """The --text-pair values, checked against the run: a pair run needs one per --text."""
    if column and not pairs:
        raise TailorError(f"predict: {run_dir} was trained on text pairs (data.text_pair_column: {column}); "
                          "give the second text of each pair with --text-pair, one per --text "
                          f"(--text A --text-pair B), or use --input with a '{column}' column")
    if pairs and not column:
        raise TailorError(f"predict: {run_dir} was not trained on text pairs; drop --text-pair")
    if pairs and len(pairs) != len(texts):
        raise TailorError(f"predict: {len(texts)} --text but {len(pairs)} --text-pair; give one "
                          "--text-pair per --text, in the same order")
    return pairs


def _show(frame, args, columns: list[str]) -> None:
    """Write the predictions to --output, or print the main columns."""
    if args.output:  # checked by _cmd_predict: a new file, or --force
        write_csv(frame, args.output)
        print(f"wrote {len(frame)} predictions to {args.output}")
    else:
        cols = [c for c in columns if c in frame]
        print(frame[cols].to_string(index=False, max_colwidth=60))


def _chosen_run(run_dirs: list[str], adapter: str | None) -> str:
    """The run that predicts: the only one, or the one --adapter names (after its folder)."""
    if len(run_dirs) == 1 and adapter is None:
        return run_dirs[0]
    names = {Path(d).name: d for d in run_dirs}
    if len(names) != len(run_dirs):
        raise TailorError("predict: run folders must have different names; they name the adapters")
    if adapter is None:
        raise TailorError(f"predict: several runs given; choose one with --adapter ({', '.join(names)})")
    if adapter not in names:
        raise TailorError(f"predict: --adapter {adapter} is not one of {', '.join(names)}")
    return names[adapter]


def _cmd_compress(args) -> None:
    cfg = load_compress_file(args.compress_file, args.overrides)
    for run_dir in api.compress(args.run_dir, cfg, overwrite=args.overwrite,
                                trust_remote_code=args.trust_remote_code):
        print(_compressed_line(run_dir))


def _compressed_line(run_dir: Path) -> str:
    s = json.loads((run_dir / "summary.json").read_text())
    task = TASKS[s["task"]]
    test = "  ".join(f"{k}={s['test'][k]:.4f}" for k in task.headline[:2])
    speed = "  ".join(f"batch {b}: {ms:.1f} ms ({s['speedup'][b]:.2f}x)" for b, ms in s["latency_ms"].items())
    return f"{run_dir}: {test}  {s['weights_mb']} MB (was {s['source']['weights_mb']})  {speed}"


def _cmd_merge(args) -> None:
    out = api.merge(args.run_dir, args.out, trust_remote_code=args.trust_remote_code)
    task = TASKS[api.run_recipe(args.run_dir).task]
    loads = (f"load it with {task.auto_class}.from_pretrained, or " if (Path(out) / "config.json").is_file()
             else "")  # a catalogue network (MobileNetV2) is not a transformers model
    print(f"merged model written to {out}; {loads}use the folder as a run: tailor predict {out} ...")


def _answer(handle, messages: list[dict], args) -> str:
    return generate(handle, messages, args.max_new_tokens, args.temperature, args.top_p, args.greedy,
                    args.seed)


def _check_generation_flags(args) -> None:
    """The generation flags given, checked as the recipe's generation section checks them."""
    given = {field: getattr(args, field) for field in GENERATION_FLAGS.values()
             if getattr(args, field) is not None}
    try:
        GenerationConfig(**given)
    except ValidationError as err:
        flags = {field: flag for flag, field in GENERATION_FLAGS.items()}
        problems = [f"{flags[e['loc'][0]]} {given[e['loc'][0]]}: {e['msg'].lower()}" for e in err.errors()]
        greedy = "; for the likeliest token use --greedy" if given.get("temperature") == 0 else ""
        raise TailorError("; ".join(problems) + greedy) from None


def _start(args) -> tuple[object, list[dict]]:
    """The run's model, and the generation flags not given filled from its recipe."""
    _check_generation_flags(args)
    recipe, handle = api.load_generator(args.run_dir, trust_remote_code=args.trust_remote_code)
    for field in GENERATION_FLAGS.values():
        if getattr(args, field) is None:
            setattr(args, field, getattr(recipe.generation, field))
    return handle, ([{"role": "system", "content": args.system}] if args.system else [])


def _cmd_generate(args) -> None:
    handle, messages = _start(args)
    print(_answer(handle, [*messages, {"role": "user", "content": args.prompt}], args))


def _cmd_chat(args) -> None:
    handle, messages = _start(args)
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if not text:
            break
        messages.append({"role": "user", "content": text})
        reply = _answer(handle, messages, args)
        messages.append({"role": "assistant", "content": reply})
        print(f"model> {reply}")


COMMANDS = {**TRAIN_COMMANDS, "recipe": _cmd_recipe, "methods": _cmd_methods,
            "eval": _cmd_eval, "predict": _cmd_predict, "merge": _cmd_merge, "compress": _cmd_compress,
            "generate": _cmd_generate, "chat": _cmd_chat, "data": cmd_data, **STUDY_COMMANDS,
            **EXPORT_COMMANDS}


_format_warning = warnings.formatwarning


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A recipe field's deprecation (config: FutureWarning) reads as the project's other
    warnings, on one line; library warnings keep Python's format."""
    if issubclass(category, FutureWarning) and str(message).startswith("train."):
        return f"warning: {message}\n"
    return _format_warning(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
        sys.stdout.flush()  # a reader that went away (`| head`) shows here, inside the try
    except TailorError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # commands with something to resume say how; the others just stop
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Exit quietly, as shell tools do; what is still buffered goes to /dev/null, so the
        # interpreter's last flush raises nothing either.
        with contextlib.suppress(OSError, ValueError):  # a stdout without a file (tests)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
