"""Multi-objective search for real (the tiny BERT, a few steps a trial): the method as a dimension
of the space, the Pareto front Optuna returns checked against every complete trial, the costs
read from each trial's own run, and the front in the study's files and in `tailor report`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import make_sentences, recipe_dict
from tailorkit import api
from tailorkit.recipe import load_recipe, recipe_from_dict
from tailorkit.report.html import build_report
from tailorkit.runtime import peak_rss_mb

OBJECTIVES = [{"metric": "loss"}, {"metric": "trainable_params"}]


def dominates(a: list[float], b: list[float], signs: list[int]) -> bool:
    """a is at least as good as b on every objective and better on one (sign +1: maximize)."""
    return all(s * x >= s * y for x, y, s in zip(a, b, signs, strict=True)) and \
        any(s * x > s * y for x, y, s in zip(a, b, signs, strict=True))


@pytest.fixture(scope="module")
def search_dir(tiny_model_dir, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("objectives")
    make_sentences(160).to_csv(tmp / "s.csv", index=False)
    # 48 steps: enough for the tiny model to learn at lr 1e-2 with some methods, not with others
    raw = recipe_dict(tiny_model_dir, tmp / "s.csv", tmp / "search", max_steps=48, eval_steps=48)
    raw["search"] = {"sampler": "random", "n_trials": 8, "seed": 1, "objectives": OBJECTIVES, "space": {
        "methods.0": ["full", "freeze", "lora"],  # the recipe's method is full
        "methods.0.freeze.bias": [False, True],
        "methods.0.lora.r": [1, 4],
        "train.lr": [1e-2, 5e-2]}}
    return api.tune(recipe_from_dict(raw))


def test_the_front_is_exactly_the_non_dominated_trials(search_dir):
    summary = json.loads((search_dir / "study.json").read_text())
    assert summary["objectives"] == [{"metric": "loss", "direction": "minimize"},
                                     {"metric": "trainable_params", "direction": "minimize"}]
    assert "metric" not in summary and summary["best"] is None and summary["trials"]["complete"] == 8
    signs = [-1, -1]
    table = pd.read_csv(search_dir / "trials.csv")
    trained = table[(table.state == "complete") & table.duplicate_of.isna()]
    points = {int(r.number): [r.loss, r.trainable_params] for r in trained.itertuples()}
    front = {f["number"]: [f["values"]["loss"], f["values"]["trainable_params"]]
             for f in summary["pareto_front"]}
    assert len(front) >= 2, "a front of one point tests little"
    for a in front.values():  # no point of the front beats another
        assert not any(dominates(b, a, signs) for b in front.values())
    expected = {n for n, p in points.items() if not any(dominates(q, p, signs) for q in points.values())}
    assert set(front) == expected  # every non-dominated trial, and only those
    assert set(trained.number[trained.pareto]) == expected


def test_each_trial_ran_its_method_and_its_values_are_its_runs(search_dir):
    table = pd.read_csv(search_dir / "trials.csv")
    methods = set()
    for r in table[table.duplicate_of.isna()].itertuples():
        run = search_dir / r.run_dir
        recipe = yaml.safe_load((run / "recipe.yaml").read_text())
        (name,) = recipe["methods"][0]
        assert name == table.loc[r.Index, "methods.0"]
        methods.add(name)
        options = recipe["methods"][0][name]
        for option in ("freeze.bias", "lora.r"):  # an option is sampled with its own method only
            value = table.loc[r.Index, f"methods.0.{option}"]
            assert pd.isna(value) == (not option.startswith(name))
            if not pd.isna(value):
                assert options[option.split(".")[1]] == value
        summary = json.loads((run / "summary.json").read_text())
        assert r.trainable_params == summary["parameters"]["trainable"]
        assert r.loss == pytest.approx(summary["validation"]["loss"])
    assert methods == {"full", "freeze", "lora"}


def test_front_recipes_report_and_status_show_the_front(search_dir, capsys):
    summary = json.loads((search_dir / "study.json").read_text())
    assert not (search_dir / "best_recipe.yaml").exists()  # no single best on several objectives
    for f in summary["pareto_front"]:
        recipe = load_recipe(search_dir / f["recipe"])
        assert recipe.search is None and recipe.methods[0].name == f["params"]["methods.0"]
        assert recipe.output_dir == str(search_dir / "front" / f"{f['number']:04d}")
    page = build_report(search_dir, measure_latency=False).read_text()
    assert "<h2>Pareto front of the search</h2>" in page
    assert re.search(r"<img class='plot' alt='Pareto front: loss against trainable_params' "
                     r"src='data:image/png;base64,", page)
    rows = re.findall(r"<tr><td>(\d+)</td>", page.split("<table id='front'>")[1].split("</table>")[0])
    assert sorted(map(int, rows)) == sorted(f["number"] for f in summary["pareto_front"])
    assert "http://" not in page and "https://" not in page
    markdown = (search_dir / "report.md").read_text()
    assert f"Pareto front: {len(summary['pareto_front'])} trials" in markdown
    assert (search_dir / "plots" / "pareto_front.png").is_file()
    status = api.tune_status(search_dir)
    assert "minimize validation loss, minimize trainable_params" in status
    assert f"Pareto front ({len(summary['pareto_front'])} trials):" in status


def test_costs_are_each_trials_own_latency_and_peak_memory(tiny_model_dir, tmp_path):
    """Latency and peak memory as objectives: read from the trial's run, and the peak is the
    trial's, not that of an earlier, bigger allocation of the same process."""
    big = bytearray(400 * 2**20)
    big[:: 4096] = b"x" * len(big[:: 4096])  # touch every page: 400 MB resident
    before = peak_rss_mb()
    del big
    make_sentences(80).to_csv(tmp_path / "s.csv", index=False)
    raw = recipe_dict(tiny_model_dir, tmp_path / "s.csv", tmp_path / "search", max_steps=3)
    raw["search"] = {"sampler": "grid", "space": {"methods.0": ["full", "freeze"]},
                     "objectives": [{"metric": "loss"}, {"metric": "latency_ms"},
                                    {"metric": "peak_memory_mb"}]}
    search_dir = api.tune(recipe_from_dict(raw))
    table = pd.read_csv(search_dir / "trials.csv")
    assert list(table.state) == ["complete", "complete"]
    for r in table.itertuples():
        run = search_dir / r.run_dir
        assert r.latency_ms == json.loads((run / "latency.json").read_text())["batch_1_ms"] > 0
        summary = json.loads((run / "summary.json").read_text())
        assert r.peak_memory_mb == summary["peak_rss_mb"]
        assert r.peak_memory_mb < before - 200, "the trial's peak includes the earlier 400 MB"
