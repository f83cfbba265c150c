"""manage.py archive: move aged filed captures to the S3-compatible archive (docs/storage.md)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from node.management.tiercommand import add_tree_arguments, filer_dir, hours, run_pass
from node.tiers import archive_options, archive_tree


class Command(BaseCommand):
    help = "Archive filed captures older than PAR_ARCHIVE_AFTER (or --older-than) hours to PAR_ARCHIVE_URL."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        add_tree_arguments(parser)
        parser.add_argument(
            "--older-than",
            type=hours,
            metavar="HOURS",
            help="archive captures older than this (by their name; default PAR_ARCHIVE_AFTER)",
        )

    def handle(self, *args, **opts) -> None:
        options = archive_options()
        if options is None:
            raise CommandError("PAR_ARCHIVE_URL is not set: there is no archive to move captures to")
        tree = filer_dir(opts)
        run_pass(
            self.stdout,
            "archived",
            lambda: archive_tree(tree, opts["prefix"], options, older_than_hours=opts["older_than"]),
            tree,
        )
