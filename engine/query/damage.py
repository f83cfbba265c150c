"""What an answer met of damaged files: named before its first chunk (``DamageReport``), or the answer cut.

A damaged file (a crash or a full disk cut or corrupted it part-way) is read up to its damage:
the index says where it is (``FlowIndex.damaged_at``), a scan meets it (``UpToDamage``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..formats import Capture, CaptureError, Record


class DamageReport:
    """The damaged files an answer met (``found``), named before its first chunk or not at all."""

    def __init__(self) -> None:
        self.found: list[CaptureError] = []
        self.files = 0  # files of the window
        self.unreadable = 0  # of which damaged before their first record
        self.started = False

    def damaged(self, exc: CaptureError, readable: bool) -> None:
        """Note ``exc``; raise it when the answer has begun (it can no longer be named)."""
        if self.started:
            raise exc
        self.found.append(exc)
        self.unreadable += not readable

    def start(self) -> None:
        """The first chunk is about to go; CaptureError when damage left nothing to read."""
        self.started = True
        if self.found and self.unreadable >= self.files:
            raise self.found[0]

    @property
    def names(self) -> list[str]:
        """The damaged files' names, once each, in the order met."""
        return list(dict.fromkeys(Path(exc.path).name for exc in self.found))


class UpToDamage:
    """A capture's records in file order, ending where it is damaged (known, or met and reported)."""

    def __init__(self, capture: Capture, damaged_at: int | None, report: DamageReport):
        self.capture, self.damaged_at, self.report = capture, damaged_at, report

    def __iter__(self) -> Iterator[Record]:
        limit, read_any = self.damaged_at, False
        try:
            for record in self.capture:
                if limit is not None and record.offset >= limit:
                    return
                read_any = True
                yield record
        except CaptureError as exc:
            if limit is None or exc.offset < limit:
                self.damaged_at = exc.offset
                self.report.damaged(exc, readable=read_any)
