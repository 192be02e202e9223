"""The four edits of EDA (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for Boosting
Performance on Text Classification Tasks"), on a list of words with a seeded `random.Random`.
Each changes n words; deletion drops each word with probability p but never all of them."""

from __future__ import annotations

import random
from collections.abc import Callable

Synonyms = Callable[[str], list[str]]  # word -> its synonyms (maybe none)


def replaceable(word: str, stop_words: frozenset[str]) -> bool:
    """Words worth a synonym: alphabetic, not a stop word (no @user, #tag, URL or number)."""
    return word.isalpha() and len(word) > 2 and word.lower() not in stop_words


def synonym_replacement(words: list[str], n: int, rng: random.Random, synonyms: Synonyms,
                        stop_words: frozenset[str]) -> list[str]:
    out = list(words)
    candidates = [i for i, w in enumerate(words) if replaceable(w, stop_words)]
    rng.shuffle(candidates)
    replaced = 0
    for i in candidates:
        options = synonyms(words[i].lower())
        if options:
            out[i] = rng.choice(options)
            replaced += 1
            if replaced >= n:
                break
    return out


def random_insertion(words: list[str], n: int, rng: random.Random, synonyms: Synonyms,
                     stop_words: frozenset[str]) -> list[str]:
    """Insert a synonym of a random word at a random place, n times."""
    out = list(words)
    candidates = [w for w in words if replaceable(w, stop_words)]
    for _ in range(n):
        rng.shuffle(candidates)
        for word in candidates:
            options = synonyms(word.lower())
            if options:
                out.insert(rng.randrange(len(out) + 1), rng.choice(options))
                break
    return out


def random_swap(words: list[str], n: int, rng: random.Random) -> list[str]:
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: list[str], p: float, rng: random.Random) -> list[str]:
    if len(words) < 2:
        return list(words)
    out = [w for w in words if rng.random() >= p]
    if len(out) == len(words):  # nothing drawn: delete one, so the row does change
        del out[rng.randrange(len(out))]
    return out or [rng.choice(words)]
