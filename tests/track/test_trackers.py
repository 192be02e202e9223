"""train.report_to: TensorBoard and MLflow receive what metrics.jsonl holds and, at the end, the
run's summary and recipe (read back with each tool's own reader), and a tracker that is not
installed is a one-line error naming its package."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import recipe_dict
from tailorkit import api
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict
from tailorkit.report.html import build_report
from tailorkit.track.trackers import check_installed


def jsonl(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


MISSING = [m for m in ("tensorboard", "mlflow") if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(bool(MISSING), reason=f"{MISSING} not installed (scripts/setup.sh installs them)")
def test_tensorboard_and_mlflow_hold_the_logged_metrics(tiny_model_dir, sentiment_csv, tmp_path):
    raw = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "run", epochs=1,
                      report_to=["tensorboard", "mlflow"])
    run_dir = api.train(recipe_from_dict(raw))
    records = jsonl(run_dir)
    losses = {r["step"]: r["loss"] for r in records if r["kind"] == "train"}
    val = next(r for r in records if r.get("split") == "validation")
    test = next(r for r in records if r.get("split") == "test")

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    assert {e.step: e.value for e in events.Scalars("train/loss")} == pytest.approx(losses)
    assert events.Scalars("validation/accuracy")[-1].value == pytest.approx(val["accuracy"])
    assert events.Scalars("test/accuracy")[-1].value == pytest.approx(test["accuracy"])
    for name in ("summary.json", "recipe.yaml"):  # the files, as text (TensorBoard has no artefacts)
        shown = events.Tensors(f"{name}/text_summary")[-1].tensor_proto.string_val[0].decode()
        assert [line.removeprefix("    ") for line in shown.splitlines()] == \
            (run_dir / name).read_text().splitlines()

    from mlflow.tracking import MlflowClient

    ids = json.loads((run_dir / "tracking.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=ids["uri"])
    run = client.get_run(ids["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.005" and run.data.params["methods"] == '[{"full": {}}]'
    history = {m.step: m.value for m in client.get_metric_history(ids["run_id"], "train/loss")}
    assert history == pytest.approx(losses)
    assert run.data.metrics["test/accuracy"] == pytest.approx(test["accuracy"])
    # the run's files as artefacts, byte for byte, stored beside the run (not in ./mlruns)
    assert sorted(a.path for a in client.list_artifacts(ids["run_id"])) == ["recipe.yaml", "summary.json"]
    for name in ("recipe.yaml", "summary.json"):
        copy = client.download_artifacts(ids["run_id"], name, str(tmp_path))
        assert Path(copy).read_bytes() == (run_dir / name).read_bytes()
    assert run.info.artifact_uri.startswith((run_dir / "mlartifacts").resolve().as_uri())

    page = build_report(run_dir, measure_latency=False)  # a report made later joins the same run
    assert "report.html" in [a.path for a in client.list_artifacts(ids["run_id"])]
    copy = client.download_artifacts(ids["run_id"], "report.html", str(tmp_path))
    assert Path(copy).read_bytes() == page.read_bytes()


class Crash(Exception):
    """Stands in for kill -9: the process dies between checkpoints."""


@pytest.mark.skipif(bool(MISSING), reason=f"{MISSING} not installed (scripts/setup.sh installs them)")
def test_a_run_resumed_after_a_crash_sends_each_record_to_the_trackers_once(tiny_model_dir, sentiment_csv,
                                                                            tmp_path, monkeypatch):
    from tailorkit.train.loop import Trainer

    raw = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "run", epochs=2, checkpoint_steps=4,
                      eval_steps=3, report_to=["tensorboard", "mlflow"])
    step = Trainer._step

    def crashing_step(self, group, trainable):  # steps 5 and 6 were tracked, the checkpoint is at 4
        if self.state.step + 1 == 7:
            raise Crash
        return step(self, group, trainable)

    monkeypatch.setattr(Trainer, "_step", crashing_step)
    with pytest.raises(Crash):
        api.train(recipe_from_dict(raw))
    monkeypatch.setattr(Trainer, "_step", step)
    run_dir = api.resume(tmp_path / "run")
    records = jsonl(run_dir)
    losses = [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]
    accuracies = [(r["step"], r["accuracy"]) for r in records if r.get("split") == "validation"]
    assert [s for s, _ in losses] == list(range(1, len(losses) + 1)) and 6 in dict(accuracies)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # purge_orphaned_data=False: TensorBoard's reader would otherwise hide a repeated step
    events = EventAccumulator(str(run_dir / "tensorboard"), purge_orphaned_data=False)
    events.Reload()
    assert_same_points(events.Scalars("train/loss"), losses)
    assert_same_points(events.Scalars("validation/accuracy"), accuracies)

    from mlflow.tracking import MlflowClient

    ids = json.loads((run_dir / "tracking.json").read_text())["mlflow"]
    history = MlflowClient(tracking_uri=ids["uri"]).get_metric_history(ids["run_id"], "train/loss")
    assert_same_points(sorted(history, key=lambda m: m.step), losses)


def assert_same_points(points, expected: list[tuple[int, float]]) -> None:
    assert [p.step for p in points] == [step for step, _ in expected]
    assert [p.value for p in points] == pytest.approx([value for _, value in expected])


def test_a_tracker_that_is_not_installed_names_its_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    check_installed(["tensorboard"] if real("tensorboard") else [])
    with pytest.raises(TailorError, match=r"train.report_to: mlflow needs the mlflow package.*"
                                          r"pip install mlflow-skinny==3.17.2"):
        check_installed(["tensorboard", "mlflow"] if real("tensorboard") else ["mlflow"])


def wandb_records(run_dir) -> list:
    """The records of the run's offline W&B file, read with wandb's own reader."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal.datastore import DataStore

    (path,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    store, records = DataStore(), []
    store.open_for_scan(str(path))
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        records.append(record)
    return records


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb not installed "
                                                                      "(scripts/setup.sh installs it)")
def test_wandb_offline_holds_the_logged_metrics_params_and_files(tiny_model_dir, sentiment_csv, tmp_path,
                                                                 monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the tracker itself asks for offline mode
    monkeypatch.setenv("HOME", str(tmp_path))  # wandb's settings and cache stay out of the real home
    raw = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "run", epochs=1, report_to=["wandb"])
    run_dir = api.train(recipe_from_dict(raw))
    losses = {r["step"]: r["loss"] for r in jsonl(run_dir) if r["kind"] == "train"}
    records = wandb_records(run_dir)
    kinds = [r.WhichOneof("record_type") for r in records]
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    assert {h["_step"]: h["train/loss"] for h in history if "train/loss" in h} == pytest.approx(losses)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {i.key: json.loads(i.value_json) for i in run.config.update}
    assert config["train.lr"] == "0.005" and config["methods"] == '[{"full": {}}]'
    saved = {f.path for r in records if r.WhichOneof("record_type") == "files" for f in r.files.files}
    assert {"summary.json", "recipe.yaml"} <= saved and "exit" in kinds
    files = next((run_dir / "wandb").glob("offline-run-*")) / "files"
    for name in ("summary.json", "recipe.yaml"):  # copies, not links: the W&B folder travels alone
        assert not (files / name).is_symlink()
        assert (files / name).read_bytes() == (run_dir / name).read_bytes()


def test_training_with_a_missing_tracker_stops_with_the_message(tiny_model_dir, sentiment_csv, tmp_path,
                                                                monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    raw = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "run", report_to=["wandb"])
    with pytest.raises(TailorError, match="report_to: wandb needs the wandb package"):
        api.train(recipe_from_dict(raw))
    assert not (tmp_path / "run").exists()  # nothing trained, nothing left behind
