"""Clean image splits with the table cleaner's rules, on a hash of each image's decoded pixels:

    exact duplicates within a split (label conflicts: drop, majority, keep, as for text)
    -> near duplicates (with near_duplicates: pHash candidates verified on thumbnails)
    -> leakage: training images also in validation or test, validation images also in test
       (exactly, or nearly with near_duplicates)

Two files that decode to the same pixels (a PNG and its re-save, a copy under another name) are
the same image. Near duplicates (a resized, re-compressed or slightly edited copy) are found as
text near duplicates are: a hash proposes candidate pairs, here pHash (Zauner 2010; imagehash)
at most CANDIDATE_BITS of 64 bits apart, and each pair is kept only if its true similarity
reaches `near_duplicates`: 1 - the mean absolute difference of the two 32x32 grayscale
thumbnails (pixels 0-1), so 0.98 allows a mean difference of 5 levels of 255. The sets given
are never modified: cleaned copies are returned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

from tailorkit.config.quality import CleanConfig
from tailorkit.data.cleaning.changes import Change
from tailorkit.data.cleaning.clean import LEAK_ORDER
from tailorkit.data.cleaning.conflicts import resolve
from tailorkit.data.cleaning.duplicates import exact_groups, linked_groups
from tailorkit.data.images import ImageSet

THUMB = 32  # side of the grayscale thumbnails whose pixels near duplicates are compared on
CANDIDATE_BITS = 8  # pHashes (64 bits) at most this far apart are compared pixel by pixel
BLOCK = 256  # hashes compared at once against a whole split (256 x 60,000 x 8 bytes: 123 MB)


@dataclass
class CleanedImages:
    sets: dict[str, ImageSet]
    changes: list[Change]


def pixel_key(image: np.ndarray) -> str:
    """Equal for images with the same size, channels and pixels, whatever file they came from."""
    array = np.ascontiguousarray(image)
    return hashlib.blake2b(str(array.shape).encode() + array.tobytes(), digest_size=16).hexdigest()


def clean_image_sets(sets: dict[str, ImageSet], cfg: CleanConfig) -> CleanedImages:
    """`sets`: split -> images; each change names the image (its file, or `source[i]`) and its
    1-based position in the split as given."""
    out = dict(sets)
    keys = {name: [pixel_key(image) for image in images.images] for name, images in sets.items()}
    rows = {name: list(range(1, len(images) + 1)) for name, images in sets.items()}  # as given
    changes: list[Change] = []
    if cfg.dedupe:
        for split in cfg.splits:
            if split in out:
                kept = _dedupe(split, out, keys[split], rows[split], cfg, changes)
                out[split], keys[split], rows[split] = _keep(out[split], keys[split], rows[split], kept)
    near = cfg.near_duplicates
    looks = {name: looks_of(images) for name, images in out.items()} if near is not None else {}
    if near is not None:
        for split in cfg.splits:
            if split in out:
                kept = _dedupe(split, out, keys[split], rows[split], cfg, changes, looks[split])
                looks[split] = looks[split].take(kept)
                out[split], keys[split], rows[split] = _keep(out[split], keys[split], rows[split], kept)
    if cfg.leakage:
        for split, references in LEAK_ORDER:
            present = [r for r in references if r in out]
            if split in cfg.splits and split in out and present:
                kept = _leaks(split, out, keys, rows, present, changes, looks, near)
                if near is not None:
                    looks[split] = looks[split].take(kept)
                out[split], keys[split], rows[split] = _keep(out[split], keys[split], rows[split], kept)
    return CleanedImages(out, changes)


@dataclass
class Looks:
    """What near-duplicate search reads of each image: its pHash (one uint64) and a 32x32
    grayscale thumbnail (pixels 0-1)."""

    hashes: np.ndarray
    thumbs: np.ndarray  # (N, THUMB * THUMB) float32

    def take(self, positions: list[int]) -> Looks:
        return Looks(self.hashes[positions], self.thumbs[positions])


def looks_of(images: ImageSet) -> Looks:
    hashes = np.empty(len(images), dtype=np.uint64)
    thumbs = np.empty((len(images), THUMB * THUMB), dtype=np.float32)
    for i, image in enumerate(images.images):
        gray = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).convert("L")
        hashes[i] = np.uint64(int(str(imagehash.phash(gray)), 16))
        thumb = gray.resize((THUMB, THUMB), Image.Resampling.LANCZOS)
        thumbs[i] = np.asarray(thumb, dtype=np.float32).ravel()
    return Looks(hashes, thumbs / 255.0)


def near_pairs(a: Looks, b: Looks, similarity: float, same: bool) -> list[tuple[int, int, float]]:
    """(i, j, similarity) of every image of `a` near one of `b` (i < j when `a` is `b`): pHashes
    at most CANDIDATE_BITS apart, then verified on the thumbnails. Compared in blocks, so memory
    stays bounded."""
    found = []
    for start in range(0, len(a.hashes), BLOCK):
        close = np.bitwise_count(a.hashes[start:start + BLOCK, None] ^ b.hashes[None, :]) <= CANDIDATE_BITS
        if same:
            close &= np.arange(len(b.hashes))[None, :] > np.arange(start, start + len(close))[:, None]
        i, j = np.nonzero(close)
        i += start
        sims = 1.0 - np.abs(a.thumbs[i] - b.thumbs[j]).mean(axis=1)
        found += [(int(x), int(y), float(v)) for x, y, v in zip(i, j, sims, strict=True) if v >= similarity]
    return found


def _near_groups(looks: Looks, similarity: float) -> list[list[int]]:
    """Connected groups of near duplicates (single linkage), two or more, each in order."""
    pairs = near_pairs(looks, looks, similarity, same=True)
    return linked_groups(len(looks.hashes), [(i, j) for i, j, _ in pairs])


def _dedupe(split: str, sets: dict[str, ImageSet], keys: list[str], rows: list[int], cfg: CleanConfig,
            changes: list[Change], looks: Looks | None = None) -> list[int]:
    """The positions kept; `sets[split]` becomes a relabelled copy where a majority label wins.
    Exact duplicates by `keys`, or near duplicates by `looks`."""
    images = sets[split]
    labels = [images.classes[i] for i in images.labels]
    if looks is None:
        groups, reason = exact_groups(keys), "duplicate"
    else:
        groups, reason = _near_groups(looks, cfg.near_duplicates), "near_duplicate"
    decided = resolve(groups, labels, rows, cfg.label_conflicts, False, reason)
    if decided.relabelled:
        new_labels = images.labels.copy()
        for position, label in decided.relabelled.items():
            changes.append(Change(split, rows[position], "relabelled", "label_conflict",
                                  f"{labels[position]} -> {label} (majority of its duplicates)",
                                  images.name_of(position)))
            new_labels[position] = images.classes.index(str(label))
        sets[split] = ImageSet(images.source, images.images, new_labels, images.classes, images.ids,
                               images.skipped)
    for position, (reason, detail) in sorted(decided.removed.items()):
        changes.append(Change(split, rows[position], "removed", reason, detail, images.name_of(position)))
    return [p for p in range(len(images)) if p not in decided.removed]


def _leaks(split: str, sets: dict[str, ImageSet], keys: dict[str, list[str]], rows: dict[str, list[int]],
           references: list[str], changes: list[Change], looks: dict[str, Looks],
           near: float | None) -> list[int]:
    """The positions kept: those whose pixels (or, with `near`, a near duplicate) no reference split
    holds."""
    drop: dict[int, str] = {}
    for name in references:
        first: dict[str, int] = {}
        for position, key in enumerate(keys[name]):
            first.setdefault(key, position)
        for position, key in enumerate(keys[split]):
            if key in first and position not in drop:
                j = first[key]
                drop[position] = f"same pixels as {name} image {rows[name][j]} ({sets[name].name_of(j)})"
        if near is not None:
            for position, j, sim in sorted(near_pairs(looks[split], looks[name], near, same=False),
                                           key=lambda pair: (pair[0], -pair[2])):
                if position not in drop:
                    drop[position] = (f"near duplicate (similarity {sim:.3f}) of {name} image "
                                      f"{rows[name][j]} ({sets[name].name_of(j)})")
    images = sets[split]
    for position, detail in sorted(drop.items()):
        changes.append(Change(split, rows[split][position], "removed", "leakage", detail,
                              images.name_of(position)))
    return [p for p in range(len(images)) if p not in drop]


def _keep(images: ImageSet, keys: list[str], rows: list[int], kept: list[int]
          ) -> tuple[ImageSet, list[str], list[int]]:
    if len(kept) == len(images):
        return images, keys, rows
    subset = images.take(kept)
    subset.skipped = list(images.skipped)  # ImageSet.take leaves them out
    return subset, [keys[p] for p in kept], [rows[p] for p in kept]
