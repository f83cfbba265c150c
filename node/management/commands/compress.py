"""manage.py compress: compress the filed captures in place (zstd seekable; docs/storage.md)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from node.management.tiercommand import add_tree_arguments, filer_dir, hours, run_pass
from node.tiers import compress_tree


class Command(BaseCommand):
    help = "Compress every filed capture (older than --older-than hours) to <name>.zst, in place."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        add_tree_arguments(parser)
        parser.add_argument(
            "--older-than", type=hours, metavar="HOURS", help="only captures older than this (by their name)"
        )
        parser.add_argument("--level", type=int, default=settings.PAR_COMPRESS_LEVEL, help="zstd level")

    def handle(self, *args, **opts) -> None:
        tree = filer_dir(opts)
        if not 1 <= opts["level"] <= 22:
            raise CommandError(f"--level must be between 1 and 22, not {opts['level']}")
        run_pass(
            self.stdout,
            "compressed",
            lambda: compress_tree(
                tree, opts["prefix"], older_than_hours=opts["older_than"], level=opts["level"]
            ),
            tree,
        )
