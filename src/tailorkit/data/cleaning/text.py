"""Repair one text, and tell what is wrong with it.

ftfy (Speer 2019) undoes mojibake (UTF-8 read as cp1252: "donâ€™t" -> "don't") and odd Unicode;
what it cannot recover (U+FFFD, private-use or unassigned code points: bytes lost before the file
was written) is "garbled" here.
"""

from __future__ import annotations

import html
import re
import unicodedata

import ftfy

from tailorkit.config.quality import CleanConfig

TAG = re.compile(r"<\s*/?\s*[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?\s*>")
ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")
SPACES = re.compile(r"\s+")
LINE_BREAKS = re.compile(r"\r\n?|[\u2028\u2029\x85\x0b\x0c]")
BLANK_LINES = re.compile(r"\n{3,}")


def is_garbled_char(ch: str) -> bool:
    """A character no repair recovers: the replacement character, private-use or unassigned."""
    return ch == "\ufffd" or unicodedata.category(ch) in ("Co", "Cn", "Cs")


def garbled_count(text: str) -> int:
    return sum(is_garbled_char(ch) for ch in text)


def has_mojibake(text: str) -> bool:
    """Text decoded with the wrong codec, which ftfy's encoding repair undoes ("donâ€™t")."""
    return ftfy.fix_encoding(text) != text


def has_html(text: str) -> bool:
    return bool(TAG.search(text) or ENTITY.search(text))


def has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" and ch not in "\n\t " for ch in text)


def repair(text: str, cfg: CleanConfig, keep_lines: bool = False) -> str:
    """The text as `cfg` cleans it (garbled characters stripped only when `cfg.garbled` is strip).
    `keep_lines` (instruction data, where line breaks, indentation and tags carry meaning: code,
    lists, `identity<T>`) keeps tags (entities are still unescaped), line breaks, tabs and
    indentation, removes control characters and trailing spaces, and merges runs of blank lines."""
    if cfg.fix_text:
        text = ftfy.fix_text(text, unescape_html=False, normalization="NFC")
    if cfg.strip_html:
        text = html.unescape(text if keep_lines else TAG.sub(" ", text))
    if cfg.garbled == "strip":
        text = "".join(ch for ch in text if not is_garbled_char(ch))
    if cfg.whitespace and keep_lines:
        return _tidy_lines(text)
    if cfg.whitespace:
        text = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)
        text = SPACES.sub(" ", text).strip()
    return text


def _tidy_lines(text: str) -> str:
    text = LINE_BREAKS.sub("\n", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return BLANK_LINES.sub("\n\n", text).strip()


def dedupe_key(text: str) -> str:
    """Texts equal up to case, accents, HTML escapes and spacing get the same key (punctuation
    counts: "great :)" and "great :(" differ)."""
    text = unicodedata.normalize("NFKD", html.unescape(ftfy.fix_text(text))).casefold()
    text = "".join(ch for ch in text if not unicodedata.combining(ch) and not is_garbled_char(ch))
    return SPACES.sub(" ", text).strip()
