"""Set-up shared by the whole suite."""

from __future__ import annotations

import os

# The suite's filer tests were written for captures filed as they are; the tests of the storage
# tiers (tests/node/test_tiers.py) ask for compression themselves.
os.environ.setdefault("PAR_COMPRESS", "none")


def _raw_filing_by_default() -> None:
    """The same for settings pytest-django may have loaded before this file (then the variable came too late)."""
    from django.conf import settings

    if settings.configured:
        settings.PAR_COMPRESS = os.environ["PAR_COMPRESS"]


_raw_filing_by_default()


def pytest_sessionstart(session) -> None:
    """Make the index build's compiled code (engine/dissection/native.py, engine/index/native.py) once, before any server or filer starts.

    Compiling it takes 10-30 s when it is not yet cached (a fresh clone, a change of the file):
    done here, every process the tests start loads it from the cache instead of compiling it.
    """
    from engine.index import native

    native.load()
