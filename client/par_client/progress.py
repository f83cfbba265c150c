"""A download's progress on stderr: bytes, share of the estimate, rate, time left."""

from __future__ import annotations

import time
from typing import TextIO

SHOW_AFTER = 0.5  # seconds: short downloads finish without a bar flashing by
EVERY = 0.1  # seconds between redraws
WIDTH = 24


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Progress:
    """Drawn on one line of ``stream`` with carriage returns, cleared when done."""

    def __init__(self, stream: TextIO, total: int | None, *, clock=time.monotonic) -> None:
        self.stream = stream
        self.total = total or None
        self.clock = clock
        self.started = clock()
        self.drawn_at: float | None = None
        self.done = 0

    def update(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self.started < SHOW_AFTER:
            return
        if self.drawn_at is not None and now - self.drawn_at < EVERY:
            return
        self.drawn_at = now
        self.stream.write("\r" + self.line(now))
        self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        text = f"{size(self.done)}"
        if self.total:
            # The total is the collector's estimate, an upper bound: the answer may end before it.
            share = min(self.done / self.total, 1.0)
            filled = int(share * WIDTH)
            bar = "#" * filled + "-" * (WIDTH - filled)
            text = f"[{bar}] {share:4.0%} {text} of ~{size(self.total)}"
            if rate > 0 and self.done < self.total:
                left = (self.total - self.done) / rate
                text += f", ~{int(left) // 60}:{int(left) % 60:02d} left"
        return f"{text}  {size(rate)}/s "

    def close(self) -> None:
        """Erase the bar (if it was drawn), so what follows starts on a clean line."""
        if self.drawn_at is not None:
            self.stream.write("\r" + " " * len(self.line(self.clock())) + "\r")
            self.stream.flush()
