"""Set-up shared by the whole suite."""

from __future__ import annotations


def pytest_sessionstart(session) -> None:
    """Make the index build's compiled code (engine/native.py) once, before any server or filer starts.

    Compiling it takes 10-30 s when it is not yet cached (a fresh clone, a change of the file):
    done here, every process the tests start loads it from the cache instead of compiling it.
    """
    from engine import native

    native.load()
