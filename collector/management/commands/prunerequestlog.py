"""manage.py prunerequestlog --days N: delete request log entries older than N days."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from collector.models import RequestLog

# Deleted a batch at a time: one short transaction each, so a big prune never holds the
# table (SQLite: the whole database) locked against the request log's own writes for long.
BATCH = 5000


def prune_request_log(days: int, now: datetime | None = None) -> tuple[int, datetime]:
    """Delete the entries older than ``days`` days; (how many, the cutoff)."""
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted = 0
    while True:
        ids = list(
            RequestLog.objects.filter(time__lt=cutoff).order_by("id").values_list("id", flat=True)[:BATCH]
        )
        if not ids:
            return deleted, cutoff
        deleted += RequestLog.objects.filter(id__in=ids).delete()[0]


def _days(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


_days.__name__ = "number of days (1 or more)"


class Command(BaseCommand):
    help = "Delete request log entries older than --days days."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=_days, required=True, help="keep this many days of the log")

    def handle(self, *args, **opts) -> None:
        try:
            deleted, cutoff = prune_request_log(opts["days"])
        except Exception as exc:  # the database: unreachable, locked, not migrated
            raise CommandError(f"the request log could not be pruned: {exc}") from None
        self.stdout.write(
            f"Deleted {deleted} request log entries older than {cutoff.isoformat(timespec='seconds')}"
        )
