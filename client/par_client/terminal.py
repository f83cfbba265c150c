"""Text a server sent, made safe to print: no control character reaches the terminal.

An error message, a header (``X-PAR-Nodes-Failed``, ``X-PAR-Damaged``) or a flow's cell comes from
the collector, or from whoever answers in its place: an escape sequence in it could recolour the
terminal, retitle its window or rewrite what was printed before it (a carriage return).
"""

from __future__ import annotations

import re

# C0 and C1 controls and DEL: what a terminal acts on.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BYTES = bytes(range(0x20)).replace(b"\t", b"").replace(b"\n", b"").replace(b"\r", b"") + b"\x7f"


def printable(text: object) -> str:
    """``text`` with each control character shown as ``?``."""
    return _CONTROL.sub("?", str(text))


def printable_lines(data: bytes) -> bytes:
    """Lines of text (a CSV) for a terminal: line ends and tabs kept, other C0 controls and DEL dropped."""
    return data.translate(None, _CONTROL_BYTES)
