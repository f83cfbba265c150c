"""manage.py compress: compress the filed captures in place (zstd seekable; docs/storage.md)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from node import filerstats
from node.filer import tree_lock
from node.tiers import compress_tree


def _hours(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise ValueError(text)
    return value


_hours.__name__ = "number of hours"


class Command(BaseCommand):
    help = "Compress every filed capture (older than --older-than hours) to <name>.zst, in place."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--filer-dir", type=Path, default=settings.PAR_FILER_DIR)
        parser.add_argument("--prefix", default=settings.PAR_FILE_PREFIX, help="capture file name prefix")
        parser.add_argument(
            "--older-than", type=_hours, metavar="HOURS", help="only captures older than this (by their name)"
        )
        parser.add_argument("--level", type=int, default=settings.PAR_COMPRESS_LEVEL, help="zstd level")

    def handle(self, *args, **opts) -> None:
        filer_dir = opts["filer_dir"]
        if not Path(filer_dir).is_dir():
            raise CommandError(f"filer directory {filer_dir} does not exist or is not a directory")
        if not 1 <= opts["level"] <= 22:
            raise CommandError(f"--level must be between 1 and 22, not {opts['level']}")
        try:
            with tree_lock(settings.PAR_DATA_DIR):
                summary = compress_tree(
                    filer_dir, opts["prefix"], older_than_hours=opts["older_than"], level=opts["level"]
                )
                filerstats.record_tiers(settings.PAR_DATA_DIR, summary)
        except OSError as exc:
            raise CommandError(str(exc))
        self.stdout.write(summary.line())
        if summary.errors:
            raise CommandError(f"{len(summary.errors)} captures could not be compressed (see the log)")
