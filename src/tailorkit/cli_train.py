"""`tailor train` (one process, or N through torchrun) and `tailor tune`: the commands that run
recipes."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
from pathlib import Path

from tailorkit import api
from tailorkit.cli_flags import add_set
from tailorkit.config.recipe import Recipe
from tailorkit.errors import TailorError
from tailorkit.evaluate.evaluator import metric_line
from tailorkit.pipeline.run_dir import PROGRESS
from tailorkit.recipe import load_recipe, locate_field_error
from tailorkit.search.worker import StudyInterrupted
from tailorkit.tasks import TASKS
from tailorkit.train import distributed
from tailorkit.train.checkpoint import find_checkpoint
from tailorkit.train.loop import Interrupted


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    """The `train` and `tune` commands, on `tailor`'s subparsers."""
    p = sub.add_parser("train", help="train from a recipe, or resume a run")
    p.add_argument("recipe", nargs="?", help="recipe YAML file")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true",
                   help="reuse output_dir; the previous run is moved to a .bak folder")
    p.add_argument("--allow-data-change", action="store_true",
                   help="with --resume: continue although the data files now read differently")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel training on N processes of this machine, through torchrun "
                        "(each batch is split over them; default 1)")
    add_set(p)

    p = sub.add_parser("tune", help="hyperparameter search: run or resume the recipe's search: block")
    p.add_argument("recipe", nargs="?", help="recipe YAML file with a search: block")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="trial processes in parallel on the study's storage (default 1)")
    p.add_argument("--status", metavar="STUDY_DIR", help="print the progress of a study and exit")
    add_set(p)


def _cmd_train(args) -> None:
    if args.nproc != 1:
        _launch_train(args)
        return
    try:
        _train(args)
    finally:
        distributed.close()


def _launch_train(args) -> None:
    """`--nproc N`: this same command on N processes, started by torchrun."""
    if args.nproc < 1:
        raise TailorError(f"train --nproc: give 1 or more processes, got {args.nproc}")
    if distributed.world().size > 1:
        raise TailorError("train --nproc starts processes through torchrun; under torchrun (or "
                          "accelerate launch) already, leave --nproc out")
    argv = ["train", *([args.recipe] if args.recipe else ["--resume", args.resume])]
    argv += ["--overwrite"] * args.overwrite + ["--allow-data-change"] * args.allow_data_change
    for override in args.overrides:
        argv += ["--set", override]
    code = distributed.launch(args.nproc, argv)
    if code:
        raise SystemExit(code)


def _train(args) -> None:
    main = distributed.world().main  # under torchrun only rank 0 talks
    if bool(args.recipe) == bool(args.resume):
        raise TailorError("train: give a recipe file or --resume RUN_DIR (one of them)")
    if args.resume and (args.overrides or args.overwrite):
        raise TailorError("train --resume continues a run exactly as it was recorded; --set and "
                          "--overwrite do not apply (edit nothing, or start a new run)")
    if args.allow_data_change and not args.resume:
        raise TailorError("train: --allow-data-change goes with --resume RUN_DIR")
    try:
        if args.resume:
            run_dir = api.resume(args.resume, allow_data_change=args.allow_data_change)
        else:
            recipe = load_recipe(args.recipe, args.overrides)
            with _errors_located(recipe, args.recipe, args.overrides):
                run_dir = api.train(recipe, overwrite=args.overwrite)
    except Interrupted as stop:
        target = args.resume or load_recipe(args.recipe, args.overrides).output_dir
        size = distributed.world().size  # resumed on as many processes, it draws the same masks
        if main:
            again = f"tailor train --resume {target}" + (f" --nproc {size}" if size > 1 else "")
            print(f"\ninterrupted at step {stop.step}: checkpoint saved; continue with: {again}",
                  file=sys.stderr)
        raise SystemExit(130) from None
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        target = args.resume or load_recipe(args.recipe, args.overrides).output_dir
        kept = find_checkpoint(Path(target)) is not None or (Path(target) / PROGRESS).is_file()
        print("\ninterrupted: " + (f"continue from the last checkpoint with: tailor train --resume {target}"
                                   if kept else "nothing to resume; nothing was kept"), file=sys.stderr)
        raise SystemExit(130) from None
    if main:
        _print_summary(run_dir)


def _cmd_tune(args) -> None:
    if bool(args.recipe) == bool(args.status):
        raise TailorError("tune: give a recipe file or --status STUDY_DIR (one of them)")
    if args.status:
        if args.overrides or args.workers != 1:
            raise TailorError("tune --status only reads a study; --set and --workers do not apply")
        print(api.tune_status(args.status))
        return
    recipe = load_recipe(args.recipe, args.overrides)
    try:
        with _errors_located(recipe, args.recipe, args.overrides):
            study_dir = api.tune(recipe, workers=args.workers)
    except (StudyInterrupted, KeyboardInterrupt):  # the latter: Ctrl-C while the report was written
        again = shlex.join(["tailor", "tune", args.recipe, *(f for o in args.overrides for f in ("--set", o)),
                            *(["--workers", str(args.workers)] if args.workers != 1 else [])])
        print(f"\ninterrupted: finished trials are kept; resume with: {again}", file=sys.stderr)
        raise SystemExit(130) from None
    print(api.tune_status(study_dir))
    best = "front recipes" if recipe.search.multi else "best recipe"
    recipes = study_dir / ("front" if recipe.search.multi else "best_recipe.yaml")
    print(f"{best}: {recipes}  report: {study_dir / 'report.md'}")


@contextlib.contextmanager
def _errors_located(recipe: Recipe, recipe_path: str, overrides: list[str]):
    """A recipe field found wrong while it ran (a model folder that is not there) names the recipe
    file, or the --set, as a field wrong in the schema does."""
    try:
        yield
    except TailorError as err:
        raise TailorError(locate_field_error(str(err), recipe, recipe_path, overrides)) from None


def _print_summary(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    test = summary["test"]
    keys = TASKS[summary["task"]].headline
    print(f"run: {run_dir}")
    print("test: " + metric_line(test, keys))
    print("validation (kept weights): " + metric_line(summary["validation"], keys))
    trivial = summary.get("baseline")
    if trivial:
        print(f"baseline ({trivial['rule']}), test: " + metric_line(trivial["test"], keys))
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    p = summary["parameters"]
    print(f"trainable {p['trainable']:,} / {p['total']:,} ({p['trainable_pct']:.2f}%)  "
          f"{summary['samples_per_second'] or '-'} samples/s  train {summary['train_seconds']} s  "
          f"peak RSS {summary['peak_rss_mb']} MB")


TRAIN_COMMANDS = {"train": _cmd_train, "tune": _cmd_tune}
