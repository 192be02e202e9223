"""`tailor study`: variants of one recipe run in turn, a failing one is recorded and the rest go
on, a re-run resumes (finished runs kept), and the results table reads the runs' summaries."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from conftest import make_sentences, recipe_dict
from tailorkit.config.study import StudyConfig
from tailorkit.errors import TailorError
from tailorkit.study.plan import load_study, plan_runs, read_plan
from tailorkit.study.run import read_status, run_study, write_tables


def study(tiny_model_dir, sentiment_csv, tmp_path, variants, **fields) -> StudyConfig:
    base = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "unused", epochs=1)
    return StudyConfig.model_validate({"base": base, "variants": variants, "isolate": False,
                                       "output_dir": str(tmp_path / "study"), **fields})


VARIANTS = [{"name": "full"},
            {"name": "head", "set": ["methods=[{freeze: {top: 0}}]"]},
            {"name": "broken", "set": ["data.train=/no/such/file.csv"]},
            {"name": "lora", "set": ["methods=[{lora: {r: 2}}]", "train.lr=1e-2"]}]


def test_failed_variant_is_recorded_and_the_rest_run_then_a_rerun_resumes(tiny_model_dir, sentiment_csv,
                                                                         tmp_path):
    cfg = study(tiny_model_dir, sentiment_csv, tmp_path, VARIANTS)
    study_dir = run_study(cfg, log=lambda line: None)
    status = read_status(study_dir)
    assert {k: s["status"] for k, s in status.items()} == {
        "full": "done", "head": "done", "broken": "failed", "lora": "done"}
    assert "no/such/file.csv" in status["broken"]["error"]
    assert "traceback" not in status["broken"]  # a user's error: its message says it all
    for name in ("full", "head", "lora"):  # the variant after the failed one ran too
        assert (study_dir / "runs" / name / "summary.json").is_file()
    def summary(name):
        return json.loads((study_dir / "runs" / name / "summary.json").read_text())

    trainable = {n: summary(n)["parameters"]["trainable"] for n in ("full", "head", "lora")}
    assert trainable["head"] < trainable["full"] and trainable["lora"] < trainable["full"]

    stamps = {n: (study_dir / "runs" / n / "summary.json").stat().st_mtime_ns
              for n in ("full", "head", "lora")}
    lines: list[str] = []
    run_study(cfg, log=lines.append)  # resumes: nothing finished runs again; the failed one is retried
    assert stamps == {n: (study_dir / "runs" / n / "summary.json").stat().st_mtime_ns for n in stamps}
    assert sum("finished earlier, kept" in line for line in lines) == 3
    assert any("broken: training" in line for line in lines)
    assert read_status(study_dir)["broken"]["status"] == "failed"

    table = write_tables(study_dir)
    assert all(name in table for name in ("full", "head", "broken", "lora"))
    rows = {r["variant"]: r for r in csv.DictReader((study_dir / "results.csv").open())}
    assert rows["broken"]["runs"] == "0" and "file.csv" in rows["broken"]["error"]
    assert float(rows["head"]["trainable_pct"]) < 100 == float(rows["full"]["trainable_pct"])
    for name in ("full", "head", "lora"):
        assert 0 <= float(rows[name]["accuracy_mean"]) <= 1
        assert float(rows[name]["latency_ms"]) > 0 and float(rows[name]["artefact_mb"]) > 0
        assert float(rows[name]["train_seconds"]) > 0 and float(rows[name]["peak_memory_mb"]) > 0
    assert "| variant |" in (study_dir / "results.md").read_text()


def test_seeds_give_mean_and_std_and_a_changed_variant_is_refused(tiny_model_dir, sentiment_csv, tmp_path):
    head = [{"name": "head", "set": ["methods=[{freeze: {top: 0}}]"]}]
    cfg = study(tiny_model_dir, sentiment_csv, tmp_path, head, seeds=[0, 1])
    study_dir = run_study(cfg, log=lambda line: None)
    assert sorted(read_status(study_dir)) == ["head-seed0", "head-seed1"]
    assert yaml.safe_load((study_dir / "runs" / "head-seed1" / "recipe.yaml").read_text())["seed"] == 1
    write_tables(study_dir, measure_latency=False)
    row = next(csv.DictReader((study_dir / "results.csv").open()))
    assert row["runs"] == "2" and row["accuracy_std"] != ""

    fewer = StudyConfig.model_validate({**cfg.model_dump(), "seeds": [0]})  # nothing new to train
    write_tables(run_study(fewer, log=lambda line: None), measure_latency=False)
    row = next(csv.DictReader((study_dir / "results.csv").open()))
    assert row["runs"] == "1" and row["accuracy_std"] == ""  # seed 1's run is kept, outside the table

    changed = {**cfg.model_dump(), "variants": [{"name": "head", "set": ["methods=[full]"]}]}
    with pytest.raises(TailorError, match="variants head differ"):
        run_study(StudyConfig.model_validate(changed), log=lambda line: None)


def test_a_bad_variant_is_refused_before_anything_trains(tiny_model_dir, sentiment_csv, tmp_path):
    cfg = study(tiny_model_dir, sentiment_csv, tmp_path,
                [{"name": "ok"}, {"name": "typo", "set": ["train.lrr=1e-3"]}])
    with pytest.raises(TailorError, match=r"variants\[1\] \(typo\).*lrr.*did you mean 'lr'"):
        plan_runs(cfg)
    assert not (tmp_path / "study").exists()


def test_a_misspelled_metric_is_refused_before_anything_trains(tiny_model_dir, sentiment_csv, tmp_path):
    cfg = study(tiny_model_dir, sentiment_csv, tmp_path, [{"name": "ok"}])
    cfg = cfg.model_copy(update={"metric": "acuracy"})
    with pytest.raises(TailorError, match="metric: 'acuracy' is not a classification metric; did you mean "
                                          "'accuracy'"):
        plan_runs(cfg)
    assert not (tmp_path / "study").exists()


def test_the_default_metric_is_the_tasks_first(tiny_model_dir, tmp_path):
    csv_file = tmp_path / "scores.csv"
    make_sentences(40).to_csv(csv_file, index=False)
    base = recipe_dict(tiny_model_dir, csv_file, tmp_path / "unused", epochs=1)
    base["task"], base["data"]["label_column"] = "regression", "score"
    cfg = StudyConfig.model_validate({"base": base, "variants": [{"name": "full"}], "isolate": False,
                                      "output_dir": str(tmp_path / "study")})
    study_dir = run_study(cfg, log=lambda line: None)
    write_tables(study_dir, measure_latency=False)
    assert read_plan(study_dir).metric == "mse"
    row = next(csv.DictReader((study_dir / "results.csv").open()))
    assert float(row["mse_mean"]) > 0


def test_study_file_reads_a_base_recipe_file_relative_to_it(tiny_model_dir, sentiment_csv, tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(recipe_dict(tiny_model_dir, sentiment_csv, tmp_path)))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "variants": [{"name": "a"}]}))
    cfg = load_study(tmp_path / "s.yaml", ["output_dir=elsewhere"])
    assert cfg.base["model"]["name"] == str(tiny_model_dir) and cfg.output_dir == "elsewhere"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "variants": [{"name": "a b"}]}))
    with pytest.raises(TailorError, match=r"bad.yaml: variants\[0\].name: must be a folder name"):
        load_study(tmp_path / "bad.yaml")


def test_cli_study_runs_each_variant_in_its_own_process(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    """The default (isolate: true): a child process per run, so its peak memory is its own."""
    from tailorkit.cli import main

    base = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "unused", epochs=1)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "base": base, "output_dir": str(tmp_path / "study"),
        "variants": [{"name": "head", "set": ["methods=[{freeze: {top: 0}}]"]}]}))
    assert main(["study", str(tmp_path / "s.yaml")]) == 0
    out = capsys.readouterr().out
    assert "head" in out and "report.html" in out
    assert read_status(tmp_path / "study")["head"]["status"] == "done"

    # a failed variant: the tables and report are written, and the exit status says it failed
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "base": base, "output_dir": str(tmp_path / "study"),
        "variants": [{"name": "head", "set": ["methods=[{freeze: {top: 0}}]"]},
                     {"name": "broken", "set": ["data.train=/no/such/file.csv"]}]}))
    with pytest.raises(SystemExit) as stopped:
        main(["study", str(tmp_path / "s.yaml")])
    assert stopped.value.code == 1 and "report.html" in capsys.readouterr().out
    broken = read_status(tmp_path / "study")["broken"]
    assert "no/such/file.csv" in broken["error"] and "traceback" not in broken
    assert (tmp_path / "study" / "report.html").is_file() and (tmp_path / "study" / "results.md").is_file()
    assert main(["report", str(tmp_path / "study" / "runs" / "head"), "--out", str(tmp_path / "r.html")]) == 0
    assert "run report: head" in (tmp_path / "r.html").read_text()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_the_shipped_bbc_study_plans_eight_strategies():
    from pathlib import Path

    path = Path(__file__).parents[2] / "recipes" / "study-bbc.yaml"
    runs = plan_runs(load_study(path), str(path))
    assert len(runs) == 8 and len({r.key for r in runs}) == 8
    methods = {r.key: next(iter(r.recipe.methods[0].model_dump())) for r in runs}
    assert set(methods.values()) >= {"full", "freeze", "features", "lora", "bottleneck", "prefix"}
    compress = next(r for r in runs if r.key == "lora-int8").recipe.compress
    assert compress.steps[0].name == "quantize"
    assert compress.output_dir == str(Path("runs/study-bbc/runs/lora-int8-compressed"))  # its own folder
    assert all(r.recipe.train.threads == 1 for r in runs)
