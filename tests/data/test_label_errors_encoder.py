"""`data.clean.label_error_features: encoder`: label errors from a frozen encoder's cached
features, on the tiny BERT: planted flips are found, the features are computed once, and a
model that is not a text encoder is refused with the field that named it."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from conftest import NEGATIVE, POSITIVE, recipe_dict
from tailorkit import cli
from tailorkit.api import train
from tailorkit.config.quality import CleanConfig
from tailorkit.data import feature_cache
from tailorkit.data.cleaning.clean import TableColumns, clean_frames
from tailorkit.data.cleaning.encoder_features import Encoder, encoder_features
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict

FLIPS = [5, 22, 47, 70]  # positions whose label is planted wrong
ENCODER_CLEAN = {"dedupe": False, "label_error_features": "encoder"}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TAILORKIT_CACHE", str(tmp_path / "cache"))


def _flipped(n: int = 100) -> pd.DataFrame:
    """Rows whose class is one of two cue words per class (twice) among filler; FLIPS mislabelled."""
    rng = random.Random(0)
    filler = ["the", "a", "movie", "film", "was", "is", "very", "plot", "acting", "story"]
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        cue = rng.choice((POSITIVE if positive else NEGATIVE)[:2])
        label = "pos" if positive != (i in FLIPS) else "neg"
        rows.append({"text": " ".join([cue, cue] + rng.sample(filler, 3)), "label": label})
    return pd.DataFrame(rows)


def _encoder(model_dir, **kw) -> Encoder:
    return Encoder(str(model_dir), "model.name", max_length=32, progress=False, **kw)


def test_encoder_features_find_planted_flips(tiny_model_dir):
    frame = _flipped()
    cfg = CleanConfig(**ENCODER_CLEAN, label_errors="remove")
    cleaned = clean_frames({"train": frame}, cfg, TableColumns("text", "label"), False,
                           _encoder(tiny_model_dir))
    removed = sorted(c.row - 1 for c in cleaned.changes if c.reason == "label_error")
    assert removed == FLIPS
    assert sorted(set(frame.index) - set(cleaned.frames["train"].index)) == FLIPS


def test_features_are_cached_on_disk_and_reused(tiny_model_dir, monkeypatch):
    texts = _flipped()["text"].tolist()
    first, hit = encoder_features(_encoder(tiny_model_dir), texts)
    assert not hit and first.shape == (len(texts), 32)

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran although the features were cached")

    monkeypatch.setattr(feature_cache, "extract", no_model)
    again, hit = encoder_features(_encoder(tiny_model_dir), texts)
    assert hit and (again == first).all()
    with pytest.raises(AssertionError, match="the model ran"):  # other texts: a new key
        encoder_features(_encoder(tiny_model_dir), texts[:-1])


def test_a_model_that_is_not_an_encoder_is_refused(tiny_llama, tmp_path):
    texts = ["good film", "bad film"]
    with pytest.raises(TailorError, match=r"^data.clean.label_error_model: 'no-such-model' is neither"):
        encoder_features(Encoder("no-such-model", "data.clean.label_error_model"), texts)
    with pytest.raises(TailorError, match=r"^model.name: .*tiny-llama is a generative \(decoder\) model; "
                                          r"label-error features need a text encoder"):
        encoder_features(Encoder(str(tiny_llama), "model.name"), texts)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TailorError, match=r"^--model: .*empty has no config.json"):
        encoder_features(Encoder(str(tmp_path / "empty"), "--model"), texts)
    with pytest.raises(TailorError, match=r"label_error_features: encoder needs a model"):
        clean_frames({"train": _flipped()}, CleanConfig(**ENCODER_CLEAN), TableColumns("text", "label"),
                     False)
    with pytest.raises(ValueError, match="label_error_model is read only with label_error_features: encoder"):
        CleanConfig(label_error_model="minilm-l6")


def test_a_run_reads_the_recipe_model_by_default(tiny_model_dir, tmp_path):
    path = tmp_path / "train.csv"
    _flipped().to_csv(path, index=False)
    raw = recipe_dict(tiny_model_dir, path, tmp_path / "run", epochs=1)
    raw["data"] |= {"split": {"validation": 0.1, "test": 0.1, "seed": 0},
                    "clean": {**ENCODER_CLEAN, "splits": ["train"]}}
    run = train(recipe_from_dict(raw))
    counts = json.loads((run / "summary.json").read_text())["data_quality"]["counts"]["train"]
    flagged = pd.read_csv(run / "data" / "changes.csv").query("reason == 'label_error'")
    assert counts["flagged"]["label_error"] == len(flagged)
    assert len(flagged) >= 2 and set(flagged["row"] - 1) <= set(FLIPS)  # the flips the split left in train


def test_cli_clean_with_an_encoder(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "reviews.csv"
    _flipped().to_csv(data, index=False)
    out = tmp_path / "out.csv"
    base = ["data", "clean", str(data), "--output", str(out), "--no-dedupe", "--label-errors", "remove"]
    assert cli.main(base + ["--label-error-features", "encoder"]) == 2
    assert "--label-error-features encoder needs --model" in capsys.readouterr().err
    assert cli.main(base + ["--model", str(tiny_model_dir)]) == 2
    assert "--model is read only with --label-error-features encoder" in capsys.readouterr().err
    assert cli.main(base + ["--label-error-features", "encoder", "--model", str(tiny_model_dir),
                            "--max-length", "32"]) == 0
    assert "removed 4: label_error 4" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == len(_flipped()) - len(FLIPS)


def test_cli_inspect_reports_label_errors(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "reviews.csv"
    _flipped().to_csv(data, index=False)
    base = ["data", "inspect", str(data), "--label-errors", "encoder"]
    assert cli.main(base) == 2
    assert "--label-errors encoder needs --model" in capsys.readouterr().err
    report = tmp_path / "r.json"
    assert cli.main(base + ["--model", str(tiny_model_dir), "--max-length", "32", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "likely label errors (cleanlab, out-of-fold logistic regression on " in out and "4 (4.0%)" in out
    found = json.loads(report.read_text())["label_errors"]
    assert sorted(found["rows"]) == [i + 1 for i in FLIPS] and found["features"] == "encoder"
    assert cli.main(["data", "inspect", str(data), "--label-errors", "tfidf"]) == 0
    assert "on TF-IDF" in capsys.readouterr().out
