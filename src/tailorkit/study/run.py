"""Run a study: every planned run in turn through the normal pipeline (`tailorkit.pipeline`).

A finished run (its summary.json written) is never run again, so re-running the study resumes
it; a run stopped inside training continues from its checkpoint. A run that fails is recorded
in status.json with its error and the study goes on; the next re-run tries it again."""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
import traceback
from pathlib import Path

from tailorkit.config.recipe import Recipe
from tailorkit.config.study import StudyConfig
from tailorkit.errors import TailorError
from tailorkit.pipeline import resume, train
from tailorkit.pipeline.run_dir import PROGRESS, SUMMARY, write_json_atomically
from tailorkit.study.plan import RUNS, PlannedRun, claim_study_dir, plan_runs, planned_keys, read_plan
from tailorkit.study.results import Entry, row
from tailorkit.study.tables import csv_table, markdown_table, text_table
from tailorkit.tasks import task_of
from tailorkit.train.checkpoint import find_checkpoint

STATUS = "status.json"


def read_status(study_dir: Path) -> dict:
    path = study_dir / STATUS
    return json.loads(path.read_text()) if path.is_file() else {}


def run_study(cfg: StudyConfig, source: str = "study", log=print) -> Path:
    """Run what is not finished yet; return the study directory."""
    planned = plan_runs(cfg, source)  # every variant checked before the first one trains
    if cfg.metric is None:
        cfg = cfg.model_copy(update={"metric": task_of(planned[0].recipe).headline[0]})
    study_dir = claim_study_dir(cfg)
    status = read_status(study_dir)
    for n, run in enumerate(planned, 1):
        run_dir = study_dir / RUNS / run.key
        if (run_dir / SUMMARY).is_file():
            log(f"[{n}/{len(planned)}] {run.key}: finished earlier, kept")
            status[run.key] = {**status.get(run.key, {}), "variant": run.variant, "seed": run.seed,
                               "status": "done"}
            continue
        log(f"[{n}/{len(planned)}] {run.key}: training")
        started = time.time()
        try:
            _train(run, run_dir, cfg.isolate)
            status[run.key] = {"variant": run.variant, "seed": run.seed, "status": "done",
                               "seconds": round(time.time() - started, 2)}
        except Exception as err:  # noqa: BLE001 - a failed variant is recorded, the rest still run
            error = str(err) if isinstance(err, TailorError) else f"{type(err).__name__}: {err}".strip()
            log(f"[{n}/{len(planned)}] {run.key}: FAILED: {error.splitlines()[0]}")
            # a bug's traceback, from this process or the run's own; a TailorError says it all
            where = getattr(err, "child_traceback", None) or (
                None if isinstance(err, TailorError) else traceback.format_exc(limit=8))
            status[run.key] = {"variant": run.variant, "seed": run.seed, "status": "failed",
                               "error": error, **({"traceback": where} if where else {}),
                               "seconds": round(time.time() - started, 2)}
        write_json_atomically(study_dir / STATUS, status)
    write_json_atomically(study_dir / STATUS, status)
    failed = [k for k, s in status.items() if s["status"] == "failed"]
    if failed:
        print(f"warning: {len(failed)} run(s) failed: {', '.join(failed)} (errors in {study_dir / STATUS}; "
              "re-run the study to retry them)", file=sys.stderr)
    return study_dir


def _train(run: PlannedRun, run_dir: Path, isolate: bool) -> None:
    """The run in a process of its own (`isolate`: its peak memory is its own, and a crash
    of it is only its failure), or in this one."""
    if not isolate:
        _train_here(run.recipe.model_dump(mode="json"), str(run_dir))
        return
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or peak inherited
    errors = ctx.Queue()
    child = ctx.Process(target=_child, args=(run.recipe.model_dump(mode="json"), str(run_dir), errors))
    child.start()
    child.join()
    if child.exitcode != 0:
        error, where = errors.get(timeout=5) if not errors.empty() else (None, None)
        failed = TailorError(error or f"the run's process exited with code {child.exitcode}")
        failed.child_traceback = where
        raise failed


def _child(recipe: dict, run_dir: str, errors) -> None:
    try:
        _train_here(recipe, run_dir)
    except BaseException as err:  # (message, traceback or None): a TailorError needs no traceback
        expected = isinstance(err, TailorError)
        errors.put((str(err) if expected else f"{type(err).__name__}: {err}",
                    None if expected else traceback.format_exc(limit=8)[:8000]))
        errors.close()
        errors.join_thread()
        sys.exit(1)


def _train_here(recipe: dict, run_dir: str) -> None:
    """Continue a run stopped inside training; otherwise start it afresh (an earlier failed
    attempt is moved aside by --overwrite, never deleted)."""
    path = Path(run_dir)
    if find_checkpoint(path) is not None or (path / PROGRESS).is_file():
        resume(path)
    else:
        train(Recipe.model_validate(recipe), overwrite=path.exists())


def study_entries(study_dir: Path) -> list[Entry]:
    """One entry per variant of the study in `study_dir`, with its runs and recorded errors."""
    cfg = read_plan(study_dir)
    status = read_status(study_dir)
    entries = {v.name: Entry(v.name) for v in cfg.variants}
    planned = planned_keys(cfg)
    for key, s in status.items():
        if s["variant"] not in entries or key not in planned:
            continue
        if s["status"] == "failed":
            entries[s["variant"]].errors.append(s["error"])
        else:
            entries[s["variant"]].run_dirs.append(study_dir / RUNS / key)
    return list(entries.values())


def write_tables(study_dir: Path, measure_latency: bool = True) -> str:
    """results.md and results.csv in the study directory; the terminal table is returned."""
    metric = read_plan(study_dir).metric
    rows = [row(e, metric, measure_latency) for e in study_entries(study_dir)]
    (study_dir / "results.md").write_text(markdown_table(rows, metric) + "\n")
    (study_dir / "results.csv").write_text(csv_table(rows, metric))
    return text_table(rows, metric)
