"""manage.py archive: move aged filed captures to the S3-compatible archive (docs/storage.md)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from node import filerstats
from node.filer import tree_lock
from node.tiers import archive_options, archive_tree


def _hours(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise ValueError(text)
    return value


_hours.__name__ = "number of hours"


class Command(BaseCommand):
    help = "Archive filed captures older than PAR_ARCHIVE_AFTER (or --older-than) hours to PAR_ARCHIVE_URL."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--filer-dir", type=Path, default=settings.PAR_FILER_DIR)
        parser.add_argument("--prefix", default=settings.PAR_FILE_PREFIX, help="capture file name prefix")
        parser.add_argument(
            "--older-than",
            type=_hours,
            metavar="HOURS",
            help="archive captures older than this (by their name; default PAR_ARCHIVE_AFTER)",
        )

    def handle(self, *args, **opts) -> None:
        options = archive_options()
        if options is None:
            raise CommandError("PAR_ARCHIVE_URL is not set: there is no archive to move captures to")
        filer_dir = opts["filer_dir"]
        if not Path(filer_dir).is_dir():
            raise CommandError(f"filer directory {filer_dir} does not exist or is not a directory")
        try:
            with tree_lock(settings.PAR_DATA_DIR):
                summary = archive_tree(
                    filer_dir, opts["prefix"], options, older_than_hours=opts["older_than"]
                )
                filerstats.record_tiers(settings.PAR_DATA_DIR, summary)
        except OSError as exc:
            raise CommandError(str(exc))
        self.stdout.write(summary.line())
        if summary.errors:
            raise CommandError(f"{len(summary.errors)} captures could not be archived (see the log)")
