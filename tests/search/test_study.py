"""The study around the trials: samplers, the grid, resume, lost trials, refusals, --status.

The trial itself is replaced by a fast stand-in (a function of the trial's values), so these
tests exercise Optuna's samplers and the worker loop, not training; tests/search/test_trials.py
trains for real.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from tailorkit import api
from tailorkit.cli import main
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict
from tailorkit.search import report, worker
from tailorkit.search import study as study_mod
from tailorkit.search.worker import StudyInterrupted

LOG_LR = {"low": 1e-4, "high": 1e-2, "log": True}


def score(params: dict) -> float:
    """Best at lr 1e-3 and batch size 8: a smooth, known landscape."""
    lr, batch = params.get("train.lr", 1e-3), params.get("train.batch_size", 8)
    return (math.log10(lr) + 3) ** 2 + abs(batch - 8) / 8


class FakeClock:
    """Stands in for the `time` module where the study reads its deadline: `time()` moves only
    when told to (`advance`); everything else (perf_counter, strftime) is the real module."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def __getattr__(self, name: str):
        return getattr(time, name)


@pytest.fixture
def fake_clock(monkeypatch) -> FakeClock:
    """The study's wall clock: `tune` sets the deadline from it, the worker loop checks it."""
    clock = FakeClock()
    monkeypatch.setattr(sys.modules[api.tune.__module__], "time", clock)  # wherever tune lives
    monkeypatch.setattr(worker, "time", clock)
    return clock


@pytest.fixture
def fake_trials(monkeypatch):
    """Replace training by `score`; returns the list of params each call received. Set
    `.fail_at` to raise KeyboardInterrupt (Ctrl-C) on that call (0-based); set `.clock` (a
    FakeClock) and `.seconds` to have each trial take that long on the clock."""
    calls: list[dict] = []

    class Fake:
        fail_at: int | None = None
        clock: FakeClock | None = None
        seconds = 0.0

        def __call__(self, trial, recipe, study_dir, threads=None, progress=None):
            if self.fail_at is not None and len(calls) == self.fail_at:
                self.fail_at = None
                raise KeyboardInterrupt
            if self.clock is not None:
                self.clock.advance(self.seconds)
            calls.append(dict(trial.params))
            trial.set_user_attr("steps", 10)
            return [score(trial.params)]  # one value per objective

    fake = Fake()
    fake.calls = calls
    monkeypatch.setattr(worker, "run_trial", fake)
    monkeypatch.setattr(worker, "free_memory", lambda: None)  # nothing trained, nothing to free
    monkeypatch.setattr(report, "write_plots", lambda *args: {})  # drawn in test_trials.py
    return fake


@pytest.fixture
def study_recipe(tiny_recipe, tmp_path):
    def make(**search) -> dict:
        return {**tiny_recipe, "output_dir": str(tmp_path / "study"),
                "search": {"metric": "loss", **search}}
    return make


def tune(raw: dict, workers: int = 1) -> Path:
    return api.tune(recipe_from_dict(raw), workers=workers)


def trials(study_dir: Path, raw: dict, states=None):
    study = study_mod.open_study(recipe_from_dict(raw), study_dir)
    return study.get_trials(deepcopy=False, states=states)


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_random_and_tpe_explore_the_space_they_were_given(sampler, fake_trials, study_recipe):
    raw = study_recipe(space={"train.lr": LOG_LR, "train.batch_size": {"low": 4, "high": 16, "step": 4},
                              "train.optimizer": ["adamw", "sgd"]},
                       sampler=sampler, startup_trials=4, n_trials=12)
    tune(raw)
    seen = fake_trials.calls
    assert len(seen) + sum(1 for t in trials(Path(raw["output_dir"]), raw)
                           if "duplicate_of" in t.user_attrs) == 12
    assert all(1e-4 <= p["train.lr"] <= 1e-2 for p in seen)
    assert all(p["train.batch_size"] in (4, 8, 12, 16) for p in seen)
    assert all(p["train.optimizer"] in ("adamw", "sgd") for p in seen)
    for name in ("train.lr", "train.batch_size", "train.optimizer"):
        assert len({p[name] for p in seen}) > 1, f"{sampler} never varied {name}"
    # spread over the log scale, not stuck at one end
    assert min(p["train.lr"] for p in seen) < 1e-3 < max(p["train.lr"] for p in seen)


def test_tpe_samples_closer_to_the_optimum_than_random(fake_trials, study_recipe, tmp_path):
    scores = {}
    for sampler in ("random", "tpe"):
        raw = {**study_recipe(space={"train.lr": LOG_LR}, sampler=sampler, startup_trials=4, n_trials=16),
               "output_dir": str(tmp_path / sampler)}
        start = len(fake_trials.calls)
        tune(raw)
        scores[sampler] = [score(p) for p in fake_trials.calls[start:]]
    late = {name: sum(s[10:]) / len(s[10:]) for name, s in scores.items()}
    assert late["tpe"] < late["random"] / 2, late


@pytest.mark.parametrize("startup", [2, 5])
def test_tpe_draws_at_random_for_startup_trials_then_models(startup, fake_trials, study_recipe, tmp_path):
    """TPE's first `startup_trials` are the random sampler's draws (same seeds), the next
    ones its own: the option reaches TPESampler(n_startup_trials=...)."""
    drawn = {}
    for sampler in ("random", "tpe"):
        raw = {**study_recipe(space={"train.lr": LOG_LR}, sampler=sampler, startup_trials=startup,
                              n_trials=startup + 3),
               "output_dir": str(tmp_path / sampler)}
        start = len(fake_trials.calls)
        tune(raw)
        drawn[sampler] = [p["train.lr"] for p in fake_trials.calls[start:]]
    assert drawn["tpe"][:startup] == drawn["random"][:startup]
    assert all(t != r for t, r in zip(drawn["tpe"][startup:], drawn["random"][startup:], strict=True))


def test_grid_covers_the_grid_exactly_once(fake_trials, study_recipe):
    space = {"train.lr": [1e-3, 2e-3, 3e-3], "train.batch_size": [4, 8]}
    raw = study_recipe(space=space, sampler="grid")
    study_dir = tune(raw)
    points = [(p["train.lr"], p["train.batch_size"]) for p in fake_trials.calls]
    assert sorted(points) == sorted(itertools.product(*space.values()))  # each once, none twice
    tune(raw)  # the grid is done: a re-run adds nothing
    assert len(fake_trials.calls) == 6 and len(trials(study_dir, raw)) == 6


def test_grid_with_fewer_trials_runs_part_of_it(fake_trials, study_recipe):
    tune(study_recipe(space={"train.lr": [1e-3, 2e-3, 3e-3], "train.batch_size": [4, 8]},
                      sampler="grid", n_trials=4))
    assert len({tuple(p.values()) for p in fake_trials.calls}) == 4


def test_resume_continues_the_trial_count(fake_trials, study_recipe):
    raw = study_recipe(space={"train.lr": LOG_LR}, sampler="random", n_trials=5)
    fake_trials.fail_at = 2  # Ctrl-C during the third trial
    with pytest.raises(StudyInterrupted):
        tune(raw)
    study_dir = Path(raw["output_dir"])
    states = [t.state for t in trials(study_dir, raw)]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL]
    assert (study_dir / "trials.csv").is_file()  # the report of what is done, even after Ctrl-C
    first = list(fake_trials.calls)

    tune(raw)  # the same command resumes
    done = trials(study_dir, raw, states=(TrialState.COMPLETE,))
    assert [t.number for t in done] == [0, 1, 3, 4, 5]  # 3 more, not 5 more; numbers go on
    resumed = fake_trials.calls[len(first):]
    assert len(resumed) == 3 and not {p["train.lr"] for p in resumed} & {p["train.lr"] for p in first}

    tune({**raw, "search": {**raw["search"], "n_trials": 7}})  # n_trials may grow
    assert len(trials(study_dir, raw, states=(TrialState.COMPLETE,))) == 7


def test_a_lost_grid_point_runs_again_on_resume(fake_trials, study_recipe):
    space = {"train.lr": [1e-3, 2e-3], "train.batch_size": [4, 8]}
    raw = study_recipe(space=space, sampler="grid")
    fake_trials.fail_at = 1
    with pytest.raises(StudyInterrupted):
        tune(raw)
    tune(raw)
    complete = trials(Path(raw["output_dir"]), raw, states=(TrialState.COMPLETE,))
    points = sorted((t.params["train.lr"], t.params["train.batch_size"]) for t in complete)
    assert points == sorted(itertools.product(*space.values()))


def test_a_trial_of_a_killed_worker_is_marked_failed_and_run_again(fake_trials, study_recipe):
    raw = study_recipe(space={"train.lr": LOG_LR}, sampler="random", n_trials=2)
    recipe = recipe_from_dict(raw)
    study_dir = study_mod.claim_study_dir(recipe)
    study = study_mod.open_study(recipe, study_dir, create=True)
    orphan = study.ask()  # left RUNNING by a worker that was killed (kill -9)
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan.set_user_attr("worker", {"host": study_mod.socket.gethostname(), "pid": dead.pid})
    tune(raw)
    ts = trials(study_dir, raw)
    assert ts[0].state == TrialState.FAIL and ts[0].user_attrs["error"] == "its worker process died"
    assert [t.state for t in ts[1:]] == [TrialState.COMPLETE] * 2


def test_a_point_proposed_again_reuses_the_finished_trial(fake_trials, study_recipe):
    raw = study_recipe(space={"train.batch_size": [4, 8]}, sampler="random", n_trials=6)
    study_dir = tune(raw)
    assert len(fake_trials.calls) == 2  # two points; the other four trials reuse them
    twins = [t for t in trials(study_dir, raw) if "duplicate_of" in t.user_attrs]
    assert len(twins) == 4 and all(t.user_attrs["steps"] == 0 for t in twins)


def test_timeout_stops_starting_trials(fake_trials, fake_clock, study_recipe):
    """Each trial takes 0.3 s of a fake clock. With timeout 1.0, trials start at 0, 0.3, 0.6 and
    0.9 s and none at 1.2 s; the one started before the deadline runs to its end."""
    fake_trials.clock, fake_trials.seconds = fake_clock, 0.3
    raw = study_recipe(space={"train.lr": LOG_LR}, sampler="random", n_trials=50, timeout=1.0)
    study_dir = tune(raw)
    assert len(fake_trials.calls) == 4
    assert [t.state for t in trials(study_dir, raw)] == [TrialState.COMPLETE] * 4
    summary = json.loads((study_dir / report.SUMMARY).read_text())
    assert summary["wall_seconds"] == 1.2  # the report times the study on the same clock
    more = {**raw, "search": {**raw["search"], "timeout": 2.0}}  # resumed: 7 more trials, 2.1 s
    tune(more)
    assert len(fake_trials.calls) == 4 + 7
    summary = json.loads((study_dir / report.SUMMARY).read_text())
    assert summary["wall_seconds"] == pytest.approx(1.2 + 2.1)  # both sessions


def test_refuses_to_mix_studies_or_overwrite_a_run(fake_trials, study_recipe, tmp_path):
    raw = study_recipe(space={"train.lr": LOG_LR}, sampler="random", n_trials=2)
    tune(raw)
    changed = {**raw, "search": {**raw["search"], "space": {"train.lr": [1e-3]}}}
    with pytest.raises(TailorError, match=r"holds a study of another recipe \(it differs in: "
                                          r"search\.space"):
        tune(changed)
    run = tmp_path / "a-run"
    run.mkdir()
    (run / "summary.json").write_text("{}")
    with pytest.raises(TailorError, match="already holds files that are not a study"):
        tune({**raw, "output_dir": str(run)})
    assert (run / "summary.json").read_text() == "{}"
    with pytest.raises(TailorError, match="no search: block"):
        api.tune(recipe_from_dict({k: v for k, v in raw.items() if k != "search"}))


def test_status_and_cli(fake_trials, study_recipe, write_recipe, capsys):
    raw = study_recipe(space={"train.lr": LOG_LR}, sampler="random", n_trials=3)
    path = write_recipe(raw)
    assert main(["tune", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("trial ") >= 3 and "best recipe:" in out
    assert main(["tune", "--status", raw["output_dir"]]) == 0
    status = capsys.readouterr().out
    assert "trials: 3 of 3 done (3 complete, 0 pruned), 0 running, 0 failed; 30 training steps" in status
    assert "best: trial" in status and "random sampler, none pruner, minimize validation loss" in status
    assert main(["tune", "--status", str(path.parent)]) == 2
    assert "not a study directory" in capsys.readouterr().err
    assert main(["tune"]) == 2
    assert main(["tune", "--status", raw["output_dir"], "--workers", "2"]) == 2
    assert "--status only reads a study" in capsys.readouterr().err


def test_status_reads_a_running_study(fake_trials, study_recipe):
    raw = study_recipe(space={"train.lr": LOG_LR}, sampler="random", n_trials=4)
    recipe = recipe_from_dict(raw)
    study_dir = study_mod.claim_study_dir(recipe)
    study = study_mod.open_study(recipe, study_dir, create=True)
    running = study.ask({"train.lr": study_mod_dist()})
    running.set_user_attr("worker", {"host": "elsewhere", "pid": 1})
    running.report(0.5, 8)
    status = api.tune_status(study_dir)
    assert "0 of 4 done" in status and "1 running" in status
    assert f"running: trial {running.number} on elsewhere:1, step 8, loss=0.5000" in status
    assert yaml.safe_load((study_dir / "study.yaml").read_text())["search"]["n_trials"] == 4


def study_mod_dist():
    from optuna.distributions import FloatDistribution

    return FloatDistribution(1e-4, 1e-2, log=True)


def test_a_study_is_identified_by_the_recipe_as_written(study_recipe):
    raw = study_recipe(space={"train.lr": LOG_LR}, n_trials=3, timeout=60)
    spec = study_mod.spec(recipe_from_dict(raw))
    # defaults are left out: a later tailorkit with one more field still resumes the study
    assert "weight_decay" not in spec["train"] and "generation" not in spec
    assert "output_dir" not in spec and "n_trials" not in spec["search"] and "timeout" not in spec["search"]
    assert spec["search"]["space"] == {"train.lr": {"type": "float", **LOG_LR}}


def test_tpe_under_hyperband_counts_every_brackets_trials():
    """docs/search.md and the README rely on it: with optuna's Hyperband, TPE's startup
    and model use the whole study, not only the new trial's bracket."""
    import optuna

    cfg = recipe_from_dict({"task": "classification", "model": {"name": "minilm-l6"},
                            "data": {"name": "bbc-news"},
                            "search": {"space": {"train.lr": LOG_LR}, "pruner": "hyperband",
                                       "startup_trials": 3,
                                       "pruning": {"min_resource": 1, "max_resource": 9}}}).search
    study = optuna.create_study(study_name="hb", pruner=study_mod.make_pruner(cfg))  # 3 brackets
    study.pruner._try_initialization(study)  # brackets are set before the first trial
    dist = {"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    startup_draws_of_a_new_bracket = []
    for number in range(12):
        seed = study_mod.trial_seed(cfg, number)
        study.sampler = study_mod.make_sampler(cfg, None, seed)
        trial = study.ask(dist)
        random_draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask(dist)
        bracket = study.pruner._get_bracket_id(study, trial)
        earlier = [t for t in study.get_trials(deepcopy=False) if t.number < number]
        same_bracket = [t for t in earlier if study.pruner._get_bracket_id(study, t) == bracket]
        if len(earlier) >= 3 and len(same_bracket) < 3:
            startup_draws_of_a_new_bracket.append(trial.params == random_draw.params)
        for step in range(1, 10):
            trial.report(score(trial.params) + 1 / step, step)
            trial.should_prune()
        study.tell(trial, score(trial.params))
    assert startup_draws_of_a_new_bracket and not any(startup_draws_of_a_new_bracket)
