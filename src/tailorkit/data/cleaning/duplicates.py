"""Exact and near-duplicate groups of texts (given as dedupe keys).

Near duplicates: MinHash LSH (Broder 1997; datasketch) over character 5-grams proposes
candidate pairs; each pair is then kept only if its true Jaccard similarity reaches the
threshold, so the answer does not depend on the hashing's luck beyond the candidates it finds.
"""

from __future__ import annotations

from collections import defaultdict

SHINGLE = 5  # characters; short texts (tweets) have too few word n-grams to compare
NUM_PERM = 128


def exact_groups(keys: list[str]) -> list[list[int]]:
    """Positions that share a key, in groups of two or more, each in order, first-seen first."""
    where: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        where[key].append(i)
    return [group for group in where.values() if len(group) > 1]


def shingles(key: str) -> set[str]:
    if len(key) <= SHINGLE:
        return {key}
    return {key[i:i + SHINGLE] for i in range(len(key) - SHINGLE + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _minhashes(sets: list[set[str]], seed: int) -> list:
    from datasketch import MinHash

    return MinHash.bulk([[s.encode() for s in shingle_set] for shingle_set in sets],
                        num_perm=NUM_PERM, seed=seed)


class NearIndex:
    """An LSH index of texts, queried for those at or above `threshold` Jaccard similarity."""

    def __init__(self, keys: list[str], threshold: float, seed: int = 0) -> None:
        self.threshold, self.seed = threshold, seed
        self.sets = [shingles(k) for k in keys]
        self.hashes = _minhashes(self.sets, seed)
        # LSH's own threshold a little lower than ours: fewer missed candidates, each verified anyway
        from datasketch import MinHashLSH

        self.lsh = MinHashLSH(threshold=max(0.05, threshold - 0.1), num_perm=NUM_PERM)
        for i, h in enumerate(self.hashes):
            self.lsh.insert(i, h)

    def matches(self, shingle_set: set[str], minhash) -> list[tuple[int, float]]:
        """(position, similarity) of every indexed text near this one, most similar first."""
        found = []
        for j in self.lsh.query(minhash):
            sim = jaccard(shingle_set, self.sets[j])
            if sim >= self.threshold:
                found.append((j, sim))
        return sorted(found, key=lambda pair: (-pair[1], pair[0]))

    def query(self, keys: list[str]) -> list[list[tuple[int, float]]]:
        """For each of `keys` (another split), the indexed texts near it."""
        sets = [shingles(k) for k in keys]
        return [self.matches(s, h) for s, h in zip(sets, _minhashes(sets, self.seed), strict=True)]


def near_groups(keys: list[str], threshold: float, seed: int = 0) -> list[list[int]]:
    """Connected groups of near duplicates (single linkage), two or more per group, each in order."""
    index = NearIndex(keys, threshold, seed)
    pairs = [(i, j) for i, (s, h) in enumerate(zip(index.sets, index.hashes, strict=True))
             for j, _ in index.matches(s, h)]
    return linked_groups(len(keys), pairs)


def linked_groups(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """The connected groups of two or more of positions 0..n-1 that `pairs` link (union-find),
    each in order, ordered by their first position."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[root(i)].append(i)
    return [g for g in groups.values() if len(g) > 1]
