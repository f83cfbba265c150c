"""What ``manage.py compress`` and ``manage.py archive`` share: the tree's arguments and one locked pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError, CommandParser, OutputWrapper

from node import filerstats, store
from node.filer import tree_lock
from node.tiers import TierSummary


def hours(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise ValueError(text)
    return value


hours.__name__ = "number of hours"


def add_tree_arguments(parser: CommandParser) -> None:
    """``--filer-dir`` and ``--prefix``, defaulting to the settings."""
    parser.add_argument("--filer-dir", type=Path, default=settings.PAR_FILER_DIR)
    parser.add_argument("--prefix", default=settings.PAR_FILE_PREFIX, help="capture file name prefix")


def filer_dir(opts: dict) -> Path:
    """The ``--filer-dir`` option; CommandError when it is not a directory."""
    path = opts["filer_dir"]
    if not Path(path).is_dir():
        raise CommandError(f"filer directory {path} does not exist or is not a directory")
    return path


def run_pass(stdout: OutputWrapper, verb: str, move: Callable[[], TierSummary], tree: Path) -> None:
    """``move()`` under the filer tree lock, its summary recorded for status and written out;
    CommandError when it fails or some captures could not be ``verb`` (compressed, archived).

    As after the filer's tier pass, the tree's stamp is rewritten when captures changed names, so
    the listings serving processes keep by it (node/store.py) end now, not TREE_KEPT_S later.
    """
    try:
        with tree_lock(settings.PAR_DATA_DIR):
            summary = move()
            if summary.compressed or summary.archived or summary.expired:
                store.bump_tree_stamp(tree)
            filerstats.record_tiers(settings.PAR_DATA_DIR, summary)
    except OSError as exc:
        raise CommandError(str(exc))
    stdout.write(summary.line())
    if summary.errors:
        raise CommandError(f"{len(summary.errors)} captures could not be {verb} (see the log)")
