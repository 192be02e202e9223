"""train.report_to: TensorBoard and MLflow receive what metrics.jsonl holds (read back with each
tool's own reader), and a tracker that is not installed is a one-line error naming its package."""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import recipe_dict
from tailorkit import api
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict
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

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert {e.step: e.value for e in events.Scalars("train/loss")} == pytest.approx(losses)
    assert events.Scalars("validation/accuracy")[-1].value == pytest.approx(val["accuracy"])
    assert events.Scalars("test/accuracy")[-1].value == pytest.approx(test["accuracy"])

    from mlflow.tracking import MlflowClient

    ids = json.loads((run_dir / "tracking.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=ids["uri"])
    run = client.get_run(ids["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.005" and run.data.params["methods"] == '[{"full": {}}]'
    history = {m.step: m.value for m in client.get_metric_history(ids["run_id"], "train/loss")}
    assert history == pytest.approx(losses)
    assert run.data.metrics["test/accuracy"] == pytest.approx(test["accuracy"])


def test_a_tracker_that_is_not_installed_names_its_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    check_installed(["tensorboard"] if real("tensorboard") else [])
    with pytest.raises(TailorError, match=r"train.report_to: mlflow needs the mlflow package.*"
                                          r"pip install mlflow-skinny==3.17.2"):
        check_installed(["tensorboard", "mlflow"] if real("tensorboard") else ["mlflow"])


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_training_with_a_missing_tracker_stops_with_the_message(tiny_model_dir, sentiment_csv, tmp_path):
    raw = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "run", report_to=["wandb"])
    with pytest.raises(TailorError, match="report_to: wandb needs the wandb package"):
        api.train(recipe_from_dict(raw))
    assert not (tmp_path / "run").exists()  # nothing trained, nothing left behind
