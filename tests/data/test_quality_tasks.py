"""data.clean (and data.augment where it applies) for causal LMs, masked LMs and image
classification: the planted rows are removed and recorded with their reason, the input files are
untouched, and the fields that do not apply are refused by name."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import make_sentences, recipe_dict
from tailorkit.api import train
from tailorkit.config.data import ChatColumns
from tailorkit.config.quality import CleanConfig
from tailorkit.data.cleaning.changes import counts
from tailorkit.data.cleaning.chat import clean_chat_frames
from tailorkit.data.cleaning.images import clean_image_sets, pixel_key
from tailorkit.data.images import ImageSet
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict

MOJIBAKE = "caf\u00e9 au lait?".encode().decode("cp1252")  # UTF-8 read as cp1252


def _reasons(changes, action="removed") -> dict[int, str]:
    return {c.row: c.reason for c in changes if c.action == action}


# -- instruction data ---------------------------------------------------------------------------------

def test_instruction_rows_are_repaired_deduplicated_and_checked_for_leakage():
    train_rows = [("What is AI?", "AI is the study of thinking machines."),       # row 1
                  ("what is  AI?", "AI is the study of thinking machines."),      # 2: duplicate of 1
                  ("What is AI?", "Something else entirely."),                    # 3: another answer: kept
                  (MOJIBAKE, "A coffee with milk."),                              # 4: repaired
                  ("Write code", "def f():\r\n    return 1\n\n\n\nDone.  "),     # 5: repaired, lines kept
                  ("Say hi", "\ufffd\ufffd"),                                     # 6: empty after repair
                  ("Leaked question", "leaked answer"),                          # 7: in test
                  ("Tell me a long story", " ".join(["word"] * 40)),              # 8: too long
                  ("A generic &amp; typed identity?", "function identity<T>(arg: T): T {}")]  # 9: tags kept
    train = pd.DataFrame(train_rows, columns=["prompt", "completion"])
    test = pd.DataFrame([("Leaked  question", "Leaked answer")], columns=["prompt", "completion"])
    given = train.copy()
    cleaned = clean_chat_frames({"train": train, "test": test}, CleanConfig(max_words=30),
                                "prompt_completion", ChatColumns())
    assert _reasons(cleaned.changes) == {2: "duplicate", 6: "empty", 7: "leakage", 8: "too_long"}
    kept = cleaned.frames["train"]
    assert list(kept.index + 1) == [1, 3, 4, 5, 9]
    assert kept.loc[8].tolist() == ["A generic & typed identity?", "function identity<T>(arg: T): T {}"]
    assert kept.loc[3, "prompt"] == "café au lait?"
    assert kept.loc[4, "completion"] == "def f():\n    return 1\n\nDone."  # indentation and lines kept
    assert {c.reason for c in cleaned.changes if c.action == "repaired"} == {"prompt_repaired",
                                                                              "completion_repaired"}
    assert train.equals(given)  # the frame given is not modified
    assert cleaned.frames["test"].equals(test)  # test is only a reference


@pytest.mark.parametrize("as_json", [True, False])
def test_every_turn_of_a_conversation_is_repaired_and_whole_conversations_compared(as_json):
    def chat(user, reply):
        turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": user},
                 {"role": "assistant", "content": reply}]
        return json.dumps(turns) if as_json else turns

    frame = pd.DataFrame({"messages": [chat("Hi there\r\n", "Hello!"), chat("hi   there", "Hello!"),
                                       chat(MOJIBAKE, "Coffee."), chat("Hi there", "\ufffd")]})
    cleaned = clean_chat_frames({"train": frame}, CleanConfig(), "messages", ChatColumns())
    assert _reasons(cleaned.changes) == {2: "duplicate", 4: "empty"}
    kept = cleaned.frames["train"]["messages"].tolist()
    turns = [json.loads(t) if as_json else t for t in kept]
    assert turns[0][1]["content"] == "Hi there" and turns[1][1]["content"] == "café au lait?"
    assert isinstance(kept[0], str) == as_json  # written back as it came
    assert (json.loads(frame.loc[0, "messages"]) if as_json else frame.loc[0, "messages"])[1]["content"] \
        == "Hi there\r\n"  # the input's turns are untouched


def test_near_duplicate_examples_go_with_near_duplicates():
    base = "Explain how the tides work, in two sentences please"
    frame = pd.DataFrame({"instruction": [base, base + "!", "Name three primary colours"],
                          "output": ["The moon pulls the water."] * 2 + ["Red, yellow and blue."]})
    cleaned = clean_chat_frames({"train": frame}, CleanConfig(near_duplicates=0.8), "alpaca", ChatColumns())
    assert _reasons(cleaned.changes) == {2: "near_duplicate"}


def test_tailor_data_clean_reads_instruction_data(tmp_path, capsys):
    from tailorkit import cli

    turns = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
             for q, a in [("Hi\r\n", "Hello!"), ("hi", "Hello!"), ("Name a colour", "Blue")]]
    path = tmp_path / "chats.jsonl"
    pd.DataFrame({"messages": turns}).to_json(path, orient="records", lines=True)
    before = path.read_bytes()
    out = tmp_path / "clean.jsonl"
    assert cli.main(["data", "clean", str(path), "--format", "auto", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "format messages" in printed and "removed 1: duplicate 1" in printed
    repaired = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert pd.read_json(out, lines=True)["messages"].tolist() == [repaired, turns[2]]
    changes = pd.read_csv(tmp_path / "clean.changes.csv")
    assert changes["reason"].tolist() == ["messages_repaired", "duplicate"]
    assert path.read_bytes() == before
    code = cli.main(["data", "clean", str(path), "--format", "auto", "--output", str(tmp_path / "x.csv"),
                     "--label-errors", "remove"])
    assert code != 0
    assert "--label-errors: instruction data has no labels" in capsys.readouterr().err


QA = [("What is the capital of France?", "The capital of France is Paris."),
      ("Translate good morning into German.", "Guten Morgen."),
      ("Hello!", "How can I help you today?"), ("Name a colour.", "Blue."),
      ("Count to three.", "One, two, three."), ("What is two plus two?", "Four.")]


def _lm_recipe(model, data, out) -> dict:
    return {"task": "causal_lm", "model": {"name": str(model), "max_length": 64},
            "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.2}, "clean": {}},
            "methods": ["full"], "generation": {"samples": 0},
            "train": {"epochs": 1, "batch_size": 8, "lr": 1e-2, "progress": False, "threads": 1},
            "output_dir": str(out)}


def test_a_causal_lm_run_cleans_its_data_and_trains(tiny_llama, tmp_path):
    rows = [{"prompt": f"{q} (#{i})", "completion": a} for i in range(8) for q, a in QA]  # 48 distinct
    rows += [dict(rows[0]), dict(rows[1])]  # exact duplicates
    rows.append({"prompt": "Garbled reply", "completion": "\ufffd\ufffd\ufffd"})
    path = tmp_path / "qa.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    before = path.read_bytes()
    run = train(recipe_from_dict(_lm_recipe(tiny_llama, path, tmp_path / "run")))
    assert path.read_bytes() == before
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["loss"] > 0
    changes = pd.read_csv(run / "data" / "changes.csv")
    removed = changes[changes["action"] == "removed"]
    assert set(removed["reason"]) <= {"duplicate", "empty", "leakage"} and "empty" in set(removed["reason"])
    assert (removed["reason"].isin(["duplicate", "leakage"])).sum() >= 1  # a copy in train, or across splits
    assert summary["data_quality"]["counts"]["train"]["removed"]["empty"] == 1
    written = pd.read_json(run / "data" / "train.jsonl", lines=True)  # the split it trained on
    assert len(written) == summary["data"]["train"]
    assert not written["completion"].str.contains("\ufffd").any()


def test_causal_lm_refuses_label_fields_and_augment(tiny_llama, tmp_path):
    recipe = _lm_recipe(tiny_llama, tmp_path / "qa.csv", tmp_path / "run")
    recipe["data"]["clean"] = {"label_errors": "remove", "label_conflicts": "drop"}
    with pytest.raises(TailorError) as err:
        recipe_from_dict(recipe)
    assert "data.clean.label_errors: 'remove' does not apply to task causal_lm (instruction data has no " \
           "labels)" in str(err.value)
    assert "data.clean.label_conflicts" in str(err.value)
    recipe["data"]["clean"] = {"label_errors": "off"}  # saying off is fine
    recipe_from_dict(recipe)
    recipe["data"]["augment"] = {}
    with pytest.raises(TailorError, match=r"data.augment: task causal_lm does not run it .*word edits"):
        recipe_from_dict(recipe)


# -- masked-LM text ------------------------------------------------------------------------------------

def test_an_mlm_run_cleans_and_augments_its_text(tiny_model_dir, tmp_path):
    frame = make_sentences(80)[["text"]]
    frame.loc[3, "text"] = "the food was " + MOJIBAKE
    frame = pd.concat([frame, frame.iloc[:6], pd.DataFrame({"text": ["  "]})], ignore_index=True)
    path = tmp_path / "corpus.csv"
    frame.to_csv(path, index=False)
    before = path.read_bytes()
    recipe = recipe_dict(tiny_model_dir, path, tmp_path / "run", epochs=1)
    recipe["task"] = "mlm"
    recipe["data"] |= {"clean": {"splits": ["train"]}, "augment": {"per_example": 1, "ops": ["swap"]}}
    run = train(recipe_from_dict(recipe))
    assert path.read_bytes() == before
    summary = json.loads((run / "summary.json").read_text())
    train_counts = summary["data_quality"]["counts"]["train"]
    assert train_counts["removed"]["duplicate"] + train_counts["removed"].get("leakage", 0) >= 1
    assert train_counts["repaired"]["text_repaired"] >= 1 and train_counts["added"]["eda:swap"] >= 1
    assert "label_error" not in json.dumps(summary["data_quality"])  # no labels: never searched
    assert summary["test"]["loss"] > 0


def test_mlm_refuses_class_fields(tiny_model_dir, sentiment_csv, tmp_path):
    recipe = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "run")
    recipe["task"] = "mlm"
    recipe["data"] |= {"augment": {"balance": True}}
    with pytest.raises(TailorError, match=r"data.augment.balance: True does not apply to task mlm"):
        recipe_from_dict(recipe)


# -- images --------------------------------------------------------------------------------------------

def _noise(seed: int, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_duplicate_conflicting_and_leaked_images():
    images = np.stack([_noise(0), _noise(1), _noise(0), _noise(2), _noise(2), _noise(2), _noise(3)])
    labels = np.array([0, 0, 0, 0, 1, 1, 1])  # image 2 in rows 4-6: labels a, b, b
    train_set = ImageSet("train", images, labels, ["a", "b"])
    test_set = ImageSet("test", np.stack([_noise(3), _noise(9)]), np.array([1, 0]), ["a", "b"])
    cleaned = clean_image_sets({"train": train_set, "test": test_set}, CleanConfig())
    assert _reasons(cleaned.changes) == {3: "duplicate", 5: "label_conflict", 6: "label_conflict",
                                         7: "leakage"}
    assert _reasons(cleaned.changes, "relabelled") == {4: "label_conflict"}  # majority b
    kept = cleaned.sets["train"]
    assert [kept.classes[i] for i in kept.labels] == ["a", "a", "b"]
    assert [pixel_key(x) for x in kept.images] == [pixel_key(_noise(s)) for s in (0, 1, 2)]
    assert list(train_set.labels) == [0, 0, 0, 0, 1, 1, 1]  # the set given is untouched
    leak = next(c for c in cleaned.changes if c.reason == "leakage")
    assert leak.detail == "same pixels as test image 1 (test[0])" and leak.text == "train[6]"
    dropped = clean_image_sets({"train": train_set}, CleanConfig(label_conflicts="drop"))
    assert counts(dropped.changes)["train"]["removed"] == {"duplicate": 1, "label_conflict": 3}


def test_near_duplicate_images_by_perceptual_hash():
    """A resized, slightly brightened copy has other pixels but (nearly) the same pHash."""
    def photo(seed):  # smooth shapes, as photos are; pHash reads low frequencies
        y, x = np.mgrid[0:32, 0:32]
        rng = np.random.default_rng(seed)
        a, b, c = rng.uniform(0.1, 0.4, 3)
        base = 127 + 120 * np.sin(a * x + b * y + c * x * y / 16)
        return np.repeat(base[:, :, None], 3, axis=2).astype(np.uint8)

    original = photo(1)
    copy = np.asarray(Image.fromarray(original).resize((48, 48)).resize((32, 32)), dtype=np.int16) + 6
    copy = np.clip(copy, 0, 255).astype(np.uint8)
    assert pixel_key(copy) != pixel_key(original)
    images = np.stack([original, photo(2), copy, photo(3)])
    train_set = ImageSet("train", images, np.array([0, 1, 0, 1]), ["a", "b"])
    test_set = ImageSet("test", np.stack([photo(3)[::-1]]), np.array([1]), ["a", "b"])  # flipped: no leak
    exact = clean_image_sets({"train": train_set, "test": test_set}, CleanConfig())
    assert exact.changes == []
    near = clean_image_sets({"train": train_set, "test": test_set}, CleanConfig(near_duplicates=0.9))
    assert _reasons(near.changes) == {3: "near_duplicate"}
    leak = clean_image_sets({"train": train_set, "test": ImageSet("test", images[2:3], np.array([0]),
                                                                  ["a", "b"])},
                            CleanConfig(near_duplicates=0.9))
    assert _reasons(leak.changes) == {1: "leakage", 3: "near_duplicate"}  # the original: near the test copy
    assert re.fullmatch(r"near duplicate \(similarity 0\.9\d\d\) of test image 1 \(test\[0\]\)",
                        next(c.detail for c in leak.changes if c.row == 1))


def test_an_image_run_cleans_its_folders(tmp_path):
    folder, test_folder = tmp_path / "imgs", tmp_path / "test"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        (test_folder / label).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(_noise(100 * (label == "b") + i, 16)).save(folder / label / f"{i}.png")
        Image.fromarray(_noise(500 + (label == "b"), 16)).save(test_folder / label / "t.png")
    shutil.copy(folder / "a" / "0.png", folder / "a" / "copy.png")  # a duplicate
    shutil.copy(test_folder / "b" / "t.png", folder / "b" / "leak.png")  # a test image in train
    recipe = {"task": "image_classification", "model": {"name": "mobilenet-v2", "pretrained": False},
              "data": {"train": str(folder), "test": str(test_folder), "clean": {},
                       "image": {"size": 32, "augment": "none"}, "split": {"validation": 0.2}},
              "methods": ["full"],
              "train": {"epochs": 1, "batch_size": 8, "progress": False, "threads": 1},
              "output_dir": str(tmp_path / "run")}
    run = train(recipe_from_dict(recipe))
    changes = pd.read_csv(run / "data" / "changes.csv")
    found = {(r.reason, r.text.rsplit("/", 2)[-2] + "/" + r.text.rsplit("/", 1)[-1])
             for r in changes.itertuples()}
    assert ("leakage", "b/leak.png") in found
    copies = [reason for reason, name in found if name in ("a/0.png", "a/copy.png")]
    assert copies in (["duplicate"], ["leakage"])  # one copy goes: both in train, or one in validation
    assert (folder / "a" / "copy.png").exists()  # files are only read
    assert json.loads((run / "summary.json").read_text())["data_quality"]["counts"]


def test_image_runs_refuse_text_fields_and_augment(tmp_path):
    recipe = {"task": "image_classification", "model": {"name": "mobilenet-v2", "pretrained": False},
              "data": {"name": "digits", "clean": {"max_words": 80}}, "methods": ["full"],
              "output_dir": str(tmp_path / "run")}
    with pytest.raises(TailorError, match=r"data.clean.max_words: 80 does not apply to task "
                                          r"image_classification \(it reads text"):
        recipe_from_dict(recipe)
    recipe["data"] = {"name": "digits", "augment": {}}
    with pytest.raises(TailorError, match=r"data.augment: .*data.image \(augment: basic or strong, mixup"):
        recipe_from_dict(recipe)
