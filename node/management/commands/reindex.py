"""manage.py reindex: build missing or outdated capture indexes (docs/SPEC.md "Management commands")."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from node.jobs import cores_available, jobs_count
from node.reindex import reindex


class Command(BaseCommand):
    help = (
        "Build the missing or outdated index of every capture file under PATH (default: the filer directory)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "paths", nargs="*", type=Path, metavar="PATH", help="capture files or directories"
        )
        parser.add_argument("--prefix", default=settings.PAR_FILE_PREFIX, help="capture file name prefix")
        parser.add_argument("--force", action="store_true", help="rebuild current indexes too")
        parser.add_argument(
            "--jobs",
            type=jobs_count,
            default=cores_available(),
            metavar="N",
            help="build N indexes at once, in worker processes (default: the cores available)",
        )

    def handle(self, *args, **opts) -> None:
        paths = opts["paths"] or [settings.PAR_FILER_DIR]
        try:
            summary = reindex(
                paths,
                prefix=opts["prefix"],
                data_dir=settings.PAR_DATA_DIR,
                skip_dir=settings.PAR_CAPTURE_DIR,
                force=opts["force"],
                jobs=opts["jobs"],
                filer_dir=settings.PAR_FILER_DIR,
            )
        except OSError as exc:  # a path that is no capture, a lock PAR_DATA_DIR will not give, ...
            raise CommandError(str(exc))
        self.stdout.write(summary.line())
        if summary.failed:
            raise CommandError(f"{len(summary.failed)} indexes could not be built (see the log)")
