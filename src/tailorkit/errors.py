"""User-facing errors.

A `TailorError` is a problem with the user's input (recipe, data, model folder,
run directory). The CLI prints its message on one line and exits with status 2;
it never shows a traceback for these.
"""


class TailorError(Exception):
    """Bad input, explained in one line that names the file, row or field."""
