"""Where EDA's synonyms come from.

WordNet 3.0 (Debian's wordnet-base ships the database in /usr/share/wordnet), read by nltk's
WordNet reader; without it, the nearest neighbours of a word in the model's own input embedding
matrix (cosine), among the vocabulary's whole-word tokens: not always synonyms, but words the
model treats as close, and available for any model offline.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import numpy as np

from tailorkit.config.quality import AugmentConfig
from tailorkit.errors import TailorError
from tailorkit.sources import cache_dir

WORDNET_FILE = "data.noun"  # present in every WordNet database folder
NEIGHBOURS = 8
# WordNet 3.0's lexicographer files (lexnames(5WN)): nltk's reader needs this table, which
# Debian's wordnet-base does not ship as a file. Number, name, syntactic category.
LEXNAMES = (
    "adj.all 3", "adj.pert 3", "adv.all 4", "noun.Tops 1", "noun.act 1",
    "noun.animal 1", "noun.artifact 1", "noun.attribute 1", "noun.body 1", "noun.cognition 1",
    "noun.communication 1", "noun.event 1", "noun.feeling 1", "noun.food 1", "noun.group 1",
    "noun.location 1", "noun.motive 1", "noun.object 1", "noun.person 1", "noun.phenomenon 1",
    "noun.plant 1", "noun.possession 1", "noun.process 1", "noun.quantity 1", "noun.relation 1",
    "noun.shape 1", "noun.state 1", "noun.substance 1", "noun.time 1", "verb.body 2",
    "verb.change 2", "verb.cognition 2", "verb.communication 2", "verb.competition 2", "verb.consumption 2",
    "verb.contact 2", "verb.creation 2", "verb.emotion 2", "verb.motion 2", "verb.perception 2",
    "verb.possession 2", "verb.social 2", "verb.stative 2", "verb.weather 2", "adj.ppl 3",
)


def wordnet_installed(folder: str | Path) -> bool:
    return (Path(folder) / WORDNET_FILE).is_file()


class WordNetSynonyms:
    def __init__(self, folder: str | Path) -> None:
        import nltk.data

        source = Path(folder).resolve()
        view = _reader_folder(source)
        for allowed in (str(source), str(view)):  # nltk reads only folders named on its data path
            if allowed not in nltk.data.path:
                nltk.data.path.append(allowed)
        with warnings.catch_warnings():  # "multilingual functions are not available": not used
            warnings.simplefilter("ignore", UserWarning)
            self.reader = _wordnet_reader(view)
        self.cache: dict[str, list[str]] = {}

    def __call__(self, word: str) -> list[str]:
        if word not in self.cache:
            names = {lemma.name().replace("_", " ") for synset in self.reader.synsets(word)
                     for lemma in synset.lemmas()}
            self.cache[word] = sorted(n for n in names if n.lower() != word)
        return self.cache[word]


def _wordnet_reader(folder: Path):
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class Reader(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet"):
            """No mapping to nltk's own download of WordNet (only its multilingual data uses it)."""
            return None

    return Reader(str(folder), None)


def _reader_folder(source: Path) -> Path:
    """`source` as nltk's reader wants it: its files, plus `lexnames` where it lacks one, in the
    tailorkit cache: a copy, 27 MB once (nltk refuses symbolic and hard links that lead out of
    its folder)."""
    if (source / "lexnames").is_file():
        return source
    view = cache_dir() / "wordnet" / hashlib.sha256(str(source).encode()).hexdigest()[:12]
    if not (view / "lexnames").is_file():
        view.mkdir(parents=True, exist_ok=True)
        for path in source.iterdir():
            if path.is_file() and not (view / path.name).exists():
                shutil.copyfile(path, view / path.name)
        table = "".join(f"{i:02d}\t{name.split()[0]}\t{name.split()[1]}\n" for i, name in enumerate(LEXNAMES))
        partial = view / "lexnames.partial"
        partial.write_text(table)
        partial.replace(view / "lexnames")
    return view


def _whole_word(token: str) -> str | None:
    """The word a vocabulary entry stands for, when it is a whole alphabetic word (WordPiece
    marks continuations with ##; SentencePiece and byte-level BPE mark word starts)."""
    if token.startswith("##"):
        return None
    word = token.lstrip("\u2581\u0120")
    return word.lower() if word.isalpha() and len(word) > 2 else None


class EmbeddingNeighbours:
    def __init__(self, vocab: dict[str, int], embeddings: np.ndarray, k: int = NEIGHBOURS) -> None:
        words: dict[str, int] = {}
        for token, index in sorted(vocab.items(), key=lambda item: item[1]):
            word = _whole_word(token)
            if word is not None and word not in words:
                words[word] = index
        self.words = list(words)
        self.position = {w: i for i, w in enumerate(self.words)}
        matrix = embeddings[[words[w] for w in self.words]].astype(np.float32)
        self.unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-8)
        self.k = k
        self.cache: dict[str, list[str]] = {}

    def __call__(self, word: str) -> list[str]:
        if word not in self.cache:
            i = self.position.get(word)
            if i is None:
                return []
            scores = self.unit @ self.unit[i]
            scores[i] = -np.inf
            top = np.argpartition(-scores, self.k)[:self.k]
            self.cache[word] = [self.words[j] for j in top[np.argsort(-scores[top])]]
        return self.cache[word]


def model_neighbours(model_path: Path) -> EmbeddingNeighbours:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path)
    matrix = model.get_input_embeddings().weight.detach().float().numpy()
    return EmbeddingNeighbours(tokenizer.get_vocab(), matrix)


def synonym_source(cfg: AugmentConfig, model_path: Path | None):
    """The synonyms `cfg.synonyms` asks for; None where no op needs any."""
    if not {"synonym", "insert"} & set(cfg.ops):
        return None
    use_wordnet = cfg.synonyms == "wordnet" or (cfg.synonyms == "auto" and wordnet_installed(cfg.wordnet_dir))
    if use_wordnet:
        if not wordnet_installed(cfg.wordnet_dir):
            raise TailorError(f"data.augment.wordnet_dir: no WordNet database in {cfg.wordnet_dir} "
                              "(install it with: apt-get install wordnet-base), or set "
                              "data.augment.synonyms to embeddings")
        return WordNetSynonyms(cfg.wordnet_dir)
    if model_path is None:
        raise TailorError("data.augment.synonyms: embeddings needs a model (--model NAME); or install "
                          "WordNet (apt-get install wordnet-base)")
    return model_neighbours(model_path)
