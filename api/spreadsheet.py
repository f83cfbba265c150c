"""Cells of a CSV a spreadsheet opens: text that would run as a formula (CSV injection) is kept as text."""

from __future__ import annotations

# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """``text``, with a leading apostrophe when a spreadsheet would read it as a formula (not a number)."""
    if text.startswith(FORMULA_START) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
