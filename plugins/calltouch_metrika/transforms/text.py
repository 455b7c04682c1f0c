"""Text rules shared by every transform: what Arrow/Parquet can store, which characters are invisible.

* :func:`clean_text`: JSON may carry a lone surrogate (``"\\ud800"``), which Python decodes into a
  ``str`` that UTF-8 (so Arrow, Parquet and the Metrika CSV) cannot encode. Such a code point is
  replaced by U+FFFD (the replacement character) instead of failing the whole day; a valid pair is
  joined into its character. Nothing else changes.
* :data:`INVISIBLE_CATEGORIES` / :func:`is_invisible` / :func:`find_invisible`: the characters a person
  cannot see in a UI or a CSV cell and that make two values that look equal differ: control characters
  (Unicode category ``Cc``: NUL, C0, DEL, C1), format characters (``Cf``: zero-width space U+200B,
  word joiner U+2060, BOM U+FEFF, soft hyphen U+00AD, bidirectional marks and overrides U+200E/F,
  U+202A-U+202E, U+2066-U+2069, ...), the line and paragraph separators (``Zl`` U+2028, ``Zp``
  U+2029), unassigned/private/surrogate code points (``Cn``, ``Co``, ``Cs``).

Pure: no I/O, no Airflow import.
"""

from __future__ import annotations

import unicodedata

__all__ = ["INVISIBLE_CATEGORIES", "clean_text", "find_invisible", "is_invisible", "strip_invisible"]

#: Unicode general categories treated as invisible (see the module docstring).
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cn", "Co", "Cs"})


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, so that it encodes as UTF-8."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def is_invisible(char: str, *, keep: str = "") -> bool:
    """Whether ``char`` is of an :data:`INVISIBLE_CATEGORIES` category (and not one of ``keep``)."""
    return char not in keep and unicodedata.category(char) in INVISIBLE_CATEGORIES


def find_invisible(text: str, *, keep: str = "") -> int:
    """Index of the first invisible character of ``text`` (``keep`` excepted), or -1."""
    if text.isascii() and text.isprintable():
        return -1
    for index, char in enumerate(text):
        if is_invisible(char, keep=keep):
            return index
    return -1


def strip_invisible(text: str, *, keep: str = "") -> str:
    """``text`` without its invisible characters (``keep`` excepted)."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(char for char in text if not is_invisible(char, keep=keep))
