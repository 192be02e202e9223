"""Feature extraction: cached features, every head kind, save -> load -> predict, bad configs.

The contract suites (tests/contract) step the torch heads on cached features; here whole runs
on the tiny BERT and a from-scratch MobileNetV2 check the rest: the cache is hit and
invalidated, each head learns, and a saved run predicts from raw input what the run predicted
from the cache.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_sentences, recipe_dict
from tailorkit import api
from tailorkit.data import feature_cache
from tailorkit.errors import TailorError
from tailorkit.models.feature_model import FeatureModel
from tailorkit.pipeline import setup_run
from tailorkit.recipe import recipe_from_dict

# head -> least test accuracy on 80 rows (chance: 0.5). Trees on 32 random-BERT features are weaker.
LEARNS = {"linear": 0.75, "mlp": 0.75, "logistic_regression": 0.75, "svm": 0.7,
          "gradient_boosting": 0.65, "random_forest": 0.65}


@pytest.fixture(scope="module")
def sentiment400(tmp_path_factory):
    path = tmp_path_factory.mktemp("features") / "sentiment400.csv"
    make_sentences(400).to_csv(path, index=False)
    return path


def _recipe(model_dir, csv, out, task="classification", **features) -> dict:
    r = recipe_dict(model_dir, csv, out, batch_size=16)
    r["methods"] = [{"features": {"head_lr": 1e-2, **features}}]
    if task == "regression":
        r.update(task="regression", data={**r["data"], "label_column": "score"})
    return r


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """Counts backbone passes (FeatureModel.extract calls); the disk cache goes under tmp_path."""
    monkeypatch.setenv("TAILORKIT_CACHE", str(tmp_path / "cache"))
    feature_cache.clear_memory_cache()
    calls = []
    real = FeatureModel.extract

    def extract(self, **inputs):
        calls.append(len(next(iter(inputs.values()))))
        return real(self, **inputs)

    monkeypatch.setattr(FeatureModel, "extract", extract)
    return calls


@pytest.mark.parametrize("head", sorted(LEARNS))
def test_head_learns_and_saved_run_predicts_the_same(head, tiny_model_dir, sentiment400, tmp_path):
    run = api.train(recipe_from_dict(_recipe(tiny_model_dir, sentiment400, tmp_path / "run", head=head)))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= LEARNS[head], summary["test"]["accuracy"]
    f = summary["features"]
    assert f["head"] == head and f["dim"] == 32 and f["pooling"] == "mean"
    assert set(f["from_cache"]) == {"train", "validation", "test"}
    # both phases lie inside the run's wall clock; the head's covers its training steps (0.01 s rounding)
    assert f["head_seconds"] >= summary["train_seconds"] - 0.01
    assert f["extract_seconds"] + f["head_seconds"] <= summary["wall_seconds"] + 0.02
    assert {p.name for p in (run / "model").iterdir()} >= {"features.json", "labels.json"}

    # from raw text through backbone + head, as `tailor predict` does
    expected = pd.read_csv(run / "predictions_test.csv")
    got = api.predict(run, expected["text"].tolist())
    assert (got["prediction"] == expected["prediction"]).all()
    np.testing.assert_allclose(got["p_pos"], expected["p_pos"], atol=1e-5)
    # and `tailor eval` on a labelled file
    metrics = api.evaluate(run, str(sentiment400))
    assert metrics["accuracy"] > 0.6


@pytest.mark.parametrize("head", ["linear", "ridge", "svr"])
def test_regression_heads(head, tiny_model_dir, sentiment400, tmp_path):
    recipe = _recipe(tiny_model_dir, sentiment400, tmp_path / "run", task="regression", head=head)
    run = api.train(recipe_from_dict(recipe))
    test = json.loads((run / "summary.json").read_text())["test"]
    assert test["r2"] > 0.3, test
    expected = pd.read_csv(run / "predictions_test.csv")
    got = api.predict(run, expected["text"].tolist())
    np.testing.assert_allclose(got["prediction"], expected["prediction"], atol=1e-5)


def test_backbone_stays_bit_identical(tiny_model_dir, sentiment_csv, make_trainer, tmp_path):
    trainer = make_trainer(_recipe(tiny_model_dir, sentiment_csv, tmp_path / "run", head_epochs=3))
    backbone = trainer.handle.model.backbone
    before = {n: t.clone() for n, t in backbone.state_dict().items()}
    trainer.fit()
    assert all(torch.equal(before[n], t) for n, t in backbone.state_dict().items())
    assert not backbone.training  # the loop's train() leaves the backbone in eval mode


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_cache_is_hit_and_invalidated(cache, counted, tiny_model_dir, sentiment_csv, tmp_path):
    def setup(**change):
        raw = _recipe(tiny_model_dir, sentiment_csv, tmp_path / "run", cache=cache)
        raw["methods"][0]["features"].update(change.pop("features", {}))
        raw["model"].update(change.pop("model", {}))
        raw["data"].update(change)
        calls.clear()
        s = setup_run(recipe_from_dict(raw), tmp_path)
        return s.info["features"]["from_cache"], sum(calls)

    calls = counted
    assert setup() == ({"train": False, "validation": False, "test": False}, 120)
    assert setup() == ({"train": True, "validation": True, "test": True}, 0)
    assert setup(model={"max_length": 8})[1] == 120  # shorter inputs: other features
    assert setup(features={"pooling": "cls"})[1] == 120
    assert setup(features={"head": "mlp", "head_epochs": 2})[1] == 0  # the head is not in the key
    other = tmp_path / "other.csv"
    make_sentences(120, seed=1).to_csv(other, index=False)
    assert setup(train=str(other))[1] == 120
    files = list((tmp_path / "cache" / "features").glob("*")) if cache == "disk" else []
    assert (len(files) == 12 and all(p.suffix == ".safetensors" for p in files)) or cache == "memory"


def test_disk_cache_reused_by_a_later_run(counted, tiny_model_dir, sentiment_csv, tmp_path):
    first = api.train(recipe_from_dict(_recipe(tiny_model_dir, sentiment_csv, tmp_path / "a", cache="disk")))
    feature_cache.clear_memory_cache()
    counted.clear()
    second = api.train(recipe_from_dict(_recipe(tiny_model_dir, sentiment_csv, tmp_path / "b", cache="disk")))
    assert sum(counted) == 0
    summary = json.loads((second / "summary.json").read_text())
    assert all(summary["features"]["from_cache"].values())
    assert (pd.read_csv(first / "predictions_test.csv")["p_pos"]
            == pd.read_csv(second / "predictions_test.csv")["p_pos"]).all()


def test_image_features_run(tmp_path, write_image):
    recipe = {"task": "image_classification", "model": {"name": "mobilenet-v2", "pretrained": False},
              "data": {"name": "digits", "max_train_samples": 200, "max_eval_samples": 64,
                       "image": {"size": 32}},
              "methods": [{"features": {"head_epochs": 20, "head_lr": 1e-2}}],
              "train": {"batch_size": 32, "progress": False, "threads": 1},
              "output_dir": str(tmp_path / "run")}
    run = api.train(recipe_from_dict(recipe))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["features"]["dim"] == 1280 and summary["test"]["accuracy"] > 0.4  # chance 0.1

    # raw pixels through backbone + head give the run's test predictions
    from tailorkit.data.image_data import EncodedImages, prepare_image_data
    from tailorkit.data.image_transforms import ImageTransform
    from tailorkit.evaluate.evaluator import predict_logits

    r, handle, labels, _ = api.load_run(run)
    test = prepare_image_data(r.data)[0]["test"]
    logits = predict_logits(handle, EncodedImages(test, ImageTransform(r.data.image, train=False)), 64)
    expected = pd.read_csv(run / "predictions_test.csv")
    assert [labels[i] for i in logits.argmax(-1)] == expected["prediction"].astype(str).tolist()
    frame = api.predict_images(run, [str(write_image("a.png", size=(28, 28)))])
    assert frame["prediction"].iloc[0] in labels


def test_sklearn_head_file_with_foreign_types_is_refused(tiny_model_dir, sentiment_csv, tmp_path):
    run = api.train(recipe_from_dict(_recipe(tiny_model_dir, sentiment_csv, tmp_path / "run",
                                             head="random_forest", options={"n_estimators": 5})))
    spec = run / "model" / "features.json"
    spec.write_text(json.dumps({**json.loads(spec.read_text()), "head": "logistic_regression"}))
    with pytest.raises(TailorError, match="refusing to load"):
        api.load_run(run)


def test_merge_is_refused(tiny_model_dir, sentiment_csv, tmp_path):
    run = api.train(recipe_from_dict(_recipe(tiny_model_dir, sentiment_csv, tmp_path / "run", head_epochs=1)))
    with pytest.raises(TailorError, match="nothing to merge"):
        api.merge(run, tmp_path / "merged")


@pytest.mark.parametrize(("change", "message"), [
    ({"methods": [{"features": {}}, "full"]}, "composes with no other method"),
    ({"methods": [{"features": {"head": "ridge"}}]}, "ridge does not fit task classification"),
    ({"task": "regression", "methods": [{"features": {"head": "svm"}}]}, "svm does not fit task regression"),
    ({"methods": [{"features": {"head": "knn"}}]}, "features.head: must be one of"),
    ({"methods": [{"features": {"options": {"C": 1.0}}}]}, "only scikit-learn heads take options"),
    ({"methods": [{"features": {"head": "logistic_regression", "options": {"Cee": 1.0}}}]},
     "features.options: .*unexpected keyword argument 'Cee'"),
    ({"methods": [{"features": {"head": "svm", "options": {"C": -1}}}]},  # before extraction, not after
     r"features.options: The 'C' parameter of SVC must be a float in the range \(0.0, inf\]. Got -1"),
    ({"methods": [{"features": {"pooling": "max"}}]}, "features.pooling: must be one of"),
    ({"methods": [{"features": {"cache": "redis"}}]}, "features.cache: must be one of"),
    ({"task": "mlm", "methods": ["features"]}, "features needs a classifier or regressor"),
])
def test_bad_configs(change, message, tiny_model_dir, sentiment_csv, tmp_path):
    with pytest.raises(TailorError, match=message):
        recipe_from_dict({**recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "run"), **change})


def test_pooling_is_refused_for_images(tmp_path):
    with pytest.raises(TailorError, match="features.pooling: applies to text models"):
        recipe_from_dict({"task": "image_classification", "model": {"name": "mobilenet-v2"},
                          "data": {"name": "digits"}, "methods": [{"features": {"pooling": "cls"}}]})


def test_bad_option_value_names_the_field(tiny_model_dir, sentiment_csv, tmp_path):
    recipe = _recipe(tiny_model_dir, sentiment_csv, tmp_path / "run", head="logistic_regression",
                     options={"C": -1.0})
    with pytest.raises(TailorError, match=r"features.options: .*'C' parameter"):
        api.train(recipe_from_dict(recipe))
