"""Per-key limits shared by every worker and collector on one database: request rate, running downloads.

- The rate: one row per key and time window, counted up with a single upsert statement per request
  (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, SQLite 3.35+ and PostgreSQL): atomic across
  processes without a read-modify-write, and no cache table round trips. A fixed window: a client may
  burst twice the rate across a window boundary, never more.
- Downloads: ``PAR_KEY_STREAMS`` slots per holder; a running download holds one row, unique on
  (holder, slot), so two workers can never take the same slot. A row carries a lease renewed while the
  download streams: a worker killed mid-download frees its slot when the lease runs out.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.db import connection, models
from django.utils import timezone

# A download's slot is leased this long and renewed every STREAM_RENEW while it streams.
STREAM_LEASE = timedelta(seconds=120)
STREAM_RENEW = 30.0


class RequestRate(models.Model):
    """How many requests one key made in one time window."""

    key_id = models.BigIntegerField()
    period_start = models.BigIntegerField(help_text="start of the window, in seconds since the epoch")
    requests = models.PositiveIntegerField(default=0)

    class Meta:
        app_label = "collector"
        constraints = [
            models.UniqueConstraint(fields=["key_id", "period_start"], name="collector_rate_key_window")
        ]

    @classmethod
    def count(cls, key_id: int, period: int, now: float | None = None) -> tuple[int, float]:
        """Count one request of ``key_id``: (requests in this window so far, seconds left in it)."""
        now = time.time() if now is None else now
        start = int(now // period) * period
        table = connection.ops.quote_name(cls._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (key_id, period_start, requests) VALUES (%s, %s, 1) "
                f"ON CONFLICT (key_id, period_start) DO UPDATE SET requests = {table}.requests + 1 "
                "RETURNING requests",
                [key_id, start],
            )
            (requests,) = cursor.fetchone()
            if requests == 1:  # the key's first request of a window: forget its older windows
                cursor.execute(
                    f"DELETE FROM {table} WHERE key_id = %s AND period_start < %s", [key_id, start]
                )
        return requests, start + period - now


class KeyStream(models.Model):
    """A download running for a key (or a web page user): one of its PAR_KEY_STREAMS slots."""

    holder = models.CharField(max_length=40, help_text="key:<id> or user:<id>")
    slot = models.PositiveSmallIntegerField()
    started = models.DateTimeField(default=timezone.now)
    expires = models.DateTimeField()

    class Meta:
        app_label = "collector"
        constraints = [
            models.UniqueConstraint(fields=["holder", "slot"], name="collector_stream_holder_slot")
        ]

    @classmethod
    def acquire(cls, holder: str, limit: int) -> KeyStream | None:
        """A free slot of ``holder`` (None when all ``limit`` are taken by running downloads).

        One statement: insert the lowest slot no running download holds, or take over one whose
        lease ran out (a worker died holding it). Two workers racing for one slot: the unique
        constraint lets one have it, the other looks again.
        """
        table = connection.ops.quote_name(cls._meta.db_table)
        slots = ", ".join(f"({n})" for n in range(limit))
        sql = (
            f"INSERT INTO {table} (holder, slot, started, expires) "
            f"SELECT %s, column1, %s, %s FROM (VALUES {slots}) AS free "
            f"WHERE column1 NOT IN (SELECT slot FROM {table} WHERE holder = %s AND expires > %s) "
            "ORDER BY column1 LIMIT 1 "
            "ON CONFLICT (holder, slot) DO UPDATE SET started = excluded.started, expires = excluded.expires "
            f"WHERE {table}.expires <= %s RETURNING id, slot"
        )
        for _ in range(3):
            now = timezone.now()
            expires = now + STREAM_LEASE
            at, until = (connection.ops.adapt_datetimefield_value(t) for t in (now, expires))
            with connection.cursor() as cursor:
                cursor.execute(sql, [holder, at, until, holder, at, at])
                row = cursor.fetchone()
            if row is not None:
                return cls(pk=row[0], holder=holder, slot=row[1], started=now, expires=expires)
            if cls.objects.filter(holder=holder, expires__gt=now).count() >= limit:
                return None  # every slot runs a download
        return None

    def release(self) -> None:
        table = connection.ops.quote_name(type(self)._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE id = %s", [self.pk])

    def renew(self) -> None:
        """Extend the lease of a download still streaming."""
        type(self).objects.filter(pk=self.pk).update(expires=timezone.now() + STREAM_LEASE)
