"""The study file and the runs it stands for: one recipe per variant and seed, each the base
recipe with the variant's overrides, validated before anything trains."""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from tailorkit.config.base import format_validation_error
from tailorkit.config.recipe import Recipe
from tailorkit.config.study import StudyConfig
from tailorkit.errors import TailorError
from tailorkit.recipe import _read_mapping, apply_overrides, recipe_from_dict
from tailorkit.tasks import task_of

PLAN = "plan.yaml"  # the study directory's marker: the study as run, base recipe inlined
RUNS = "runs"


@dataclass(frozen=True)
class PlannedRun:
    key: str  # the run's folder under runs/
    variant: str
    seed: int
    recipe: Recipe


def load_study(path: str | Path, overrides: list[str] | None = None) -> StudyConfig:
    """The study file with `--set` overrides of its own fields (e.g. output_dir=...), its base
    recipe read and inlined, so the study directory records what ran."""
    path = Path(path)
    raw = apply_overrides(_read_mapping(path, "study", "base:, variants:, seeds:"), overrides or [])
    try:
        cfg = StudyConfig.model_validate(raw)
    except ValidationError as err:
        raise TailorError(format_validation_error(err, str(path), StudyConfig)) from None
    if isinstance(cfg.base, str):
        base = Path(cfg.base)
        base = base if base.is_absolute() else path.parent / base
        cfg = cfg.model_copy(update={"base": _read_mapping(base, "recipe", "task:, model:, data:, ...")})
    return cfg


def run_key(cfg: StudyConfig, variant: str, seed: int) -> str:
    """The run's folder under runs/: the variant's name, with its seed when the study has seeds."""
    return variant if cfg.seeds is None else f"{variant}-seed{seed}"


def planned_keys(cfg: StudyConfig) -> set[str]:
    """The run folders the study holds now (a study re-run with other seeds keeps the old runs
    on disk, outside its table)."""
    if cfg.seeds is None:
        return {v.name for v in cfg.variants}
    return {run_key(cfg, v.name, seed) for v in cfg.variants for seed in cfg.seeds}


def plan_runs(cfg: StudyConfig, source: str = "study") -> list[PlannedRun]:
    """Every run of the study, in order, each recipe checked; a TailorError lists every bad
    variant at once, before any of them trains."""
    study_dir = Path(cfg.output_dir)
    base_seed = cfg.base.get("seed", Recipe.model_fields["seed"].default)
    seeds = cfg.seeds or [base_seed]
    planned, problems = [], []
    for i, variant in enumerate(cfg.variants):
        for seed in seeds:
            key = run_key(cfg, variant.name, seed)
            where = f"{source}: variants[{i}] ({variant.name})"
            try:
                raw = apply_overrides(copy.deepcopy(cfg.base), list(variant.set))
                raw.update(seed=seed, output_dir=str(study_dir / RUNS / key))
                if isinstance(raw.get("compress"), dict):  # one compressed folder per run, beside it
                    raw["compress"]["output_dir"] = f"{raw['output_dir']}-compressed"
                recipe = recipe_from_dict(raw, where, list(variant.set))
            except TailorError as err:
                problems.append(str(err) if str(err).startswith(where) else f"{where}: {err}")
                break
            planned.append(PlannedRun(key, variant.name, seed, recipe))
    problems += _metric_problems(cfg.metric, planned, source)
    if problems:
        raise TailorError("\n".join(problems))
    return planned


def _metric_problems(metric: str | None, planned: list[PlannedRun], source: str) -> list[str]:
    """The study's metric must be one every variant's task reports."""
    problems = []
    if metric is None:  # run_study takes the task's own
        return problems
    for task in {task_of(run.recipe).name: task_of(run.recipe) for run in planned}.values():
        if metric not in task.metrics:
            hint = difflib.get_close_matches(metric, task.metrics, n=1)
            problems.append(f"{source}: metric: '{metric}' is not a {task.name} metric"
                            + (f"; did you mean '{hint[0]}'?" if hint else "")
                            + f" (allowed: {', '.join(task.metrics)})")
    return problems


def claim_study_dir(cfg: StudyConfig) -> Path:
    """The study directory, new or holding this study; a variant whose definition changed is
    refused (its finished runs would be mixed with the new ones), new variants and seeds are
    welcome."""
    study_dir = Path(cfg.output_dir)
    marker = study_dir / PLAN
    if not marker.is_file() and study_dir.exists() and any(study_dir.iterdir()):
        raise TailorError(f"output_dir {study_dir} already holds files that are not a study; "
                          "choose another output_dir")
    if marker.is_file():
        old = StudyConfig.model_validate(yaml.safe_load(marker.read_text()))
        if old.base != cfg.base:
            raise TailorError(f"{study_dir} holds a study of another base recipe; re-run the study it was "
                              "started with, or choose another output_dir")
        before = {v.name: v.set for v in old.variants}
        changed = [v.name for v in cfg.variants if v.name in before and before[v.name] != v.set]
        if changed or old.metric != cfg.metric:
            what = f"variants {', '.join(changed)}" if changed else "metric"
            raise TailorError(f"{study_dir} holds a study whose {what} differ from this file's; give a "
                              "changed variant a new name, or choose another output_dir")
    study_dir.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    tmp.replace(marker)
    return study_dir


def read_plan(study_dir: Path) -> StudyConfig:
    return StudyConfig.model_validate(yaml.safe_load((study_dir / PLAN).read_text()))
