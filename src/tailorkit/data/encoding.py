"""Guess the text encoding of a data file that is not UTF-8 (`data.encoding: auto`, and the hint
in the error a non-UTF-8 file gets), with charset-normalizer.

charset-normalizer ranks codecs by how chaotic the decoded text looks. On short Western text
several single-byte codecs tie (cp1250 and cp1252 read "café" alike but "crème" differently);
a tie is settled in favour of cp1252, which WHATWG also reads for "latin-1" labels, so a
latin-1 or Windows-1252 file is read as written.
"""

from __future__ import annotations

from charset_normalizer import from_bytes

AUTO = "auto"
PREFERRED = "cp1252"  # among codecs that read the bytes equally well
TIE = 1e-6  # chaos scores within this count as equal


def detect_encoding(data: bytes) -> str | None:
    """`utf-8` when the bytes decode as UTF-8, else charset-normalizer's best codec (cp1252 on
    a tie that includes it); None when no codec reads them as text."""
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    matches = list(from_bytes(data))
    if not matches:
        return None
    best = min(m.chaos for m in matches)
    tied = [m for m in matches if m.chaos <= best + TIE]
    if any(PREFERRED in m.could_be_from_charset for m in tied):
        return PREFERRED
    return tied[0].encoding
