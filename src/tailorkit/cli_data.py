"""`tailor data inspect | clean | augment`: look at a table and fix it before training. Each reads
a file (or a catalogue dataset) and writes only new files; the flags of clean and augment are the
fields of `data.clean` and `data.augment` (config/quality.py), with the same defaults."""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from html import escape
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ValidationError

from tailorkit.cli_data_chat import clean_instruction_file
from tailorkit.config.base import format_validation_error
from tailorkit.config.data import ChatColumns, DataConfig
from tailorkit.config.model import ModelConfig
from tailorkit.config.quality import AugmentConfig, CleanConfig
from tailorkit.data.augment.augment import augment_frame
from tailorkit.data.augment.synonyms import synonym_source
from tailorkit.data.cleaning.changes import count_lines, write_changes
from tailorkit.data.cleaning.clean import TableColumns, clean_frames
from tailorkit.data.cleaning.encoder_features import Encoder
from tailorkit.data.inspection import CLASS_LIMIT, inspect_table, labels_are_classes
from tailorkit.data.inspection_chat import render_report, render_text
from tailorkit.data.inspection_render import html_report, text_report
from tailorkit.data.prepare import class_names
from tailorkit.data.tables import read_table, write_csv
from tailorkit.errors import TailorError
from tailorkit.inference import check_output_file
from tailorkit.sources import DATASETS, load_catalogue_dataset, resolve_model


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    """The `data` command and its subcommands, on `tailor`'s subparsers."""
    p = sub.add_parser("data", help="inspect, clean or augment a data table (writes new files only)")
    dsub = p.add_subparsers(dest="data_command", required=True)

    i = dsub.add_parser("inspect", help="size, classes, lengths, garbled rows, duplicates, label "
                                        "conflicts, train/test overlap")
    _add_input(i)
    i.add_argument("--test", help="a test table: report its overlap with DATA (leakage)")
    i.add_argument("--model", help="count tokens with this model's tokenizer (catalogue name or folder)")
    i.add_argument("--max-length", type=int, default=ModelConfig.model_fields["max_length"].default,
                   help="with --model: report the share of rows longer than this (default %(default)s)")
    i.add_argument("--near", type=float, default=0.9, metavar="JACCARD",
                   help="near-duplicate threshold, 0 turns the search off (default %(default)s)")
    i.add_argument("--label-errors", choices=typing.get_args(CleanConfig.model_fields["label_error_features"]
                                                             .annotation),
                   help="also search likely label errors (cleanlab, as data clean does) with out-of-fold "
                        "logistic regression on TF-IDF, or on the encoder features of --model")
    i.add_argument("--json", help="also write the report as JSON to this new file")
    i.add_argument("--html", help="also write the report as an HTML page to this new file")
    i.add_argument("--force", action="store_true", help="replace existing --json/--html files")
    i.add_argument("--render", type=int, metavar="N",
                   help="instruction data (causal LMs): show the first N examples as the model sees them "
                        "(needs --model), supervised tokens marked, with warnings about the set-up")
    i.add_argument("--template", help="with --render: the chat template (chatml, alpaca, plain or Jinja "
                                      "text), as data.template; default: the tokenizer's own")
    formats = typing.get_args(DataConfig.model_fields["format"].annotation)
    i.add_argument("--format", default="auto", choices=formats,
                   help="with --render: the instruction format, as data.format (default %(default)s)")

    c = dsub.add_parser("clean", help="write a cleaned copy of DATA and a per-row record of changes")
    _add_input(c)
    c.add_argument("--test", help="a test table: rows of DATA found in it are removed (leakage)")
    _add_output(c)
    c.add_argument("--model", help="with --label-error-features encoder: the encoder whose mean-pooled "
                                   "features the label-error search reads (catalogue name or folder)")
    c.add_argument("--max-length", type=int, default=ModelConfig.model_fields["max_length"].default,
                   help="with --model: tokens of each row the encoder reads (default %(default)s)")
    _add_config_flags(c, CleanConfig, skip={"splits", "label_error_model"})
    c.add_argument("--format", choices=formats, help="DATA is instruction data (causal LMs) in this format "
                   "(auto: from its columns): every text repaired with its line breaks kept, whole examples "
                   "compared; an --output ending .jsonl keeps lists of turns as lists")

    a = dsub.add_parser("augment", help="write DATA plus EDA-edited copies of its rows, each recorded")
    _add_input(a)
    _add_output(a)
    a.add_argument("--model", help="synonyms from this model's embeddings (with --synonyms embeddings, or "
                                   "auto without WordNet)")
    a.add_argument("--back-translate", nargs=2, metavar=("FORWARD", "BACKWARD"),
                   help="also add a back-translated copy of each row: two local seq2seq model folders, "
                        "to a pivot language and back (e.g. MarianMT en-de and de-en)")
    a.add_argument("--paraphrase", metavar="MODEL",
                   help="also add a paraphrase of each row written by this local chat model (catalogue name "
                        "or folder, e.g. smollm2-135m); with labels, those a TF-IDF model labels otherwise "
                        "are rejected")
    _add_config_flags(a, AugmentConfig, skip={"back_translation", "paraphrase"})


def _add_input(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA",
                   help=f"CSV/TSV/JSONL/Parquet file, or a catalogue dataset ({', '.join(DATASETS)})")
    p.add_argument("--text-column", default="text", metavar="COL", help="default: text")
    p.add_argument("--label-column", default="label", metavar="COL",
                   help="default: label; a table without it is read as unlabelled text")
    p.add_argument("--encoding", default="utf-8", help="text encoding of CSV/TSV/JSON files (default utf-8; "
                   "auto detects it)")
    p.add_argument("--labels", choices=("auto", "classes", "numbers"), default="auto",
                   help=f"read the labels as classes or as numeric targets (default auto: numbers when "
                        f"every label is one and there are more than {CLASS_LIMIT} distinct ones)")


def _add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, help="the new table (CSV); the record of changes goes "
                                                   "beside it as <name>.changes.csv")
    p.add_argument("--force", action="store_true", help="replace existing output files")


def _add_config_flags(p: argparse.ArgumentParser, model: type[BaseModel], skip: set[str]) -> None:
    """One flag per field of `model`: its description is the help, its default the config's."""
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        kind = _scalar(info.annotation)
        default = info.get_default(call_default_factory=True)
        text = f"{info.description} (default: {default})"
        if kind is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif typing.get_origin(info.annotation) is list:
            choices = typing.get_args(typing.get_args(info.annotation)[0])
            p.add_argument(flag, dest=name, nargs="+", choices=choices, default=None, help=text)
        elif typing.get_origin(kind) is typing.Literal:
            p.add_argument(flag, dest=name, choices=typing.get_args(kind), default=None, help=text)
        else:
            p.add_argument(flag, dest=name, type=kind, default=None, help=text)


def _scalar(annotation):
    """`float | None` -> float; other annotations as they are."""
    if isinstance(annotation, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _config(args, model: type[BaseModel]):
    given = {name: getattr(args, name) for name in model.model_fields
             if getattr(args, name, None) is not None}
    try:
        return model(**given)
    except ValidationError as err:  # the recipe's field names, as this command's flags
        lines = []
        for line in format_validation_error(err, None, model).splitlines():
            line = line.removeprefix(": ")  # a problem of the whole section, not of one field
            for name in model.model_fields:
                flag = "--back-translate" if name == "back_translation" else "--" + name.replace("_", "-")
                line = re.sub(rf"\b{name}\b", flag, line)
            lines.append(line)
        raise TailorError("; ".join(lines)) from None


def _read(args, flag: str = "DATA", path: str | None = None) -> tuple[str, pd.DataFrame]:
    """(source name, table) of DATA (a file, else a catalogue name) or of `path`."""
    path = path or args.data
    if not Path(path).exists() and path in DATASETS:
        return path, load_catalogue_dataset(path).reset_index(drop=True)
    if not Path(path).exists():
        raise TailorError(f"{flag}: {path}: no such file, and not a catalogue dataset "
                          f"({', '.join(DATASETS)})")
    table = read_table(path, flag, args.encoding, "--encoding")
    if isinstance(table, dict):
        raise TailorError(f"{flag}: {path} holds several splits ({', '.join(table)}); give one table")
    return path, table.reset_index(drop=True)


def _columns(source: str, frame: pd.DataFrame, args) -> TableColumns:
    if args.text_column not in frame.columns:
        raise TailorError(f"{source}: no column '{args.text_column}' (columns: "
                          f"{', '.join(map(str, frame.columns))}); name the text column with --text-column")
    label = args.label_column if args.label_column in frame.columns else None
    return TableColumns(args.text_column, label)


def _is_classes(frame: pd.DataFrame, columns: TableColumns, labels: str = "auto") -> bool:
    """Whether the labels are classes: --labels says, else guessed from the column."""
    if columns.label is None:
        return False
    numeric = pd.to_numeric(frame[columns.label], errors="coerce")
    words = numeric.isna() & frame[columns.label].notna()  # missing labels are reported as such
    if labels == "numbers" and words.any():
        row = int(words.to_numpy().argmax()) + 1
        raise TailorError(f"--labels numbers: column '{columns.label}' row {row} holds "
                          f"{frame[columns.label].iloc[row - 1]!r}, not a number")
    if labels != "auto":
        return labels == "classes"
    return labels_are_classes(frame[columns.label])


def _as_classes(source: str, frame: pd.DataFrame, columns: TableColumns, classes: bool) -> pd.DataFrame:
    """Class labels as training reads them (5.0 and "5.0" are 5), so that clean and augment
    compare and write the labels training will see."""
    if not classes:
        return frame
    return frame.assign(**{columns.label: class_names(source, frame[columns.label])})


def _cmd_inspect(args) -> None:
    for flag in ("json", "html"):
        if getattr(args, flag):
            check_output_file(getattr(args, flag), {"DATA": args.data, "--test": args.test}, args.force,
                              f"--{flag}")
    if args.render is not None:
        _cmd_render(args)
        return
    if args.label_errors == "encoder" and not args.model:
        raise TailorError("--label-errors encoder needs --model: the encoder whose features are read "
                          "(e.g. minilm-l6)")
    encoder = Encoder(args.model, "--model", args.max_length) if args.label_errors == "encoder" else None
    source, frame = _read(args)
    columns = _columns(source, frame, args)
    classes = _is_classes(frame, columns, args.labels)
    if args.label_errors and not classes:
        raise TailorError(f"--label-errors: {source} has no class labels (column '{args.label_column}' "
                          "is missing or holds regression targets)")
    test_source, test = _read(args, "--test", args.test) if args.test else (None, None)
    if test is not None:
        _columns(test_source, test, args)
    tokenizer = None
    if args.model:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolve_model(args.model))
    report = inspect_table(frame, source, columns, test, test_source, tokenizer, args.model,
                           args.max_length if args.model else None, args.near or None,
                           args.label_errors, encoder, classes)
    print(text_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.html:
        Path(args.html).write_text(html_report(report), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)


def _cmd_render(args) -> None:
    """`inspect --render N`: instruction data through the training path, supervised tokens marked."""
    from transformers import AutoTokenizer

    if args.render < 1:
        raise TailorError(f"--render: {args.render}: give the number of examples to show (1 or more)")
    if not args.model:
        raise TailorError("--render needs --model: the causal LM whose tokenizer and chat template "
                          "render the examples (catalogue name or folder)")
    source, frame = _read(args)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(args.model))
    report = render_report(frame, source, tokenizer, args.template, args.format, ChatColumns(),
                           args.max_length, args.render)
    print(render_text(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.html:
        page = (f"<!doctype html><meta charset='utf-8'><title>{escape(source)}</title>"
                f"<pre>{escape(render_text(report))}</pre>")
        Path(args.html).write_text(page, encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)


def _changes_path(output: str) -> Path:
    out = Path(output)
    return out.with_name(out.stem + ".changes.csv")


def _check_outputs(args, inputs: dict[str, str | None]) -> None:
    check_output_file(args.output, inputs, args.force)
    changes = _changes_path(args.output)
    if changes.exists() and not args.force:
        raise TailorError(f"{changes} already exists; choose another --output, or pass --force")


def _cmd_clean(args) -> None:
    cfg = _config(args, CleanConfig)
    encoder = _encoder(args, cfg)
    _check_outputs(args, {"DATA": args.data, "--test": args.test})
    source, frame = _read(args)
    if args.format is not None:  # instruction data
        test = _read(args, "--test", args.test)[1] if args.test else None
        clean_instruction_file(frame, test, cfg, args.format, args.output, _changes_path(args.output))
        return
    columns = _columns(source, frame, args)
    classes = _is_classes(frame, columns, args.labels)
    frames = {"train": _as_classes(source, frame, columns, classes)}
    if args.test:
        test_source, test = _read(args, "--test", args.test)
        _columns(test_source, test, args)
        frames["test"] = _as_classes(test_source, test, columns, classes)
    cleaned = clean_frames(frames, cfg.model_copy(update={"splits": ["train"]}), columns,
                           numeric=not classes, encoder=encoder)
    write_csv(cleaned.frames["train"], args.output)
    write_changes(cleaned.changes, _changes_path(args.output))
    for line in count_lines(cleaned.changes) + cleaned.notes:
        print(line.removeprefix("train "))
    print(f"wrote {len(cleaned.frames['train']):,} of {len(frame):,} rows to {args.output}; "
          f"changes: {_changes_path(args.output)}")


def _encoder(args, cfg: CleanConfig) -> Encoder | None:
    if cfg.label_error_features != "encoder":
        if args.model:
            raise TailorError("--model is read only with --label-error-features encoder")
        return None
    if not args.model:
        raise TailorError("--label-error-features encoder needs --model: the encoder whose features "
                          "are read (e.g. minilm-l6)")
    if args.max_length < 1:
        raise TailorError(f"--max-length: {args.max_length}: give 1 or more tokens")
    return Encoder(args.model, "--model", args.max_length)


AUGMENT_FLAGS = {"data.augment.back_translation.forward": "--back-translate (forward model)",
                 "data.augment.back_translation.backward": "--back-translate (backward model)",
                 "data.augment.paraphrase.model": "--paraphrase"}


def _cmd_augment(args) -> None:
    if args.back_translate:
        args.back_translation = dict(zip(("forward", "backward"), args.back_translate, strict=True))
    if args.paraphrase:
        args.paraphrase = {"model": args.paraphrase}
    cfg = _config(args, AugmentConfig)
    _check_outputs(args, {"DATA": args.data})
    source, frame = _read(args)
    columns = _columns(source, frame, args)
    classes = _is_classes(frame, columns, args.labels)
    if (cfg.balance or cfg.max_per_class is not None) and not classes:
        raise TailorError(f"--balance and --max-per-class even out classes, and {source} has none (its "
                          "labels read as numbers or are missing; --labels classes reads them as classes)")
    frame = _as_classes(source, frame, columns, classes)
    synonyms = synonym_source(cfg, resolve_model(args.model) if args.model else None)
    try:
        out, added = augment_frame(frame, cfg, columns.text, columns.label, classes, synonyms)
    except TailorError as err:  # the models' messages name the recipe's fields: say the flags
        message = str(err)
        for field, flag in AUGMENT_FLAGS.items():
            message = message.replace(field, flag)
        raise TailorError(message) from None
    write_csv(out, args.output)
    write_changes(added, _changes_path(args.output))
    for line in count_lines(added):
        print(line.removeprefix("train "))
    print(f"wrote {len(out):,} rows ({len(out) - len(frame):,} new) to {args.output}; "
          f"changes: {_changes_path(args.output)}")


SUBCOMMANDS = {"inspect": _cmd_inspect, "clean": _cmd_clean, "augment": _cmd_augment}


def cmd_data(args) -> None:
    SUBCOMMANDS[args.data_command](args)
