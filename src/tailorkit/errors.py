"""User-facing errors.

A `TailorError` is a problem with the user's input (recipe, data, model folder,
run directory). The CLI prints its message on one line and exits with status 2;
it never shows a traceback for these.
"""


class TailorError(Exception):
    """Bad input, explained in one line that names the file, row or field."""


def undecodable(err: UnicodeDecodeError) -> str:
    """Where a file stops decoding, for a message: `line 3, column 12: byte 0xe9 is not valid
    utf-8`. `err` must come from decoding the whole file (its `object` is every byte)."""
    data, start = err.object, err.start
    line_start = data.rfind(b"\n", 0, start) + 1
    line = data.count(b"\n", 0, start) + 1
    column = len(data[line_start:start].decode(err.encoding, errors="replace")) + 1
    return f"line {line}, column {column}: byte 0x{data[start]:02x} is not valid {err.encoding}"


def first_line(err: Exception) -> str:
    """The first line of a library's error message (its type where it has none), for a one-line
    TailorError that quotes it."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
