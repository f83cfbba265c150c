"""Testing hook for the filer's crash tests: die by SIGKILL at a named step.

``PAR_FILER_CRASH_AT=<step>[:<n>]`` kills the process the n-th time (default: the first) it reaches
``crash_point(<step>)``. Unset, as in production, it does nothing. The steps are named where they are
called (node/filer.py, node/retention.py).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_reached: Counter[str] = Counter()


def crash_point(step: str) -> None:
    """Die by SIGKILL here when PAR_FILER_CRASH_AT names this step (and its count is reached)."""
    wanted = os.environ.get("PAR_FILER_CRASH_AT")
    if not wanted:
        return
    name, _, count = wanted.partition(":")
    if name != step:
        return
    _reached[step] += 1
    if _reached[step] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
