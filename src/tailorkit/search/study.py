"""The study directory and the Optuna study behind it: storage, sampler, pruner, lock.

A study directory holds `study.yaml` (the recipe the study runs), `study.db` (the default
SQLite storage), one run directory per trial under `trials/`, and the report. Re-running
`tailor tune` on the same recipe resumes from the storage; a different recipe is refused
rather than mixed into the same study.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tailorkit.config.search import SearchConfig
from tailorkit.errors import TailorError
from tailorkit.recipe import dump_recipe, load_recipe

STUDY_RECIPE = "study.yaml"
DB = "study.db"
LOCK = ".lock"
# Fields that may change between runs of one study: how many trials, for how long.
RESUMABLE = ("n_trials", "timeout")


def storage_url(cfg: SearchConfig, study_dir: Path) -> str:
    return cfg.storage or f"sqlite:///{(study_dir / DB).resolve()}"


def driver_url(url: str) -> str:
    """The URL SQLAlchemy opens: a plain `postgresql://` (or `postgres://`) would load psycopg2,
    which tailorkit does not ship; it is given psycopg (v3), the driver tailorkit depends on.
    A URL that names its driver (`postgresql+...://`) is left alone."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def study_name(cfg: SearchConfig, study_dir: Path) -> str:
    return cfg.study_name or study_dir.resolve().name


def spec(recipe) -> dict:
    """What identifies a study: the recipe as written (defaults left out, so a tailorkit
    that adds a field with a default still resumes it), except where it runs and for how long."""
    raw = recipe.model_dump(mode="json", exclude_unset=True, exclude={"output_dir"})
    for key in RESUMABLE:
        raw["search"].pop(key, None)
    return raw


def claim_study_dir(recipe) -> Path:
    """A new study directory, or an existing one (open_study then checks that the recipe is
    the one its storage holds); never a folder that holds something else."""
    study_dir = Path(recipe.output_dir)
    marker = study_dir / STUDY_RECIPE
    if not marker.is_file() and study_dir.exists() and any(study_dir.iterdir()):
        raise TailorError(f"output_dir {study_dir} already holds files that are not a study; "
                          "choose another output_dir for the search")
    study_dir.mkdir(parents=True, exist_ok=True)

    if marker.is_file():
        open_study(recipe, study_dir, create=True)  # refuses another recipe before touching study.yaml
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(dump_recipe(recipe))
    tmp.replace(marker)  # the current n_trials and timeout, for --status
    return study_dir


def check_same(old: dict, new: dict, where: str) -> None:
    differ = sorted(set(_flat(old).items()) ^ set(_flat(new).items()))
    if differ:
        keys = ", ".join(dict.fromkeys(k for k, _ in differ))
        raise TailorError(f"{where} holds a study of another recipe (it differs in: {keys}); "
                          "re-run the recipe it was started with, or choose another output_dir")


def _flat(raw: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(raw, dict):
        out: dict[str, str] = {}
        for key, value in raw.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: json.dumps(raw, sort_keys=True)}


@functools.lru_cache(maxsize=8)
def make_storage(url: str):
    """SQLite waits up to a minute for a lock instead of failing: several worker processes
    write to one file, each briefly (a report per evaluation, a state per trial). Opened once
    per process: opening checks the schema, which takes a second."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(driver_url(url), engine_kwargs=kwargs)
        except (IntegrityError, ProgrammingError):
            # Workers started together on an empty server database race to create Optuna's
            # tables and types; the loser finds them there when it opens the storage again.
            if attempt == 4:
                raise TailorError(f"search.storage: cannot create the study tables in "
                                  f"{describe_storage(url)}; another process keeps creating them") from None
            time.sleep(0.5 * (attempt + 1))
        except Exception as err:  # a bad URL or an unreachable server: say which
            raise TailorError(f"search.storage: cannot open {describe_storage(url)}: {err}"  # no password
                              .replace("\n", " ")) from None


def make_sampler(cfg: SearchConfig, grid: dict[str, list] | None, seed: int):
    import optuna

    if cfg.sampler == "grid":
        return _grid_sampler_class()(grid, seed=cfg.seed)
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=cfg.population_size)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.startup_trials)


def trial_seed(cfg: SearchConfig, number: int) -> int:
    """Each trial draws from its own seed, so a resumed study or a second worker does not
    replay the first trials' draws, and one worker's study is reproducible."""
    return (cfg.seed * 1_000_003 + number) % 2**32


def make_pruner(cfg: SearchConfig):
    import optuna

    p = cfg.pruning
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_steps)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=p.min_resource,
                                              max_resource=p.max_resource or "auto",
                                              reduction_factor=p.reduction_factor)
    if cfg.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_resource,
                                                      reduction_factor=p.reduction_factor)
    return optuna.pruners.NopPruner()


def _grid_sampler_class():
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid, without its stop-the-study call after each trial: that call only works
        inside Study.optimize, and the worker loop decides itself when the grid is covered."""

        def after_trial(self, study, trial, state, values) -> None:
            pass

    return GridSampler


def open_study(recipe, study_dir: Path, create: bool = False):
    """The Optuna study of `recipe`, created on first use; refuses a stored study whose recipe
    differs (workers on several machines share only the storage)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg: SearchConfig = recipe.search
    storage = make_storage(storage_url(cfg, study_dir))
    name = study_name(cfg, study_dir)
    if create:
        study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                                    directions=cfg.directions(), pruner=make_pruner(cfg))
        stored = study.user_attrs.get("recipe")
        if stored is None:
            study.set_user_attr("recipe", spec(recipe))
        else:
            where = (f"output_dir {study_dir}" if cfg.storage is None else
                     f"study '{name}' in {describe_storage(storage_url(cfg, study_dir))}")
            check_same(stored, spec(recipe), where)
        return study
    try:
        return optuna.load_study(study_name=name, storage=storage, pruner=make_pruner(cfg))
    except KeyError:
        raise TailorError(f"{study_dir}: storage has no study '{name}'") from None


@contextlib.contextmanager
def study_lock(study_dir: Path) -> Iterator[None]:
    """Serialises 'count the trials, then ask for one' across the workers on this machine, so
    n_trials and the grid come out exact. (Workers on other machines sharing a server storage
    are not covered: there two may start the last trial at the same moment.)"""
    with open(study_dir / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def worker_id() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid())}


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(worker: dict) -> bool:
    try:
        os.kill(worker["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    started = _start_time(worker["pid"])
    return started is None or worker.get("started") in (None, started)


def is_dead(worker: dict) -> bool:
    """A worker of this machine whose process is gone (another machine's: unknown, so no)."""
    return bool(worker) and worker.get("host") == socket.gethostname() and not _alive(worker)


def fail_dead_trials(study) -> list[int]:
    """Trials left RUNNING by a killed worker on this machine are marked FAIL, so a re-run
    counts them as lost and runs their budget again."""
    from optuna.trial import TrialState

    lost = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_dead(t.user_attrs.get("worker", {})):
            study._storage.set_trial_user_attr(t._trial_id, "error", "its worker process died")
            study.tell(t.number, state=TrialState.FAIL)
            lost.append(t.number)
    return lost


def read_study_recipe(study_dir: Path):
    """The recipe of an existing study directory (for --status)."""

    marker = Path(study_dir) / STUDY_RECIPE
    if not marker.is_file():
        raise TailorError(f"{study_dir}: not a study directory (no {STUDY_RECIPE}); "
                          "start one with tailor tune RECIPE")
    return load_recipe(marker)


def describe_storage(url: str) -> str:
    """The URL without its password, for printing."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]
