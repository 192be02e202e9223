"""What a study leaves behind, and `tailor tune --status`.

The report is rebuilt from the storage alone, so it is the same whichever worker, machine
or re-run writes it:
  trials.csv         one row per trial: state, metric (or each objective), steps, seconds,
                     parameters, run dir; with objectives, whether it is on the Pareto front
  best_recipe.yaml   a standalone recipe that re-trains the best trial
  front/NNNN.yaml    with objectives: one such recipe per trial of the Pareto front
  importances.json   parameter importances (Optuna's fANOVA) over the complete trials
  plots/*.png        optimisation history, learning curves, parallel coordinates, slices,
                     importances (Optuna's matplotlib plots)
  study.json         counts, best trial, total training steps, files
  report.md          all of the above on one page
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from tailorkit.config.search import COSTS
from tailorkit.data.tables import write_csv
from tailorkit.errors import TailorError
from tailorkit.recipe import dump_recipe, recipe_from_dict
from tailorkit.search.objective import trial_recipe
from tailorkit.search.study import (
    DB,
    describe_storage,
    is_dead,
    open_study,
    read_study_recipe,
    storage_url,
    study_name,
)
from tailorkit.search.worker import counts_toward_budget, grid_size, show_value

TABLE, BEST, IMPORTANCES, SUMMARY, PAGE, PLOTS, FRONT = (
    "trials.csv", "best_recipe.yaml", "importances.json", "study.json", "report.md", "plots", "front")


def trial_rows(study, cfg) -> list[dict]:
    rows = []
    on_front = {t.number for t in pareto_front(study)} if cfg.multi else set()
    for t in study.get_trials(deepcopy=False):
        row = {"number": t.number, "state": t.state.name.lower()}
        if cfg.multi:
            row.update(zip(cfg.objective_names(), t.values or [None] * len(cfg.objectives), strict=True))
            row["pareto"] = t.number in on_front
        else:
            value = t.value
            if value is None and t.intermediate_values:  # pruned: where it stood when stopped
                value = t.intermediate_values[t.last_step]
            row[cfg.metric] = value
        if cfg.cv_folds and not cfg.multi:
            row[f"{cfg.metric}_std"] = t.user_attrs.get("std")
        row["steps"] = t.user_attrs.get("steps", 0)
        row["seconds"] = round(t.duration.total_seconds(), 1) if t.duration else None
        row.update({path: t.params.get(path) for path in cfg.space})
        row["duplicate_of"] = t.user_attrs.get("duplicate_of")
        row["run_dir"] = t.user_attrs.get("run_dir")
        row["error"] = t.user_attrs.get("error")
        rows.append(row)
    return rows


def _best(study):
    from optuna.trial import TrialState

    if len(study.directions) > 1 or not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial


def pareto_front(study) -> list:
    """The complete trials no other complete trial beats on every objective (Optuna's
    best_trials), by trial number; a repeat of a trial already listed is left out."""
    return sorted((t for t in study.best_trials if "duplicate_of" not in t.user_attrs),
                  key=lambda t: t.number)


def _front_entry(t, cfg) -> dict:
    return {"number": t.number, "values": dict(zip(cfg.objective_names(), t.values, strict=True)),
            "params": t.params, "steps": t.user_attrs.get("steps"), "run_dir": t.user_attrs.get("run_dir"),
            "recipe": f"{FRONT}/{t.number:04d}.yaml"}


def best_recipe_text(recipe, best, study_dir: Path, path: Path | None = None,
                     output_dir: Path | None = None) -> str:
    """The trial's recipe as it ran (same threads, same seed), training into `<study>/best`
    (or `output_dir`): `tailor train` on it gives the trial's model again."""

    cfg = recipe.search
    path = path or study_dir / BEST
    raw = trial_recipe(recipe, best.params, output_dir or study_dir / "best", best.user_attrs.get("threads"))
    raw["train"]["progress"] = recipe.train.progress
    text = dump_recipe(recipe_from_dict(raw, source=str(path)))
    folds = (f"\n# The value is the mean over {cfg.cv_folds} folds; this recipe trains once on the "
             "recipe's own split." if cfg.cv_folds else "")
    which = "The Pareto-front trial" if cfg.multi else "The best trial"
    values = ", ".join(f"{n}={show_value(n, v)}" for n, v in zip(cfg.objective_names(), best.values,
                                                                  strict=True))
    return (f"# tailor train {path}\n"
            f"# {which} ({best.number}) of study {study_name(cfg, study_dir)}: validation "
            f"{values} with {_params(best.params)}.{folds}\n{text}")


def importances(study, cfg) -> dict:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {"note": "needs at least two complete trials"}
    if cfg.multi:  # one set per objective
        return {name: _importances(study, cfg, lambda t, i=i: t.values[i])
                for i, name in enumerate(cfg.objective_names())}
    return _importances(study, cfg, None)


def _importances(study, cfg, target) -> dict:
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=cfg.seed),
                                           target=target)
    except Exception as err:  # e.g. every complete trial has the same parameters
        return {"note": f"not computed: {err}"}
    return {k: round(float(v), 4) for k, v in values.items()}


def write_plots(study, cfg, folder: Path) -> dict[str, str]:
    """PNG files by name; a plot Optuna cannot draw yet (too few trials) is left out."""
    import matplotlib.pyplot as plt
    import optuna
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as plots

    folder.mkdir(exist_ok=True)
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    if not finished:
        return {}
    # several objectives: Optuna's Pareto-front plot, and the others for the first objective
    names = cfg.objective_names()
    target = (lambda t: t.values[0]) if cfg.multi else None
    wanted = {
        "history.png": lambda: plots.plot_optimization_history(study, target=target, target_name=names[0]),
        "learning_curves.png": lambda: plots.plot_intermediate_values(study),
        "parallel_coordinate.png": lambda: plots.plot_parallel_coordinate(study, target=target,
                                                                          target_name=names[0]),
        "slice.png": lambda: plots.plot_slice(study, target=target, target_name=names[0]),
        "importances.png": lambda: plots.plot_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=cfg.seed), target=target, target_name=names[0]),
    }
    if cfg.multi and len(names) <= 3:
        wanted = {"pareto_front.png": lambda: plots.plot_pareto_front(study, target_names=names), **wanted}
    if not any(t.intermediate_values for t in finished):
        del wanted["learning_curves.png"]
    written, verbosity = {}, optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "too few trials" is not news here
    for name, draw in wanted.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw()
        except Exception:
            continue
        finally:
            optuna.logging.set_verbosity(verbosity)
        first = axes.flat[0] if hasattr(axes, "flat") else axes
        figure = first.figure
        if len(figure.axes) == 0 or not first.has_data():
            plt.close(figure)
            continue
        figure.savefig(folder / name, dpi=90, bbox_inches="tight")
        plt.close(figure)
        written[name] = f"{PLOTS}/{name}"
    return written


def wall_seconds_so_far(study_dir: Path) -> float:
    """The wall time earlier `tailor tune` sessions of this study recorded (0 for a new one)."""
    summary = study_dir / SUMMARY
    if not summary.is_file():
        return 0.0
    return float(json.loads(summary.read_text()).get("wall_seconds") or 0.0)


def write_report(recipe, study_dir: Path, wall_seconds: float | None = None) -> dict:
    """Write every report file from the storage; returns the study summary."""
    cfg = recipe.search
    study = open_study(recipe, study_dir)
    rows = trial_rows(study, cfg)
    write_csv(_frame(rows), study_dir / TABLE)
    best = _best(study)
    if best is not None:
        (study_dir / BEST).write_text(best_recipe_text(recipe, best, study_dir))
    front = pareto_front(study) if cfg.multi else []
    for t in front:
        (study_dir / FRONT).mkdir(exist_ok=True)
        path = study_dir / FRONT / f"{t.number:04d}.yaml"
        path.write_text(best_recipe_text(recipe, t, study_dir, path, study_dir / FRONT / f"{t.number:04d}"))
    imp = importances(study, cfg)
    (study_dir / IMPORTANCES).write_text(json.dumps(imp, indent=2) + "\n")
    plots = write_plots(study, cfg, study_dir / PLOTS)
    summary = {
        "study": study_name(cfg, study_dir),
        "study_dir": str(study_dir),
        "storage": describe_storage(storage_url(cfg, study_dir)),
        "sampler": cfg.sampler, "pruner": cfg.pruner,
        **({"objectives": [{"metric": n, "direction": d} for n, d in
                           zip(cfg.objective_names(), cfg.directions(), strict=True)]} if cfg.multi else
           {"metric": cfg.metric, "direction": cfg.resolved_direction()}),
        "cv_folds": cfg.cv_folds,
        "trials": _counts(rows),
        "total_steps": sum(r["steps"] or 0 for r in rows),
        "trial_seconds": round(sum(r["seconds"] or 0 for r in rows), 1),
        "wall_seconds": round(wall_seconds, 1) if wall_seconds is not None else None,
        "best": None if best is None else {
            "number": best.number, "value": best.value, "params": best.params,
            "steps": best.user_attrs.get("steps"), "run_dir": best.user_attrs.get("run_dir"),
            **({"std": best.user_attrs.get("std")} if cfg.cv_folds else {})},
        **({"pareto_front": [_front_entry(t, cfg) for t in front]} if cfg.multi else {}),
        "importances": imp,
        "files": {"trials": TABLE, "best_recipe": BEST if best else None, "importances": IMPORTANCES,
                  "plots": plots, "report": PAGE},
    }
    tmp = study_dir / (SUMMARY + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    tmp.replace(study_dir / SUMMARY)
    (study_dir / PAGE).write_text(_page(summary, rows, cfg))
    return summary


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if "duplicate_of" in frame:  # trial numbers, not floats, where some rows have none
        frame["duplicate_of"] = frame["duplicate_of"].astype("Int64")
    return frame


def _counts(rows: list[dict]) -> dict[str, int]:
    out = {"complete": 0, "pruned": 0, "running": 0, "fail": 0, "waiting": 0}
    for r in rows:
        out[r["state"]] = out.get(r["state"], 0) + 1
    return out


def _page(summary: dict, rows: list[dict], cfg) -> str:
    c, best = summary["trials"], summary["best"]
    lines = [f"# Study {summary['study']}", "",
             f"{cfg.sampler} sampler, {cfg.pruner} pruner, {objectives_text(cfg)}. Trials: "
             f"{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed; "
             f"{summary['total_steps']:,} training steps in all.", ""]
    if best:
        lines += [f"Best: trial {best['number']}, {cfg.metric} = {best['value']:.4f} "
                  f"({_params(best['params'])}). Re-train it with `tailor train "
                  f"{summary['study_dir']}/{BEST}`.", ""]
    if cfg.multi:
        lines += [f"Pareto front: {len(summary['pareto_front'])} trials that no other complete trial beats "
                  f"on every objective; re-train one with `tailor train {summary['study_dir']}/{FRONT}/"
                  "NNNN.yaml`.", "", markdown_table(front_frame(summary["pareto_front"], cfg)), ""]
    imp = summary["importances"]
    for name, values in (imp.items() if cfg.multi else [(None, imp)]):
        values = {k: v for k, v in values.items() if k != "note"} if isinstance(values, dict) else {}
        if values:
            lines += [f"| parameter | importance{f' for {name}' if name else ''} |", "| --- | --- |"]
            lines += [f"| `{k}` | {v:.3f} |" for k, v in values.items()] + [""]
    frame = _frame(rows).drop(columns=["error", "run_dir"], errors="ignore").dropna(axis=1, how="all")
    lines += [markdown_table(frame), ""]
    lines += [f"![{name}]({path})" for name, path in summary["files"]["plots"].items()]
    return "\n".join(lines) + "\n"


def objectives_text(cfg) -> str:
    return ", ".join(f"{d} validation {n}" if n not in COSTS else f"{d} {n}"
                     for n, d in zip(cfg.objective_names(), cfg.directions(), strict=True))


def front_frame(front: list[dict], cfg) -> pd.DataFrame:
    """The Pareto front as a table: trial, each objective, each parameter."""
    rows = [{"trial": f["number"], **f["values"], **{p: f["params"].get(p) for p in cfg.space}}
            for f in front]
    return pd.DataFrame(rows, columns=["trial", *cfg.objective_names(), *cfg.space])


def front_text(front: list[dict], cfg) -> str:
    """The front for the terminal: aligned columns, objectives shown as the trials print them."""
    table = [["trial", *cfg.objective_names(), *cfg.space]]
    for f in front:
        params = [f["params"].get(p) for p in cfg.space]
        table.append([str(f["number"])] + [show_value(n, f["values"][n]) for n in cfg.objective_names()]
                     + ["" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in params])
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in table)


def markdown_table(frame: pd.DataFrame) -> str:
    """A Markdown table (pandas' own needs tabulate, which is not a dependency)."""
    def cell(value) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
            return ""
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def status_text(study_dir: str | Path) -> str:
    """Progress of a study, read from its storage (nothing is written)."""

    study_dir = Path(study_dir)
    recipe = read_study_recipe(study_dir)
    cfg = recipe.search
    if cfg.storage is None and not (study_dir / DB).is_file():
        raise TailorError(f"{study_dir}: the study has no storage yet ({DB}); start it with tailor tune")
    study = open_study(recipe, study_dir)
    rows = trial_rows(study, cfg)
    c = _counts(rows)
    done = sum(1 for t in study.get_trials(deepcopy=False) if counts_toward_budget(t)) - c["running"]
    wanted = cfg.trials_wanted(grid_size(cfg))
    lines = [f"study {study_name(cfg, study_dir)}: {cfg.sampler} sampler, {cfg.pruner} pruner, "
             f"{objectives_text(cfg)}; storage {describe_storage(storage_url(cfg, study_dir))}",
             f"trials: {done} of {wanted} done ({c['complete']} complete, {c['pruned']} pruned), "
             f"{c['running']} running, {c['fail']} failed; "
             f"{sum(r['steps'] or 0 for r in rows):,} training steps so far"]
    best = _best(study)
    if best is not None:
        lines.append(f"best: trial {best.number}, {cfg.metric}={best.value:.4f} ({_params(best.params)})")
    front = [_front_entry(t, cfg) for t in pareto_front(study)] if cfg.multi else []
    if front:
        lines += [f"Pareto front ({len(front)} trials):", front_text(front, cfg)]
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        where = t.user_attrs.get("worker", {})
        gone = " [its worker is gone; the next tailor tune marks it failed]" if is_dead(where) else ""
        at = (f"step {t.last_step}, {cfg.metric}={t.intermediate_values[t.last_step]:.4f}"
              if t.last_step is not None else "not evaluated yet")
        lines.append(f"running: trial {t.number} on {where.get('host', '?')}:{where.get('pid', '?')}, "
                     f"{at} ({_params(t.params)}){gone}")
    if (study_dir / SUMMARY).is_file():
        lines.append(f"report: {study_dir / PAGE} (written when tailor tune last finished)")
    return "\n".join(lines)
